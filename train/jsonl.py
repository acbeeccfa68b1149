"""JSON Lines: one record a line, written the same way every time (same records, same bytes)."""

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

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
    """The records of a JSONL file; a line that is no JSON object is an error naming the file and line.

    >>> read_jsonl("steps.jsonl")  # doctest: +SKIP
    """
    records = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}, line {number}: expected a JSON object, got {line[:80]!r}: {exc.msg}") from None
        if not isinstance(record, dict):
            raise DatasetError(f"{path}, line {number}: expected a JSON object, got {type(record).__name__}")
        records.append(record)
    return records
