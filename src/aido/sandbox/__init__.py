"""Sandbox lifecycle: workspace discovery, ids, metadata and the manager that runs tasks."""
