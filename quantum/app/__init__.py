"""The application: the `quantum` CLI, the demo, and the settings that compose every
agent's section. The only layer that may import everything (docs/agents.md)."""
