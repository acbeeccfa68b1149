"""A run to kill: each node sleeps, then appends its name to a counter file. Used by test_crash.py.

    python crash_worker.py DB_URL COUNTER_FILE run|resume
"""

import sys
import time
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel

from baobab.graphs import END, START, Graph, append

DELAYS = {"a": 0.05, "b1": 1.5, "b2": 0.05, "c": 0.05, "d": 1.0, "e": 0.05}


class Log(BaseModel):
    log: Annotated[list[str], append] = []


def build(counter: Path) -> Graph:
    def node(name: str):  # type: ignore[no-untyped-def]
        def run(state: Log) -> dict[str, list[str]]:
            time.sleep(DELAYS[name])
            with counter.open("a") as f:  # the side effect that must happen once
                f.write(name + "\n")
            return {"log": [name]}
        return run

    g = Graph(Log, name="crash")
    for name in DELAYS:
        g.node(name, node(name))
    g.edge(START, "a").edge("a", "b1").edge("a", "b2").edge(["b1", "b2"], "c")
    return g.edge("c", "d").edge("d", "e").edge("e", END)


if __name__ == "__main__":
    url, counter, mode = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    app = build(counter).compile(checkpointer=url)
    result = app.run(thread="job") if mode == "run" else app.resume("job")
    print(",".join(result.state.log))
