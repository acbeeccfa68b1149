"""Game of 24 training data from search (issue 28, stage one of benchmarks/learn_game24.py).

    python benchmarks/game24_data.py --ranks 1-900 --expansions 300 --store sqlite:////tmp/g24/runs.db \
        --out /tmp/g24/data

Learning from search needs trees that hold several ways to win, and the failed branches beside them. The
no-model control of search_game24.py (PUCT MCTS, uniform priors, random rollouts) is run on development puzzles
without a target, so it keeps exploring after its first solution until its expansions are spent. Each tree is
persisted as run `g24-rank-{rank}`: a stopped stage resumes, finished runs are skipped, and the same seed gives
the same trees (the uniform proposer and the rollouts are seeded by the seed and the state, not by call order).
The trees become steps (successful paths' moves, in `legal_actions_proposer`'s prompt), recoveries (Agent-R
traces, capped at the number of steps: they outnumber them) and value targets, through a split read from 24.csv
that allows ranks 1-900 only, so the held-out ranks 901-1000 can never enter.
"""

import argparse
import asyncio
import hashlib
import statistics
import time
from collections.abc import Sequence
from typing import Any

from search_game24 import C_PUCT, DATA, Game24, describe, puzzles  # benchmarks/search_game24.py
from sqlalchemy import select

from baobab.engine import weights
from baobab.engine.tokenizer import ChatTokenizer
from baobab.search import asearch
from baobab.store import Store
from baobab.store.schema import search_runs
from baobab.train import Dataset, Outcomes, PromptFormat, Source, Split, build_dataset, load_sources
from baobab.train.jsonl import dumps

DEVELOPMENT = range(1, 901)  # ranks that may be trained on
HELD_OUT = range(901, 1001)  # ranks search_game24.py measures on: never in a dataset
KINDS = ("steps", "recoveries", "values")


def run_name(rank: int) -> str:
    """The search run of the puzzle of `rank`."""
    return f"g24-rank-{rank}"


def finished_runs(store: Store) -> set[str]:
    """Names of the search runs in `store` that finished."""
    with store.transaction() as conn:
        return set(conn.execute(select(search_runs.c.name).where(search_runs.c.status == "done")).scalars())


async def search_puzzle(store: Store, rank: int, puzzle: str, expansions: int, seed: int) -> bool:
    """Search one puzzle to `expansions` without a target (a stored unfinished run resumes); whether it was solved."""
    result = await asearch(Game24(puzzle), "mcts", budget={"max_expansions": expansions}, selection="puct",
                           c=C_PUCT, store=store, run=run_name(rank), seed=seed)
    return result.reward >= 1.0


def search_training_puzzles(store_url: str, ranks: range, expansions: int, seed: int) -> list[str]:
    """Search every puzzle of `ranks` (development ranks only) into `store_url`, skipping finished runs; run names."""
    if min(ranks) < DEVELOPMENT.start or max(ranks) >= DEVELOPMENT.stop:
        raise ValueError(f"ranks {ranks.start}-{ranks.stop - 1}: only development ranks {DEVELOPMENT.start}-"
                         f"{DEVELOPMENT.stop - 1} may be searched for training data")
    games = [(rank, puzzle) for rank, puzzle in puzzles(min(ranks), max(ranks)) if rank in ranks]
    store = Store(store_url)
    try:
        done = finished_runs(store)
        for rank, puzzle in games:
            if run_name(rank) not in done:
                asyncio.run(search_puzzle(store, rank, puzzle, expansions, seed))
    finally:
        store.close()
    return [run_name(rank) for rank, _ in games]


def development_split() -> Split:
    """The split of 24.csv: ranks 901-1000 held out, only ranks 1-900 allowed."""
    return Split.from_csv(DATA, heldout=HELD_OUT, allowed=DEVELOPMENT, name="game24 ranks 1-900")


def cap(records: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """At most `limit` of `records`, picked by the sha256 of each (the same records give the same pick), in order."""
    if len(records) <= limit:
        return records
    ranked = sorted(range(len(records)), key=lambda i: hashlib.sha256(dumps(records[i]).encode()).digest())
    return [records[i] for i in sorted(ranked[:limit])]


def successes(sources: Sequence[Source]) -> list[int]:
    """The number of distinct successful paths (winning leaves) in each source's tree."""
    return [len(Outcomes(source.tree).successes()) for source in sources]


def build_game24_dataset(store_url: str, names: Sequence[str], out_dir: str, min_visits: int = 1) -> dict[str, Any]:
    """Steps, recoveries (capped at the steps' count) and values of the runs `names`, written to `out_dir`; counts."""
    sources = load_sources(list(names), store_url)
    fmt = PromptFormat(describe, env=lambda numbers: Game24(" ".join(numbers)))
    data = build_dataset(sources, prompt=fmt, split=development_split(), kinds=KINDS, min_visits=min_visits)
    found = len(data.records["recoveries"])
    data.records["recoveries"] = cap(data.records["recoveries"], len(data.records["steps"]))
    data.options["recoveries_cap"] = {"found": found, "kept": len(data.records["recoveries"]),
                                      "rule": "at most as many as steps, the lowest sha256 of each record's line"}
    data.write(out_dir)
    wins = successes(sources)
    return {"puzzles": len(sources), "solved": sum(n > 0 for n in wins), "success_paths": wins,
            "recoveries_found": found, **{kind: n for kind, n in data.counts().items() if kind in KINDS}}


def smollm2_tokenizer() -> ChatTokenizer:
    """SmolLM2-135M's tokenizer and chat template (from the installed weights file)."""
    return ChatTokenizer(weights.load(weights.resolve("smollm2-135m")))


def token_lengths(tok: ChatTokenizer, records: list[dict[str, Any]]) -> list[int]:
    """Tokens of each chat record under `tok`'s template: the rendered prompt, then the last answer and its end."""
    lengths = []
    for record in records:
        messages = record["messages"]
        prompt = tok.render([{"role": m["role"], "content": m["content"]} for m in messages[:-1]])
        lengths.append(len(tok.encode(prompt)) + len(tok.encode(messages[-1]["content"] + "<|im_end|>")))
    return lengths


def parse_ranks(text: str) -> range:
    """"1-900" (or "17") as a range of ranks."""
    first, _, last = text.partition("-")
    return range(int(first), int(last or first) + 1)


def report(counts: dict[str, Any], steps: list[int], recoveries: list[int], search_s: float, wall_s: float) -> None:
    """Print what the stage made."""
    wins = counts.pop("success_paths")
    print(f"solved {counts['solved']}/{counts['puzzles']} puzzles; successful paths per tree: mean "
          f"{statistics.mean(wins):.1f}, median {statistics.median(wins):g}, max {max(wins)}")
    print("records: " + ", ".join(f"{kind} {counts[kind]}" for kind in KINDS)
          + f" (recoveries found {counts['recoveries_found']}, capped at the steps' count)")
    for kind, lengths in (("steps", steps), ("recoveries", recoveries)):
        if lengths:
            print(f"{kind} tokens: mean {statistics.mean(lengths):.0f}, max {max(lengths)}")
    print(f"search {search_s:.0f} s, wall {wall_s:.0f} s")


def main() -> None:
    """Search the development puzzles, build the dataset, print its counts and token lengths."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=parse_ranks, default=parse_ranks("1-900"), help="development ranks, a-b")
    parser.add_argument("--expansions", type=int, default=300, help="MCTS expansions per puzzle")
    parser.add_argument("--seed", type=int, default=0, help="seeds the rollouts (and any proposer sampling)")
    parser.add_argument("--store", default="sqlite:////tmp/g24/runs.db", help="database URL of the search runs")
    parser.add_argument("--out", default="/tmp/g24/data", help="the dataset's directory")
    parser.add_argument("--min-visits", type=int, default=1, help="visits a value target needs")
    args = parser.parse_args()
    started = time.perf_counter()
    names = search_training_puzzles(args.store, args.ranks, args.expansions, args.seed)
    search_s = time.perf_counter() - started
    counts = build_game24_dataset(args.store, names, args.out, args.min_visits)
    data, tok = Dataset.read(args.out), smollm2_tokenizer()
    report(counts, token_lengths(tok, data.records["steps"]), token_lengths(tok, data.records["recoveries"]),
           search_s, time.perf_counter() - started)


if __name__ == "__main__":
    main()
