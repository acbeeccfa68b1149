"""Tools agents call: typed functions, a sandboxed python, files, http, a calculator, MCP servers."""

from baobab.tools.builtins import BUILTINS, builtin_tools
from baobab.tools.mcp import MCPTools, load_mcp_tools
from baobab.tools.tool import Observation, Tool, ToolError, tool

__all__ = ["BUILTINS", "MCPTools", "Observation", "Tool", "ToolError", "builtin_tools", "load_mcp_tools", "tool"]
