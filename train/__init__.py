"""Learning from search: datasets from persisted search trees, and a trainer that makes a local model learn from them.

Successful paths become the proposer's own prompts and answers; failed branches spliced onto their corrected
siblings become recovery traces (Agent-R); siblings that won and lost become preference pairs; node statistics
become value targets. A held-out split can never enter a dataset. `train` fine-tunes a local model on the chat
records (LoRA or full, transformers and peft from the `train` extra) into a directory `local:DIR` loads.
Names load on first use, so the trainer runs where only torch, transformers and peft are installed.

>>> from baobab.train import PromptFormat, Split, build_dataset, train
>>> fmt = PromptFormat(describe, env=lambda numbers: Game24(" ".join(numbers)))  # doctest: +SKIP
>>> data = build_dataset(["g24-1"], store="sqlite:///runs.db", prompt=fmt,
...                      split=Split.of(heldout=["4 9 10 13"]))  # doctest: +SKIP
>>> data.write("data/g24")  # doctest: +SKIP
>>> train("local:smollm2-135m", "data/g24", "models/g24")  # doctest: +SKIP
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "abuild_dataset": "build", "build_dataset": "build", "KINDS": "dataset", "Dataset": "dataset",
    "DatasetError": "errors", "HeldOutError": "errors", "TrainError": "errors", "read_jsonl": "jsonl",
    "write_jsonl": "jsonl", "Outcomes": "outcomes", "PromptFormat": "prompts", "Source": "sources",
    "load_sources": "sources", "Split": "split", "task_key": "split", "TrainConfig": "trainer",
    "TrainResult": "trainer", "train": "trainer", "call_record": "agent_runs", "verified_records": "agent_runs",
}

if TYPE_CHECKING:
    from baobab.train.agent_runs import call_record, verified_records
    from baobab.train.build import abuild_dataset, build_dataset
    from baobab.train.dataset import KINDS, Dataset
    from baobab.train.errors import DatasetError, HeldOutError, TrainError
    from baobab.train.jsonl import read_jsonl, write_jsonl
    from baobab.train.outcomes import Outcomes
    from baobab.train.prompts import PromptFormat
    from baobab.train.sources import Source, load_sources
    from baobab.train.split import Split, task_key
    from baobab.train.trainer import TrainConfig, TrainResult, train

__all__ = [
    "KINDS", "Dataset", "DatasetError", "HeldOutError", "Outcomes", "PromptFormat", "Source", "Split", "TrainConfig",
    "TrainError", "TrainResult", "abuild_dataset", "build_dataset", "call_record", "load_sources", "read_jsonl",
    "task_key", "train", "verified_records", "write_jsonl",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'baobab.train' has no attribute {name!r}")
    return getattr(import_module(f"baobab.train.{module}"), name)
