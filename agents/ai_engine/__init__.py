"""The AI engine: features -> five pluggable models -> a calibrated ensemble signal per bar."""
