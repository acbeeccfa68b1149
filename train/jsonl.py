"""JSON Lines: one record a line, written the same way every time (same records, same bytes)."""

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from baobab.jsonl import read_objects
from baobab.train.errors import DatasetError


def dumps(record: dict[str, Any]) -> str:
    """One record as a line (keys in their given order, text unescaped).

    >>> dumps({"b": 1, "a": "é"})
    '{"b": 1, "a": "é"}'
    """
    return json.dumps(record, ensure_ascii=False, allow_nan=False)


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> str:
    """Write `records` to `path`, one a line; the file's sha256.

    >>> write_jsonl("steps.jsonl", [{"messages": []}])  # doctest: +SKIP
    """
    data = "".join(dumps(r) + "\n" for r in records).encode()
    Path(path).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The records of a JSONL file; a line that is no JSON object is a DatasetError naming the file and line.

    >>> read_jsonl("steps.jsonl")  # doctest: +SKIP
    """
    return read_objects(path, DatasetError)
