"""State-class fingerprints: what a thread's stored states were written with, and whether a class still reads them.

A fingerprint is JSON text: per field, its type as JSON schema (titles and descriptions left out), the type as
written, its reducer and whether it has a default; and a hash of those. A state class reads rows stored under
another fingerprint when no field was removed, none added without a default, and no type or reducer changed.
Otherwise loading fails with `StateSchemaError` naming the fields, unless the graph has a `migrate` hook
(`Graph(State, migrate=fn)`): `fn(old_dict, old_fingerprint) -> new_dict` converts each stored state and update
(a partial dict) as it loads, and resuming the thread rewrites its rows so and records the new fingerprint.
"""

import hashlib
import json
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, TypeAdapter

from baobab.graphs.errors import CheckpointError

Migrate = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]
"""`migrate(old, old_fingerprint) -> new`: a stored state, or an update (only the fields it sets), in the current
class's fields; `old_fingerprint["fields"]` describes what the row was written with."""


class StateSchemaError(CheckpointError):
    """A thread's stored states no longer fit the graph's state class; `changes` says how, field by field."""

    def __init__(self, message: str, changes: list[str]) -> None:
        super().__init__(message)
        self.changes = changes


def fingerprint(model: type[BaseModel], reducers: Mapping[str, Callable[..., Any]]) -> str:
    """The fingerprint of a state class as JSON text.

    >>> class S(BaseModel):
    ...     n: int = 0
    >>> json.loads(fingerprint(S, {}))["fields"]
    {'n': {'default': True, 'python': 'int', 'reducer': None, 'type': {'type': 'integer'}}}
    """
    fields = {name: {"type": _json_schema(field.annotation), "python": _text(field.annotation),
                     "reducer": _name(reducers[name]) if name in reducers else None,
                     "default": not field.is_required()}
              for name, field in model.model_fields.items()}
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
    return json.dumps({"state": model.__name__, "hash": digest, "fields": fields}, sort_keys=True)


def changes(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """What keeps rows written under the fields `stored` from loading under `current` (both `["fields"]`).

    >>> changes({"a": {"type": 1, "python": "int", "reducer": None}},
    ...         {"b": {"type": 1, "python": "int", "reducer": None, "default": False}})
    ["'a' removed", "'b' added without a default"]
    """
    found = [f"{name!r} removed" for name in stored if name not in current]
    found += [f"{name!r} added without a default" for name, new in current.items()
              if name not in stored and not new["default"]]
    for name in (n for n in current if n in stored):
        old, new = stored[name], current[name]
        if old["type"] != new["type"]:
            found.append(f"{name!r} type changed from {old['python']} to {new['python']}" if old["python"] != new[
                "python"] else f"{name!r} type changed ({new['python']}: its JSON schema differs)")
        if old["reducer"] != new["reducer"]:
            found.append(f"{name!r} reducer changed from {old['reducer']} to {new['reducer']}")
    return found


def _json_schema(annotation: Any) -> Any:
    """The type's JSON schema without titles and descriptions (docs are not shape); its text if it has none."""
    try:
        return _shape(TypeAdapter(annotation).json_schema())
    except Exception:  # an arbitrary class (arbitrary_types_allowed) has no JSON schema
        return {"python": _text(annotation)}


def _shape(schema: Any, defs: dict[str, Any] | None = None, seen: tuple[str, ...] = ()) -> Any:
    """The schema with nested models written out in place (a renamed class is the same shape), unless recursive."""
    if isinstance(schema, list):
        return [_shape(v, defs, seen) for v in schema]
    if not isinstance(schema, dict):
        return schema
    defs = schema.get("$defs", defs)
    name = str(schema.get("$ref", "")).removeprefix("#/$defs/")
    if defs and name in defs and name not in seen:
        return _shape(defs[name], defs, (*seen, name))
    return {k: _shape(v, defs, seen) for k, v in schema.items()  # a property called "title" holds a dict
            if k != "$defs" and not (k in ("title", "description") and isinstance(v, str))}


def _text(annotation: Any) -> str:
    """A type as written, without modules: `int`, `list[Item]`, `str | None`.

    >>> _text(dict[str, list[int]] | None)
    'dict[str, list[int]] | None'
    """
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(map(_text, args))
    if origin is not None and args and origin not in (typing.Literal, typing.Annotated):
        return f"{_text(origin)}[{', '.join(map(_text, args))}]"
    if annotation is type(None) or annotation is Ellipsis:
        return "None" if annotation is not Ellipsis else "..."
    return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")


def _name(reducer: Callable[..., Any]) -> str:
    """A reducer by its qualified name (moving it to another module changes nothing)."""
    return str(getattr(reducer, "__qualname__", type(reducer).__name__))
