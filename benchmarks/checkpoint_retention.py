"""What a prune keeps: each kept checkpoint's chain back to its snapshot, against writing it a new snapshot.

    python benchmarks/checkpoint_retention.py

A checkpoint's state is its nearest snapshot plus the writes after it, so `Checkpointer.prune(keep_last=N)` keeps
the checkpoints back to the snapshot of the oldest one it keeps. The alternative, a new snapshot on that oldest
one, would need the state class (which `baobab threads prune` does not have). This measures both on threads of
200 and 1,000 steps whose state holds a growing list beside a fixed field of 0, 4 and 40 KB: the bytes of JSON left
(checkpoints and writes) and the checkpoints left. Writes benchmarks/results/checkpoint_retention.json.
"""

import os
import platform
import sqlite3
import tempfile
from typing import Annotated, Any

from environment import cpu_name, write_result  # benchmarks/environment.py
from pydantic import BaseModel, create_model
from sqlalchemy import func, select

from baobab.graphs import END, START, App, Checkpointer, Graph, append
from baobab.store.schema import checkpoints, writes

GOAL = "chains kept cost at most 1.25x the bytes of a new snapshot"


def counter(fixed: int, steps: int, url: str) -> App:
    state: type[BaseModel] = create_model("State", n=(int, 0), log=(Annotated[list[str], append], []),
                                          fixed=(str, "x" * fixed))
    g = Graph(state, name="count").node("inc", lambda s: {"n": s.n + 1, "log": [f"entry {s.n + 1:05d}"]})
    g.edge(START, "inc").route("inc", lambda s: "inc" if s.n < steps else END, ["inc", END])
    return g.compile(checkpointer=url, recursion_limit=steps + 1)


def stored(cp: Checkpointer, ids: list[int] | None = None, after_step: int = -1) -> int:
    """Characters of JSON in checkpoints (`ids`, default all) and in writes after `after_step`."""
    rows = func.length(checkpoints.c.pending) + func.coalesce(func.length(checkpoints.c.snapshot), 0)
    with cp.store.transaction() as conn:
        chosen = select(func.sum(rows))
        total = conn.execute(chosen.where(checkpoints.c.id.in_(ids)) if ids else chosen).scalar_one()
        return int(total) + int(conn.execute(select(func.coalesce(func.sum(func.length(writes.c.data)), 0))
                                             .where(writes.c.step > after_step)).scalar_one())


def measure(fixed: int, steps: int, keep: int) -> dict[str, Any]:
    app = counter(fixed, steps, f"sqlite:///{tempfile.mkdtemp()}/runs.db")
    app.run(thread="t")
    assert app.checkpointer is not None
    cp, history = app.checkpointer, app.history("t")
    before, oldest = stored(cp), history[keep - 1]
    new_snapshot = 0 if oldest.snapshot else len(app.state(checkpoint=oldest.id).model_dump_json())
    ideal = stored(cp, [c.id for c in history[:keep]], oldest.step) + new_snapshot
    cp.prune(keep_last=keep)
    kept = stored(cp)
    return {"state_kb": len(app.state("t").model_dump_json()) / 1000, "steps": steps, "keep_last": keep,
            "before_kb": before / 1000, "chain_kb": kept / 1000, "chain_checkpoints": len(app.history("t")),
            "new_snapshot_kb": ideal / 1000, "ratio": kept / ideal}


def main() -> None:
    rows = [measure(fixed, steps, keep) for fixed in (0, 4000, 40000) for steps, keep in ((200, 1), (200, 10),
                                                                                         (1000, 10))]
    print(f"{'state':>8}  {'steps':>5}  {'keep':>4}  {'before':>8}  {'chain kept':>16}  {'new snapshot':>12}  ratio")
    for r in rows:
        print(f"{r['state_kb']:>5.1f} KB  {r['steps']:>5}  {r['keep_last']:>4}  {r['before_kb']:>5.0f} KB  "
              f"{r['chain_kb']:>6.1f} KB ({r['chain_checkpoints']:>3})  {r['new_snapshot_kb']:>9.1f} KB  "
              f"{r['ratio']:.2f}x")
    worst = max(r["ratio"] for r in rows)
    summary = f"keeping chains to their snapshot: at most {worst:.2f}x the bytes of a new snapshot"
    print(summary, "| goal met:", worst <= 1.25)
    result = {"goal": GOAL, "met": worst <= 1.25, "summary": summary, "table": rows,
              "environment": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
                              "sqlite": sqlite3.sqlite_version}}
    write_result("checkpoint_retention", result)


if __name__ == "__main__":
    main()
