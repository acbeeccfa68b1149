"""kill -9 at random moments (seeded) of graph runs, searches and memory writes in real processes; resume.

After each kill the store says what was committed and the effects file what was done. Every committed
step, expansion and note is in the store exactly once and its side effect is never repeated; the only
work done twice is work in flight at a kill (done, not yet committed), at most one step's, batch's or
note's worth; the end result equals an uninterrupted run's. `pytest -m long -s` runs many more seeds
and prints the totals.
"""

import importlib.util
import json
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select as sql_select
from sqlalchemy import text

from baobab.graphs import Checkpointer
from baobab.search.persist import read_run
from baobab.store import Store
from baobab.store.schema import memory_notes

WORKER = Path(__file__).with_name("crash_worker.py")
if "reliability_crash_worker" not in sys.modules:  # the worker's module, shared with test_store_faults.py
    spec = importlib.util.spec_from_file_location("reliability_crash_worker", WORKER)
    assert spec is not None and spec.loader is not None
    sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sys.modules[spec.name])
ForkServer = sys.modules["reliability_crash_worker"].ForkServer
IN_FLIGHT = {"graph": 3, "search": 2, "memory": 1}  # the most work one kill can catch uncommitted
KINDS = ["graph", "search", "memory"]


@dataclass
class Kill:
    """What the store held and what had been done right after one kill."""

    done: Counter[str]  # side effects so far (lines of the effects file)
    committed: Counter[str]  # units of work in the store


@dataclass
class Tally:
    runs: int = 0
    kills: int = 0
    units: int = 0
    repeated: int = 0  # side effects done twice: all of work in flight at a kill
    progress: list[float] | None = None  # at each kill, the share of the work already committed


def committed(kind: str, url: str) -> Counter[str]:
    """The units of work the store holds: a graph's node writes, a search's expanded states, memory's notes."""
    store = Store(url)
    try:
        if kind == "graph":
            cp = Checkpointer(store)
            info = cp.thread("job")
            if info is None:
                return Counter()
            steps = [c.step for c in cp.history(info.id, "job")]
            assert steps == sorted(set(steps), reverse=True), steps  # one checkpoint per step, none twice
            return Counter(w.node for w in cp.thread_updates(info.id))
        if kind == "search":
            run = read_run(store, "job")
            nodes = run.tree.nodes if run is not None and run.tree is not None else []
            return Counter(json.dumps(n.state) for n in nodes if n.expanded)
        with store.transaction() as conn:
            notes = dict(conn.execute(sql_select(memory_notes.c.id, memory_notes.c.content)).all())
            indexed = conn.execute(text("SELECT rowid FROM memory_fts")).scalars().all() if notes else []
        assert sorted(indexed) == sorted(notes), (indexed, notes)  # no note without its full-text row, or after
        return Counter(notes.values())
    finally:
        store.close()


def crash_and_resume(server: ForkServer, kind: str, folder: Path, seed: int, span: float) -> tuple[Any, list[Kill]]:
    """Kill runs at up to 3 random moments within `span` seconds of their start, then let one finish."""
    url, effects, out = f"sqlite:///{folder / 'crash.db'}", folder / "crash.effects", folder / "out.json"
    rng, kills = random.Random(f"{kind} {seed}"), list[Kill]()
    for _ in range(rng.randint(1, 3)):
        pid = server.start(kind, url, effects, out)
        time.sleep(rng.uniform(0, span))  # the moment of the kill: the experiment's variable, not a wait
        os.kill(pid, signal.SIGKILL)
        status = server.wait(pid)
        if status == 0:  # it had finished before the kill
            break
        assert status == -signal.SIGKILL, Path(f"{out}.err").read_text()
        kills.append(Kill(Counter(effects.read_text().splitlines()) if effects.exists() else Counter(),
                          committed(kind, url)))
    status = server.wait(server.start(kind, url, effects, out))
    assert status == 0, Path(f"{out}.err").read_text()
    return json.loads(out.read_text()), kills


def check(server: ForkServer, calm: Callable[[str], tuple[Any, float, Counter[str]]], tally: dict[str, Tally],
          kind: str, folder: Path, seed: int) -> None:
    expected, span, everything = calm(kind)
    result, kills = crash_and_resume(server, kind, folder, seed, span)
    assert result == expected  # the same end as a run that was never killed
    final = Counter((folder / "crash.effects").read_text().splitlines())
    assert committed(kind, f"sqlite:///{folder / 'crash.db'}") == everything  # every unit once: none lost, none twice
    twice: Counter[str] = Counter()  # units in flight at a kill: done, not committed, so done again later
    before, was = Counter[str](), Counter[str]()
    for kill in kills:
        ran = kill.done - before  # what the killed process did
        assert set(ran.values()) <= {1}, ran  # no process does a unit twice
        assert all(n == 1 for n in kill.committed.values()), kill.committed  # nor does the store hold one twice
        assert not was - kill.committed, was - kill.committed  # what was committed stays
        assert set(kill.committed) <= set(kill.done)  # committed work had its side effect
        in_flight = set(ran) - set(kill.committed)
        assert len(in_flight) <= IN_FLIGHT[kind], in_flight
        twice.update(in_flight)
        for unit in kill.committed:  # committed work is never done again
            assert final[unit] == kill.done[unit], (unit, final[unit], kill.done[unit])
        before, was = kill.done, kill.committed
    assert final == Counter({unit: 1 + twice[unit] for unit in everything})  # everything else exactly once
    record = tally.setdefault(kind, Tally(progress=[]))
    record.runs, record.kills, record.units = record.runs + 1, record.kills + len(kills), record.units + len(final)
    record.repeated += twice.total()
    assert record.progress is not None
    record.progress += [kill.committed.total() / len(everything) for kill in kills]
    print(f"{kind} seed {seed}: {len(kills)} kills at {[k.committed.total() for k in kills]} of {len(everything)} "
          f"committed, {twice.total()} done twice (in flight)")


@pytest.fixture(scope="module")
def server() -> Iterator[ForkServer]:
    forks = ForkServer()
    yield forks
    forks.close()


@pytest.fixture(scope="module")
def calm(server: ForkServer, tmp_path_factory: pytest.TempPathFactory
         ) -> Callable[[str], tuple[Any, float, Counter[str]]]:
    """A kind's uninterrupted run, once per module: its result, how long its work took, the units it committed."""
    runs: dict[str, tuple[Any, float, Counter[str]]] = {}

    def get(kind: str) -> tuple[Any, float, Counter[str]]:
        if kind not in runs:
            folder = tmp_path_factory.mktemp(f"calm-{kind}")
            url, out = f"sqlite:///{folder / 'calm.db'}", folder / "out.json"
            started = time.time()
            assert server.wait(server.start(kind, url, folder / "calm.effects", out)) == 0, out.with_suffix(
                ".json.err").read_text()
            span = (folder / "calm.effects").stat().st_mtime - started  # until the last unit's side effect
            units = committed(kind, url)
            assert Counter((folder / "calm.effects").read_text().splitlines()) == units  # each unit done once
            runs[kind] = json.loads(out.read_text()), span, units
        return runs[kind]

    return get


@pytest.fixture(scope="module")
def tally() -> Iterator[dict[str, Tally]]:
    totals: dict[str, Tally] = {}
    yield totals
    for kind, t in totals.items():
        assert t.progress is not None
        print(f"\n{kind}: {t.runs} seeds, {t.kills} kills (committed share at the kill: min "
              f"{min(t.progress, default=0):.2f}, max {max(t.progress, default=0):.2f}), {t.units} units, "
              f"0 lost, 0 duplicated in the store, {t.repeated} side effects done twice (all in flight at a kill)")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_kills_lose_nothing_and_repeat_only_work_in_flight(
        server: ForkServer, calm: Callable[[str], tuple[Any, float, Counter[str]]], tally: dict[str, Tally],
        tmp_path: Path, kind: str, seed: int) -> None:
    check(server, calm, tally, kind, tmp_path, seed)


@pytest.mark.long
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", range(4, 34))
def test_many_seeds_of_random_kills(
        server: ForkServer, calm: Callable[[str], tuple[Any, float, Counter[str]]], tally: dict[str, Tally],
        tmp_path: Path, kind: str, seed: int) -> None:
    check(server, calm, tally, kind, tmp_path, seed)
