"""The workspace on disk: its layout, the sandbox and run records, ids, the archive."""
