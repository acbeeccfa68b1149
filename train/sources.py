"""The search trees a dataset is built from: persisted runs read by name or id, or trees in hand."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from baobab.search.persist import read_run
from baobab.search.tree import Tree
from baobab.store import Store
from baobab.store.schema import search_runs
from baobab.train.errors import DatasetError

RunRef = str | int | Tree
"""A run's name or id in the store, or a tree in hand (named `tree-N` by its place in the list)."""


@dataclass(frozen=True)
class Source:
    """One search tree and where it came from; `checkpoints` says its states are a graph run's checkpoint ids.

    >>> Source("demo", Tree([1, 2])).where
    "search run 'demo'"
    """

    name: str
    tree: Tree
    run_id: int | None = None
    strategy: str = ""
    checkpoints: bool = False

    @property
    def where(self) -> str:
        """How an error names this source."""
        return f"search run {self.name!r}" + (f" (id {self.run_id})" if self.run_id is not None else "")

    def summary(self, task: str) -> dict[str, Any]:
        """What the manifest says of this source (`task`: its task's key)."""
        return {"run": self.name, "id": self.run_id, "strategy": self.strategy, "task": task,
                "nodes": len(self.tree.nodes)}


def load_sources(runs: Sequence[RunRef | Source] | None, store: Store | str | None) -> list[Source]:
    """The trees of `runs` in their order (None: every search run in `store`, oldest first).

    >>> load_sources(None, "sqlite://")
    []
    """
    refs: list[RunRef | Source] = list(runs) if runs is not None else []
    if runs is not None and not any(isinstance(r, str | int) for r in refs):
        return [_in_hand(ref, i) for i, ref in enumerate(refs) if not isinstance(ref, str | int)]
    if store is None:
        raise DatasetError("reading search runs by name or id needs store= (a Store or a database URL)")
    db = store if isinstance(store, Store) else Store(store)
    try:
        with db.transaction() as conn:
            rows = conn.execute(select(search_runs.c.id, search_runs.c.name, search_runs.c.states)
                                .order_by(search_runs.c.id)).all()
        by_id = {row.id: row for row in rows}
        by_name = {row.name: row for row in rows}
        if runs is None:
            refs = [row.name for row in rows]
        found: list[Source] = []
        for i, ref in enumerate(refs):
            if not isinstance(ref, str | int):
                found.append(_in_hand(ref, i))
                continue
            row = by_name.get(ref) if isinstance(ref, str) else by_id.get(ref)
            if row is None:
                names = ", ".join(repr(r.name) for r in rows[:10]) or "none"
                raise DatasetError(f"no search run {ref!r} in {db.safe_url} (a run's name or id expected; runs: {names}"
                                   f"{', ...' if len(rows) > 10 else ''})")
            stored = read_run(db, row.name)
            if stored is None or stored.tree is None:
                raise DatasetError(f"search run {row.name!r} (id {row.id}) in {db.safe_url} has no nodes: "
                                   "expected a run that committed at least its root")
            found.append(Source(row.name, stored.tree, row.id, stored.strategy, row.states == "checkpoints"))
        return found
    finally:
        if db is not store:
            db.close()


def _in_hand(ref: Tree | Source, index: int) -> Source:
    return ref if isinstance(ref, Source) else Source(f"tree-{index}", ref)
