"""`aido mcp`: aido's tools for AI agents over the Model Context Protocol.

Only aido.mcp.server and aido.mcp.middleware import the MCP SDK (the `mcp` extra); the
policy (aido.config.mcp), its checks, the service and the safe file reads are plain Python.
"""
