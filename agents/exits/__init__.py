"""The exit contract shared by every exit processor (harvest, exit guard) and execution."""
