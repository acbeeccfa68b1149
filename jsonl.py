"""JSON Lines files of objects, read with errors that name the file and line (inputs of batches, datasets)."""

import json
from pathlib import Path
from typing import Any

from baobab.errors import BaobabError


def read_objects(path: str | Path, error: type[BaobabError] = BaobabError,
                 what: str = "a JSON object") -> list[dict[str, Any]]:
    """The objects of a JSONL file, one a line (blank lines skipped); a bad line raises `error` naming it.

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "in.jsonl"; _ = f.write_text('{"word": "hi"}\\n\\n{"word": "yo"}\\n')
    >>> read_objects(f)
    [{'word': 'hi'}, {'word': 'yo'}]
    """
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{path}:{number}: not JSON ({exc.msg} at column {exc.colno})") from exc
        if not isinstance(row, dict):
            raise error(f"{path}:{number}: expected {what}, got {type(row).__name__}")
        rows.append(row)
    return rows
