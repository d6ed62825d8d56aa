"""Sandboxes over time: create, list, select, extend, clean, destroy, the sweep and the reaper."""
