"""Expert iteration: search with the model, train the model on what search found, search again with the new model.

    python examples/expert_iteration.py [--rounds 2] [--work .baobab/expert_iteration]

The task is a lock of four dials (`DeceptiveTree`: three settings a dial; setting the first dial to 0 leads to
a plateau of half rewards; one combination opens it). Each round, MCTS searches it with the round's model
proposing moves (`legal_actions_proposer`) and no value before a leaf, so the priors steer; the successful path
becomes a dataset of the proposer's own prompts and moves (`baobab.train.build_dataset`); the model is fine-tuned
on it (LoRA) and the next round searches with the trained model. On the embedded model, round 0 spends 36 model
calls and round 1 opens the lock with one call a dial (4): the trained model proposes the combination at once.
On one task that is memory, not skill: benchmarks/learn_game24.py measures what it gives on tasks never seen.
Every step is kept in --work: stopped at any point (kill -9 too), it goes on where it stopped.
"""

import argparse
import json
from pathlib import Path

from baobab.aio import run_sync
from baobab.engine import DEFAULT_MODEL, load_llm
from baobab.engine.budget import Spend
from baobab.search import Node, asearch, legal_actions_proposer
from baobab.search.toys import DeceptiveTree
from baobab.train import PromptFormat, TrainConfig, build_dataset, train

LOCK = DeceptiveTree(depth=4, branching=3, optimum=[2, 2, 2, 2])
TRAINING = TrainConfig(max_steps=12, batch_size=4, learning_rate=1e-3, save_every=4)


async def no_value(state: list[int], path: list[Node], spend: Spend) -> float:
    """No guess before a leaf: the moves the model proposes (the priors) steer the search until rewards come in."""
    return 0.0


def describe(state: list[int], path: list[Node]) -> str:
    """The prompt's view of the lock: the dials set so far."""
    return f"Open the lock: set four dials, one at a time, each to 0, 1 or 2. Dials set so far: {state or 'none'}."


async def search_round(model: str, store: str, run: str) -> tuple[float, int]:
    """MCTS on the lock with `model` proposing moves, stored as `run` (a stored run resumes); reward, model calls."""
    llm = load_llm(model)
    try:
        result = await asearch(LOCK, "mcts", budget={"max_model_calls": 40}, target=1.0, k=3, selection="puct",
                               store=store, run=run,
                               proposer=legal_actions_proposer(llm, LOCK, describe, floor=0.25), evaluator=no_value)
    finally:
        await llm.aclose()
    return result.reward, result.model_calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="search-and-train rounds (the last one only searches)")
    parser.add_argument("--work", type=Path, default=Path(".baobab/expert_iteration"), help="kept between runs")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    store, model = f"sqlite:///{args.work / 'searches.db'}", DEFAULT_MODEL
    for round_ in range(args.rounds):
        reward, calls = run_sync(search_round(model, store, f"round-{round_}"))
        print(f"round {round_}: {'opened' if reward >= 1 else 'not opened'} in {calls} model calls with {model}",
              flush=True)
        if round_ == args.rounds - 1:
            break
        folder = args.work / f"round-{round_}"
        data = build_dataset([f"round-{round_}"], store=store, prompt=PromptFormat(describe, env=LOCK), split=None,
                             kinds=["steps"])
        data.write(folder / "data")
        result = train(model, folder / "data", folder / "model", TRAINING)
        print(f"round {round_}: trained on {json.dumps(data.counts()['steps'])} examples in {result.seconds:.0f} s",
              flush=True)
        model = f"local:{folder / 'model'}"


if __name__ == "__main__":
    main()
