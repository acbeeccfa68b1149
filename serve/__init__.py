"""What the framework offers to others over the wire: the OpenAI-compatible server (chat, completions, Responses),
workflows as MCP tools, A2A agents and AG-UI event streams. The engine runs models; this package serves them."""

from baobab.errors import require_extra

require_extra("serve", "baobab.serve (the servers)", "starlette", "uvicorn", "mcp", "a2a", "ag_ui")
