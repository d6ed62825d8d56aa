"""Parsing and validation of sandbox.yaml and aido's own config file."""
