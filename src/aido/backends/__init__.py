"""Runtime adapters: how a task reaches an isolation engine (Docker today)."""
