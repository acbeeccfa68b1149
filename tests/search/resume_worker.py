"""A search to kill: every expansion logs its state and sleeps. Used by test_persist.py.

    python resume_worker.py DB_URL RUN STRATEGY MAX_EXPANSIONS LOG_FILE DELAY
"""

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from baobab.engine.budget import Spend
from baobab.search import DeceptiveTree, Node, Proposer, search

OPTIONS: dict[str, dict[str, Any]] = {"mcts": {"batch": 2}, "dfs": {}}


def logging_proposer(env: DeceptiveTree, log: Path, delay: float) -> Proposer:
    async def propose(state: list[int], path: list[Node], k: int | None, spend: Spend) -> list[tuple[Any, float]]:
        await asyncio.sleep(delay)
        with log.open("a") as f:  # the work that must not be done twice
            f.write(json.dumps(state) + "\n")
        return [(a, 1 / env.branching) for a in env.actions(state)]

    return propose


def main(url: str, run: str, strategy: str, expansions: str, log: str, delay: str) -> None:
    env = DeceptiveTree()
    result = search(env, strategy, budget={"max_expansions": int(expansions)}, store=url, run=run,
                    proposer=logging_proposer(env, Path(log), float(delay)), **OPTIONS[strategy])
    print(json.dumps({"expansions": result.expansions, "reward": result.reward, "stopped_by": result.stopped_by}))


if __name__ == "__main__":
    main(*sys.argv[1:])
