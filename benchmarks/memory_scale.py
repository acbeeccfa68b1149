"""Memory at scale: add and search latency (p50/p99) at 10k, 100k and 1M notes, memory use, and the a-mem package.

    python benchmarks/memory_scale.py [--quick] [--no-amem]

Synthetic notes (llm=None, the cheap mode): 10-18 words each, a third of them English stop words, the rest drawn
from 30,000 made-up words with Zipf frequencies (as words are in text). The embedder is a 384-d signed feature
hash of the words, the same for every row and cheap (a real model would dominate a million adds and measure the
model, not the memory). Baobab grows one SQLite memory to each size with `add_many` (batches of 5,000: bulk
ingestion), then times 50 single `add`s (describe, embed, link to neighbours, store) and 200 searches per mode
(k=10; hybrid is the default: vectors and full text fused) whose queries are 4 content words and 2 stop words of
a stored note; memory is the process's resident set. The peer is the `a-mem` package (A-MEM's own code: ChromaDB,
its LLM a deterministic stub; its own venv, see memory_amem.py) with the same embedder, at the sizes it reaches
within its time limit. Goal: Baobab's search p99 under 20 ms at 1M notes. Writes benchmarks/results/memory_scale.json.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "memory_scale.json"
SIZES, QUICK_SIZES = [10_000, 100_000, 1_000_000], [10_000, 100_000]
AMEM_SIZES = [1_000, 5_000]
BATCH, QUERIES, ADDS, K = 5_000, 200, 50, 10
OPEN_UP_TO = 100_000  # reopening 1M notes rebuilds its HNSW graph: minutes, past the time this may take
MODES = ["hybrid", "vector", "keyword"]
GOAL = "Baobab's search (hybrid, k=10) p99 under 20 ms at 1M notes on this machine"
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vi", "zo", "pe", "sa", "do", "gu", "ri", "fa", "ho", "ju", "be",
             "co", "xi", "we", "an", "el"]
STOP = sorted(["the", "a", "of", "to", "and", "in", "is", "it", "that", "was", "for", "on", "with", "as", "at",
               "by", "this", "from", "be", "or", "not", "are", "have", "had"])


class HashEmbedder:
    """Words to a signed feature hash of 384 dimensions, unit length: similar word sets, similar vectors."""

    dim = 384

    def embed(self, texts: list[str]) -> Any:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                h = zlib.crc32(word.encode())
                out[row, h % self.dim] += 1.0 if h & 0x80000 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)


class Corpus:
    """Deterministic synthetic notes and queries."""

    def __init__(self, seed: int = 0, words: int = 30_000) -> None:
        self.rng = np.random.default_rng(seed)
        made: dict[str, None] = {}
        while len(made) < words:
            parts = self.rng.choice(SYLLABLES, size=self.rng.integers(2, 5))
            made["".join(parts)] = None
        self.words = np.array(list(made))
        weights = 1 / np.arange(1, words + 1)
        self.p = weights / weights.sum()

    def notes(self, n: int) -> list[str]:
        content = self.words[self.rng.choice(len(self.words), size=(n, 12), p=self.p)]
        stops = np.array(STOP)[self.rng.integers(0, len(STOP), size=(n, 6))]
        lengths = self.rng.integers(10, 19, size=n)
        out = []
        for i in range(n):
            row = list(content[i, :max(lengths[i] - 6, 4)]) + list(stops[i, :lengths[i] - max(lengths[i] - 6, 4)])
            self.rng.shuffle(row)
            out.append(" ".join(row))
        return out

    def queries(self, stored: list[str], n: int) -> list[str]:
        picked = self.rng.choice(len(stored), size=n, replace=False)
        out = []
        for i in picked:
            words = stored[i].split()
            content = [w for w in words if w not in STOP][:4]
            out.append(" ".join(content + list(self.rng.choice(STOP, 2))))
        return out


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def measure_baobab(sizes: list[int], corpus: Corpus, folder: Path) -> list[dict[str, Any]]:
    from baobab.memory import Memory
    from baobab.memory.vectors_process import ProcessVectors

    url = f"sqlite:///{folder / 'scale.db'}"
    memory, stored, rows = Memory(url, embedder=HashEmbedder(), llm=None), [], []
    vectors = memory.vector_backend
    assert isinstance(vectors, ProcessVectors)  # SQLite: the vectors are searched in this process
    built = 0.0
    for size in sizes:
        started = time.perf_counter()
        while len(stored) < size:
            batch = corpus.notes(min(BATCH, size - len(stored)))
            memory.add_many(batch)
            stored += batch
        built += time.perf_counter() - started
        adds = []
        for text in corpus.notes(ADDS):
            t = time.perf_counter()
            memory.add(text)
            adds.append(time.perf_counter() - t)
        stored_at_size = len(stored)
        queries = corpus.queries(stored, QUERIES)
        searches = {}
        for mode in MODES:
            times = []
            for query in queries:
                t = time.perf_counter()
                hits = memory.search(query, k=K, mode=mode)
                times.append(time.perf_counter() - t)
                assert hits, f"{mode} search found nothing for {query!r}"
            searches[mode] = percentiles(times)
        files = sum(f.stat().st_size for f in folder.glob("scale.db*"))
        started = time.perf_counter()
        if size <= OPEN_UP_TO:  # what opening the memory costs another process: loading vectors, building the index
            Memory(url, embedder=HashEmbedder(), llm=None).close()
        rows.append({"notes": stored_at_size, "build_s": round(built, 1), "add_many_notes_per_s":
                     round(stored_at_size / built, 1), "add": percentiles(adds), "search": searches,
                     "open_s": round(time.perf_counter() - started, 2) if size <= OPEN_UP_TO else None,
                     "rss_mb": rss_mb(),
                     "db_mb": round(files / 2**20, 1), "index": "hnsw" if vectors.index.ann is not None else "exact"})
        print(f"  baobab {stored_at_size:>9,} notes: {json.dumps(rows[-1])}", flush=True)
    memory.close()
    return rows


def amem_worker(sizes: list[int], seconds: float) -> None:
    """In the a-mem venv: grow one a-mem memory to each size (add_note), time adds and searches; print JSON."""
    import memory_amem

    real_stdout, sys.stdout = sys.stdout, sys.stderr  # a-mem and chromadb print; keep stdout for the JSON
    corpus, embedder, rows, stored = Corpus(), HashEmbedder(), [], []
    deadline = time.perf_counter() + seconds
    with tempfile.TemporaryDirectory() as storage:
        system = memory_amem.new_system(storage, embed=lambda texts: embedder.embed(texts).tolist())
        started = time.perf_counter()
        for size in sizes:
            adds = []
            for text in corpus.notes(size - len(stored)):
                t = time.perf_counter()
                system.add_note(text)
                adds.append(time.perf_counter() - t)
                stored.append(text)
                if time.perf_counter() > deadline:
                    break
            if len(stored) < size:
                rows.append({"notes": size, "stopped": f"{len(stored)} notes added in the {seconds:.0f} s allowed"})
                break
            times = []
            for query in corpus.queries(stored, QUERIES):
                t = time.perf_counter()
                system.search_agentic(query, k=K)
                times.append(time.perf_counter() - t)
            rows.append({"notes": size, "build_s": round(time.perf_counter() - started, 1),
                         "add": percentiles(adds[-ADDS:]), "search": {"hybrid": percentiles(times)},
                         "rss_mb": rss_mb()})
    real_stdout.write(json.dumps({"rows": rows, "versions": versions("a-mem", "chromadb")}) + "\n")


def versions(*packages: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in packages:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def measure_amem(sizes: list[int], seconds: float) -> dict[str, Any]:
    import memory_amem

    try:
        return memory_amem.run_worker(Path(__file__), ["--amem-worker", json.dumps(sizes), "--seconds",
                                                       str(seconds)], seconds + 600)
    except Exception as exc:  # its venv could not be made, or it failed: the row says why
        return {"rows": [], "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k and 100k notes only (a few minutes)")
    parser.add_argument("--no-amem", action="store_true", help="leave the a-mem rows out (development only)")
    parser.add_argument("--amem-seconds", type=float, default=200, help="time a-mem may spend adding notes")
    parser.add_argument("--amem-worker", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=300, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.amem_worker:
        amem_worker(json.loads(args.amem_worker), args.seconds)
        return
    sys.path.insert(0, str(HERE))
    from environment import cpu_name

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    sizes = QUICK_SIZES if args.quick else SIZES
    with tempfile.TemporaryDirectory(prefix="baobab-memory-scale-") as folder:
        baobab = measure_baobab(sizes, Corpus(), Path(folder))
    amem = {"rows": [], "error": "left out (--no-amem)"} if args.no_amem else measure_amem(AMEM_SIZES,
                                                                                          args.amem_seconds)
    table = []
    for row in baobab:
        table.append({"system": "baobab", "notes": row["notes"], "add_p50_ms": row["add"]["p50_ms"],
                      "add_p99_ms": row["add"]["p99_ms"], **{f"{m}_p50_ms": row["search"][m]["p50_ms"] for m in MODES},
                      **{f"{m}_p99_ms": row["search"][m]["p99_ms"] for m in MODES}, "rss_mb": row["rss_mb"]})
    for row in amem["rows"]:
        if "search" in row:
            table.append({"system": "a-mem", "notes": row["notes"], "add_p50_ms": row["add"]["p50_ms"],
                          "add_p99_ms": row["add"]["p99_ms"], "hybrid_p50_ms": row["search"]["hybrid"]["p50_ms"],
                          "hybrid_p99_ms": row["search"]["hybrid"]["p99_ms"], "rss_mb": row["rss_mb"]})
    print(f"\n{'system':<8}{'notes':>10}{'add p50':>9}{'add p99':>9}{'search p50':>12}{'search p99':>12}"
          f"{'vector p99':>12}{'keyword p99':>13}{'RSS MB':>9}")
    for r in table:
        print(f"{r['system']:<8}{r['notes']:>10,}{r['add_p50_ms']:>9}{r['add_p99_ms']:>9}{r['hybrid_p50_ms']:>12}"
              f"{r['hybrid_p99_ms']:>12}{r.get('vector_p99_ms', '-'):>12}{r.get('keyword_p99_ms', '-'):>13}"
              f"{r['rss_mb']:>9}")
    for r in [x for x in table if x["system"] == "a-mem"]:
        ours = next((b for b in table if b["system"] == "baobab" and b["notes"] >= r["notes"]), None)
        if ours:
            print(f"a-mem at {r['notes']:,}: search p99 {r['hybrid_p99_ms']} ms vs Baobab at {ours['notes']:,} "
                  f"{ours['hybrid_p99_ms']} ms ({r['hybrid_p99_ms'] / ours['hybrid_p99_ms']:.1f}x)")
    largest = baobab[-1]
    met = largest["notes"] >= 1_000_000 and largest["search"]["hybrid"]["p99_ms"] < 20
    summary = (f"Baobab at {largest['notes']:,} notes: search p50 {largest['search']['hybrid']['p50_ms']} ms, p99 "
               f"{largest['search']['hybrid']['p99_ms']} ms (vector p99 {largest['search']['vector']['p99_ms']}, "
               f"keyword p99 {largest['search']['keyword']['p99_ms']}), add p99 {largest['add']['p99_ms']} ms, "
               f"RSS {largest['rss_mb']} MB, built at {largest['add_many_notes_per_s']} notes/s; a-mem: "
               + ("; ".join(f"{r['notes']:,} notes search p99 {r['search']['hybrid']['p99_ms']} ms" if "search" in r
                            else r["stopped"] for r in amem["rows"]) or amem.get("error", "no rows")))
    result = {"goal": GOAL, "met": met, "summary": summary, "quick": args.quick, "table": table,
              "baobab": baobab, "amem": amem,
              "method": {"notes": "synthetic: 10-18 words, a third stop words, the rest Zipf over 30,000 made-up "
                                  "words", "embedder": "384-d signed feature hash of the words (both systems)",
                         "baobab": "one SQLite memory (llm=None) grown with add_many in batches of 5,000; then "
                                   f"{ADDS} single adds and {QUERIES} searches per mode, k={K}",
                         "amem": f"a-mem add_note one at a time, search_agentic k={K}, its LLM a stub "
                                 "(memory_amem.py)", "open_s": "opening the memory in a new object: loading "
                                 "its vectors and building its index"},
              "environment": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
                              "platform": platform.platform(), "versions": versions("baobab", "numpy", "usearch")},
              "wall_s": round(time.perf_counter() - started, 1)}
    print(summary, "| goal met:", met)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {OUT} in {result['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
