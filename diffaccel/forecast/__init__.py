"""Pure functions for schedules and forecasts, unit-tested against closed forms (no hook plumbing)."""
