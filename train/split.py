"""Held-out protection: the tasks a dataset may be built from, and those it must never contain.

A task is known by a key that ignores order (`task_key`): a Game of 24 puzzle "4 9 10 13" and the search state
["13", "4", "10", "9"] are the same item, so a held-out puzzle cannot slip in under another ordering.
"""

import csv
import json
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from baobab.train.errors import DatasetError, HeldOutError

Key = Callable[[Any], str]
"""`key(task)`: the text that identifies a task for a split."""


def task_key(task: Any) -> str:
    """A task as an order-free key: the sorted words of a string, or the sorted items of a list of scalars;
    anything else as canonical JSON.

    Errs towards protection: two tasks made of the same parts are one item.

    >>> task_key("4 9 10 13") == task_key(["13", "4", "10", "9"])
    True
    >>> task_key({"q": 1})
    '{"q": 1}'
    """
    if isinstance(task, str):
        return " ".join(sorted(task.split()))
    if isinstance(task, list | tuple) and all(isinstance(x, str | int | float) for x in task):
        return " ".join(sorted(str(x) for x in task))
    return json.dumps(task, sort_keys=True)


@dataclass(frozen=True)
class Split:
    """The tasks held out (never in a dataset) and, if given, the only ones a dataset may use.

    A task both held out and allowed is held out. `key` must be the one the split's items were keyed with.

    >>> split = Split.of(heldout=["1 2 3 4"], name="test")
    >>> split.admits([4, 3, 2, 1]), split.admits("1 1 4 6")
    (False, True)
    """

    heldout: frozenset[str]
    allowed: frozenset[str] | None = None
    key: Key = task_key
    name: str = "split"

    @classmethod
    def of(cls, heldout: Iterable[Any], allowed: Iterable[Any] | None = None, *, key: Key = task_key,
           name: str = "split") -> "Split":
        """A split from tasks (any form `key` accepts).

        >>> len(Split.of(["1 2 3 4", "4 3 2 1"]).heldout)
        1
        """
        return cls(frozenset(map(key, heldout)), None if allowed is None else frozenset(map(key, allowed)), key, name)

    @classmethod
    def from_csv(cls, path: str | Path, *, heldout: Container[int], allowed: Container[int] | None = None,
                 item: str = "Puzzles", rank: str = "Rank", key: Key = task_key, name: str | None = None) -> "Split":
        """A benchmark's split from a CSV of ranked items: the rows whose `rank` is in `heldout` are held out; with
        `allowed`, only the rows whose rank is in it may be used (the Game of 24 file's columns by default).

        >>> Split.from_csv("24.csv", heldout=range(901, 1001), allowed=range(1, 901))  # doctest: +SKIP
        """
        file = Path(path)
        held: list[str] = []
        usable: list[str] = []
        with file.open(newline="") as handle:
            rows = csv.DictReader(handle)
            if rows.fieldnames is None or not {item, rank} <= set(rows.fieldnames):
                raise DatasetError(f"{file}, line 1: expected a header with columns {rank!r} and {item!r}, "
                                   f"got {rows.fieldnames}")
            for line, row in enumerate(rows, start=2):
                text = row[rank] or ""
                if not text.strip().isdigit() or not (row[item] or "").strip():
                    raise DatasetError(f"{file}, line {line}: expected an integer {rank!r} and a non-empty {item!r}, "
                                       f"got {row[rank]!r}, {row[item]!r}")
                number = int(text)
                if number in heldout:
                    held.append(row[item])
                elif allowed is not None and number in allowed:
                    usable.append(row[item])
        return cls.of(held, usable if allowed is not None else None, key=key, name=name or file.name)

    def admits(self, task: Any) -> bool:
        """Whether a dataset may contain `task`."""
        key = self.key(task)
        return key not in self.heldout and (self.allowed is None or key in self.allowed)

    def check(self, task: Any, where: str) -> None:
        """Raise HeldOutError, naming `where` (the run) and the task, unless a dataset may contain `task`.

        >>> Split.of(["1 2 3 4"], name="test").check("4 3 2 1", "search run 'x'")
        Traceback (most recent call last):
        ...
        baobab.train.errors.HeldOutError: search run 'x': task '4 3 2 1' (key '1 2 3 4') is held out by split 'test'...
        """
        key = self.key(task)
        if key in self.heldout:
            raise HeldOutError(f"{where}: task {task!r} (key {key!r}) is held out by split {self.name!r}; a dataset "
                               "must never contain it: leave the run out, or pass on_heldout='skip' to drop it with "
                               "a count in the manifest")
        if self.allowed is not None and key not in self.allowed:
            raise HeldOutError(f"{where}: task {task!r} (key {key!r}) is not among the {len(self.allowed)} tasks "
                               f"split {self.name!r} allows; expected one of them")

    def summary(self) -> dict[str, Any]:
        """What the manifest says of the split."""
        return {"name": self.name, "heldout": len(self.heldout),
                "allowed": None if self.allowed is None else len(self.allowed)}
