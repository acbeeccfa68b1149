"""`build_dataset(runs, prompt=..., split=...)`: search trees in, training records out, held-out tasks never.

>>> from baobab.train import PromptFormat, Split, build_dataset
>>> split = Split.from_csv("24.csv", heldout=range(901, 1001), allowed=range(1, 901))  # doctest: +SKIP
>>> fmt = PromptFormat(describe, env=lambda numbers: Game24(" ".join(numbers)))  # doctest: +SKIP
>>> data = build_dataset(["g24-rank-1"], store="sqlite:///runs.db", prompt=fmt, split=split)  # doctest: +SKIP
>>> data.write("data/game24").parent  # doctest: +SKIP
"""

from collections.abc import Callable, Sequence
from typing import Any

from baobab.aio import run_sync
from baobab.store import Store
from baobab.train.dataset import KINDS, Dataset
from baobab.train.errors import DatasetError
from baobab.train.examples import recovery_traces, step_examples
from baobab.train.jsonl import dumps
from baobab.train.outcomes import Outcomes
from baobab.train.pairs import preference_pairs
from baobab.train.prompts import PromptFormat
from baobab.train.sources import RunRef, Source, load_sources
from baobab.train.split import Split, task_key
from baobab.train.values import value_targets

TaskOf = Callable[[Source], Any]
"""`task(source)`: the item a search worked on, as its split knows it (default: the tree's root state)."""


async def abuild_dataset(runs: Sequence[RunRef | Source] | None, *, prompt: PromptFormat, split: Split | None,
                         store: Store | str | None = None, kinds: Sequence[str] = KINDS, success: float = 1.0,
                         min_visits: int = 1, task: TaskOf | None = None, on_heldout: str = "raise") -> Dataset:
    """The records of `kinds` from the trees of `runs` (names or ids in `store`, trees in hand; None: every run).

    `split` says which tasks may never enter (None: state there are none): a run on a held-out task, or on one
    the split does not allow, raises HeldOutError before anything is built; with `on_heldout="skip"` it is left
    out and listed in the manifest instead. A graph run's root is a checkpoint: `task` must name its item.
    `success` is the total reward a path must reach; `min_visits` the visits a value target needs.
    Identical records (two runs of one task) are kept once, in order of the runs, then of node ids.

    >>> data = await abuild_dataset([tree], prompt=PromptFormat(describe), split=None)  # doctest: +SKIP
    """
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or on_heldout not in ("raise", "skip"):
        raise DatasetError(f"kinds {unknown} are not among {list(KINDS)}" if unknown else
                           f"on_heldout must be 'raise' or 'skip', not {on_heldout!r}")
    sources = load_sources(runs, store)
    data = Dataset(split=None if split is None else split.summary(),
                   options={"kinds": list(kinds), "success": success, "min_visits": min_visits,
                            "legal_actions": prompt.env is not None, "critique": prompt.critique})
    admitted: list[tuple[Source, str]] = []
    for source in sources:  # every run is checked before any record is made
        item = _task(source, task, split)
        key = (split.key if split is not None else task_key)(item)
        if split is not None and not split.admits(item):
            if on_heldout == "raise":
                split.check(item, source.where)
            data.skipped.append({"run": source.name, "id": source.run_id, "task": key})
            continue
        admitted.append((source, key))
    seen: dict[str, set[str]] = {kind: set() for kind in KINDS}
    for source, key in admitted:
        data.sources.append(source.summary(key))
        prompts, outcomes = prompt.for_tree(source.tree, source.checkpoints), Outcomes(source.tree, success)
        made: dict[str, list[dict[str, Any]]] = {
            "steps": [{"messages": m} for m in await step_examples(prompts, outcomes)] if "steps" in kinds else [],
            "recoveries": [{"messages": m} for m in await recovery_traces(prompts, outcomes)]
            if "recoveries" in kinds else [],
            "pairs": await preference_pairs(prompts, outcomes) if "pairs" in kinds else [],
            "values": value_targets(prompts, outcomes, min_visits) if "values" in kinds else [],
        }
        for kind, records in made.items():
            for record in records:
                line = dumps(record)
                if line not in seen[kind]:
                    seen[kind].add(line)
                    data.records[kind].append(record)
    return data


def build_dataset(runs: Sequence[RunRef | Source] | None, **options: Any) -> Dataset:
    """`abuild_dataset` from sync code.

    >>> build_dataset(["g24-1"], store=url, prompt=fmt, split=split)  # doctest: +SKIP
    """
    return run_sync(abuild_dataset(runs, **options))


def _task(source: Source, task: TaskOf | None, split: Split | None) -> Any:
    if task is not None:
        return task(source)
    if source.checkpoints and split is not None:
        raise DatasetError(f"{source.where} searched a graph run (its states are checkpoint ids): give "
                           "task=lambda source: ... naming the item it worked on, so the split can check it")
    return source.tree.root.state
