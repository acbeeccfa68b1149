"""A long-horizon run: an agent works through many small tasks, one per super-step, each committed as a
checkpoint, so a run that is killed goes on from its last finished task when started again.

    python examples/long_horizon.py --thread table --rows 30      # kill it midway (Ctrl-C, kill -9) ...
    python examples/long_horizon.py --thread table --rows 30      # ... and it resumes where it stopped

The agent (the embedded model unless --model says otherwise) computes n * n + 1 for n = 1..rows with the
python tool; the finished rows and the thread live in the store (--db, default ./.baobab).
"""

import argparse
from typing import Annotated

from pydantic import BaseModel

from baobab.agents import Agent, Example, ExampleCall
from baobab.agents.agent import close_shared_models
from baobab.aio import run_sync
from baobab.engine import DEFAULT_MODEL, LLM
from baobab.graphs import END, START, Checkpoint, Checkpointer, Graph, RunResult, append
from baobab.store import Store
from baobab.tools import builtin_tools


class Row(BaseModel):
    n: int
    answer: str


class Table(BaseModel):
    rows: int = 10
    done: Annotated[list[Row], append] = []


def analyst(model: str | LLM = DEFAULT_MODEL) -> Agent:
    """The agent that does one row: given "Run print(N * N + 1) and reply with its output.", it runs the program
    with the python tool and replies with what it printed."""
    # the task spells out the program: a 135M model copies it into the tool call (rows 1-40 right, greedy);
    # asked to "compute n * n + 1 for n = 2" it rewrote the arithmetic ("n = 2*n + 1") on every row
    return Agent("analyst", role="a calculator", instructions="Compute with the python tool, then reply with "
                 "the number it printed.", model=model, tools=builtin_tools("python"), max_steps=2, max_tokens=64,
                 examples=[Example(task="Run print(12 * 12 + 1) and reply with its output.", answer="145", calls=[
                     ExampleCall(tool="python", arguments={"code": "print(12 * 12 + 1)"}, result="145")])])


def build(model: str = DEFAULT_MODEL) -> Graph:
    """The graph: `work` does the next row, then loops until every row is done."""
    agent = analyst(model)

    async def work(table: Table) -> dict[str, list[Row]]:
        n = len(table.done) + 1
        result = await agent.arun(f"Run print({n} * {n} + 1) and reply with its output.")
        return {"done": [Row(n=n, answer=result.text)]}

    def more(table: Table) -> str:
        return "work" if len(table.done) < table.rows else END

    return Graph(Table, name="long_horizon").node("work", work).edge(START, "work").route("work", more, ["work", END])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--thread", default="long-horizon", help="the run's name: the same name resumes it")
    parser.add_argument("--rows", type=int, default=10, help="how many tasks the run does")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--db", default=None, help="database URL (default: $BAOBAB_DB_URL or ./.baobab)")
    args = parser.parse_args()
    store = Store(args.db)
    app = build(args.model).compile(checkpointer=store, recursion_limit=args.rows + 1)
    info = Checkpointer(store).thread(args.thread)
    if info is None:
        events = app.stream({"rows": args.rows}, thread=args.thread)
    elif info.status == "done":
        print(f"thread {args.thread} is already done")
        return
    else:
        print(f"resuming thread {args.thread} ({info.status})", flush=True)
        events = app.stream_resume(args.thread)
    try:
        for event in events:
            if isinstance(event, Checkpoint) and event.step > 0:  # printed once committed: never lost to a kill
                row = event.state.done[-1]  # type: ignore[attr-defined]
                print(f"row {row.n}: {row.answer}", flush=True)
            elif isinstance(event, RunResult):
                print(f"thread {event.thread} {event.status}: {len(event.state.done)} rows",  # type: ignore[attr-defined]
                      flush=True)
    finally:  # the engine's thread stops before the interpreter does
        run_sync(close_shared_models())


if __name__ == "__main__":
    main()
