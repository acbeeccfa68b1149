"""The memory view's data: notes, links and each note's evolution history, from `baobab.memory`."""

import importlib
from typing import Any

from baobab.ui.data import NotFound


def memory_view(url: str) -> dict[str, Any]:
    """Every note (content, keywords, tags, context, version) and link (kind, reason) of the memory at `url`."""
    try:  # imported by name: the viewer works without the memory package
        memory = importlib.import_module("baobab.memory")
    except ImportError as exc:
        raise NotFound(f"no memory view: baobab.memory cannot be imported ({exc})") from exc
    graph = memory.Memory(url).graph()
    return {"notes": [{"id": str(n), **{k: v for k, v in a.items()}} for n, a in graph.nodes(data=True)],
            "links": [{"source": str(a), "target": str(b), **e} for a, b, e in graph.edges(data=True)]}
