"""A plugin that cannot be imported, for aido's tests."""

raise ImportError("aido_brokenplugin needs libfoo, which is not installed")
