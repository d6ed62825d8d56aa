"""One module per command group; each defines click commands that app.py attaches to
the root group."""
