"""Acceleration strategies. Each registers itself in `registry` and attaches through the engine."""
