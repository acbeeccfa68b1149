"""The memory view's data, from `baobab.memory`: notes, links, and a note's evolution history."""

import importlib
import importlib.util
from typing import Any

from pydantic_core import to_jsonable_python

from baobab.ui.data import MAX_ID, NotFound


def memory_available() -> bool:
    """`baobab.memory` is installed: the viewer offers its memory view."""
    return importlib.util.find_spec("baobab.memory") is not None


def open_memory(url: str) -> Any:
    """`baobab.memory.Memory(url)`, imported by name: the viewer works without the memory package."""
    try:
        memory = importlib.import_module("baobab.memory")
    except ImportError as exc:
        raise NotFound(f"no memory view: baobab.memory cannot be imported ({exc})") from exc
    return memory.Memory(url)


def memory_view(memory: Any) -> dict[str, Any]:
    """Every note (content, keywords, tags, context, version) and link (kind, reason) of `memory`."""
    graph = memory.graph()
    notes = [{"id": str(n), **to_jsonable_python(a, fallback=repr)} for n, a in graph.nodes(data=True)]
    links = [{"source": str(a), "target": str(b), **to_jsonable_python(e, fallback=repr)}
             for a, b, e in graph.edges(data=True)]
    return {"notes": notes, "links": links}


def memory_history(memory: Any, note: str) -> dict[str, Any]:
    """How note `note` evolved: its earlier versions, oldest first, as `memory.history()` gives them."""
    if not (note.isascii() and note.isdigit()) or int(note) > MAX_ID:  # ids travel as text; the store's are int64
        raise NotFound(f"no note {note!r} in the memory (note ids are numbers)")
    history = memory.history(int(note))
    if not history and not memory.notes([int(note)]):  # a deleted note may still have earlier versions
        raise NotFound(f"no note {note} in the memory")
    return {"note": note, "history": to_jsonable_python(history, fallback=repr)}
