"""Pass-through: relays ticks unchanged. It exists to prove the runtime end to end."""
