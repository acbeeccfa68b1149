"""Search runs in the store: the options, the spend and every node, committed one step at a time."""

import json
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, bindparam, insert, select, update

from baobab.search.tree import Node, Tree
from baobab.store import Store
from baobab.store.schema import search_nodes, search_runs
from baobab.store.trace import Span, tracer_for


@dataclass
class StoredRun:
    """A run as found in the store: its tree (None for a new run), status, spend so far and result."""

    tree: Tree | None
    status: str
    spent: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    strategy: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    id: int | None = None


def read_run(store: Store, name: str) -> StoredRun | None:
    """The search run stored as `name`, whatever its strategy and options, or None.

    >>> read_run(Store("sqlite://"), "nope") is None
    True
    """
    with store.transaction() as conn:
        row = conn.execute(select(search_runs).where(search_runs.c.name == name)).mappings().first()
        if row is None:
            return None
        datas = conn.execute(select(search_nodes.c.data).where(search_nodes.c.run == row["id"])).scalars().all()
    nodes = [Node.from_dict(json.loads(d)) for d in datas]
    return StoredRun(Tree.from_nodes(nodes) if nodes else None, row["status"], json.loads(row["spent"]),
                     json.loads(row["result"]) if row["result"] else None, row["strategy"], json.loads(row["options"]),
                     row["id"])


class SearchRecorder:
    """Reads and writes one named search run; `commit` writes the tree's dirty nodes in one transaction.

    >>> rec = SearchRecorder(Store("sqlite://"), "demo")
    >>> rec.open("mcts", {"seed": 0}).status
    'new'

    """

    def __init__(self, store: Store, name: str, *, checkpoints: bool = False) -> None:
        self.store, self.name = store, name
        self.checkpoints = checkpoints  # node states and actions are checkpoint ids: pruning keeps them
        self.run_id: int | None = None
        self.strategy, self.options = "", dict[str, Any]()
        self.saved: set[int] = set()  # node ids that have a row
        self.span: Span | None = None  # this process's part of the run, for the trace viewer

    def open(self, strategy: str, options: dict[str, Any]) -> StoredRun:
        """The stored run named `name` (status "new" if missing); its strategy and options must match."""
        self.strategy, self.options = strategy, options
        run = read_run(self.store, self.name)
        if run is None:
            return StoredRun(None, "new")
        stored = {"strategy": run.strategy, **run.options}
        if stored != {"strategy": strategy, **options}:
            raise ValueError(f"search run {self.name!r} was started with {stored}, not "
                             f"{ {'strategy': strategy, **options} }: resume it with the same options "
                             "or pick another run name")
        self.run_id = run.id
        self.saved = {n.id for n in run.tree.nodes} if run.tree is not None else set()
        return run

    def commit(self, tree: Tree, spent: dict[str, Any], status: str = "running",
               result: dict[str, Any] | None = None) -> None:
        """Write the tree's changed nodes, the spend and the status in one transaction; then nothing is dirty."""
        changed = [tree.nodes[i] for i in sorted(tree.dirty)]
        rows: list[dict[str, Any]] = [{"run": self.run_id, "node": n.id, "parent": n.parent,
                                       "data": json.dumps(n.to_dict())} for n in changed]
        new = [r for r in rows if r["node"] not in self.saved]
        old = [{"r": r["run"], "n": r["node"], "d": r["data"]} for r in rows if r["node"] in self.saved]
        run_id = self.run_id
        with self.store.transaction() as conn:
            if run_id is None:  # a run gets its row with its first commit: a bad option leaves no trace
                now = time.time()
                run_id = conn.execute(insert(search_runs).values(
                    name=self.name, strategy=self.strategy, status=status, options=json.dumps(self.options),
                    spent="{}", created=now, updated=now, states="checkpoints" if self.checkpoints else "values",
                )).inserted_primary_key[0]  # type: ignore[index]
                for row in new:
                    row["run"] = run_id
            if new:
                conn.execute(insert(search_nodes), new)
            if old:
                conn.execute(update(search_nodes).where(and_(search_nodes.c.run == bindparam("r"),
                                                             search_nodes.c.node == bindparam("n")))
                             .values(data=bindparam("d")), old)
            conn.execute(update(search_runs).where(search_runs.c.id == run_id).values(
                status=status, spent=json.dumps(spent), result=json.dumps(result) if result else None,
                updated=time.time()))
        self.run_id = run_id
        self.saved.update(r["node"] for r in new)
        tree.dirty.clear()
        self._trace(len(tree.nodes), spent, status, result)

    def _trace(self, nodes: int, spent: dict[str, Any], status: str, result: dict[str, Any] | None) -> None:
        if self.span is None:
            self.span = tracer_for(self.store).start(f"search:{self.name}", "search", self.strategy,
                                                     {"options": self.options})
        self.span.attrs.update(nodes=nodes, spent=spent, result=result)
        if status != "running":
            self.span.end("ok" if status == "done" else "error", None if status == "done" else json.dumps(result))
            self.span.tracer.flush()
