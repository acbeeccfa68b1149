"""What the framework offers to others over the wire: the OpenAI-compatible server (chat, completions, Responses),
workflows as MCP tools, A2A agents and AG-UI event streams. The engine runs models; this package serves them."""
