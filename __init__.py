"""Baobab: agent graphs with routing, search, backtracking and memory, on an embedded engine.

The public API is loaded on first use, so `import baobab` stays fast:

>>> import baobab
>>> baobab.Graph.__name__
'Graph'
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Graph": "baobab.graphs", "App": "baobab.graphs", "START": "baobab.graphs", "END": "baobab.graphs",
    "Send": "baobab.graphs", "Retry": "baobab.graphs", "RunContext": "baobab.graphs",
    "append": "baobab.graphs", "merge": "baobab.graphs", "Store": "baobab.store", "BaobabError": "baobab.errors",
}

if TYPE_CHECKING:
    from baobab.errors import BaobabError
    from baobab.graphs import END, START, App, Graph, Retry, RunContext, Send, append, merge
    from baobab.store import Store

__all__ = ["END", "START", "App", "BaobabError", "Graph", "Retry", "RunContext", "Send", "Store", "__version__",
           "append", "merge"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'baobab' has no attribute {name!r}")
    return getattr(import_module(module), name)
