"""`aido mcp`: aido's tools for AI agents over the Model Context Protocol.

Only aido.mcp.server imports the MCP SDK (the `mcp` extra); the policy (aido.config.mcp),
the service and the safe file reads here are plain Python.
"""
