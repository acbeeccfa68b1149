"""RFC 6902 JSON Patch between two JSON documents: how AG-UI's STATE_DELTA tells a client what changed.

Objects are compared key by key and lists item by item (a list that grew gets `add`s at its end, one that shrank
`remove`s from its end), so an append to a long list costs one operation, not the whole list.

>>> diff({"n": 1, "log": ["a"]}, {"n": 2, "log": ["a", "b"]})
[{'op': 'replace', 'path': '/n', 'value': 2}, {'op': 'add', 'path': '/log/1', 'value': 'b'}]
"""

from typing import Any


def diff(old: Any, new: Any, path: str = "") -> list[dict[str, Any]]:
    """The operations that turn `old` into `new` (both JSON values), in the order they apply.

    >>> diff({"a": 1, "b": 2}, {"a": 1})
    [{'op': 'remove', 'path': '/b'}]
    """
    if type(old) is not type(new):  # 1 and True are equal in Python, not in JSON
        return [{"op": "replace", "path": path, "value": new}]
    if isinstance(old, dict):
        ops = [{"op": "remove", "path": f"{path}/{_escape(key)}"} for key in old if key not in new]
        for key, value in new.items():
            where = f"{path}/{_escape(key)}"
            ops += diff(old[key], value, where) if key in old else [{"op": "add", "path": where, "value": value}]
        return ops
    if isinstance(old, list):
        ops = [op for i, (a, b) in enumerate(zip(old, new, strict=False)) for op in diff(a, b, f"{path}/{i}")]
        ops += [{"op": "remove", "path": f"{path}/{i}"} for i in reversed(range(len(new), len(old)))]
        ops += [{"op": "add", "path": f"{path}/{i}", "value": new[i]} for i in range(len(old), len(new))]
        return ops
    return [] if old == new else [{"op": "replace", "path": path, "value": new}]


def _escape(key: str) -> str:
    """A key as a JSON Pointer segment (RFC 6901): `~` and `/` escaped."""
    return key.replace("~", "~0").replace("/", "~1")
