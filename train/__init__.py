"""Learning from search: datasets from persisted search trees (this part), for any trainer that reads chat JSONL.

Successful paths become the proposer's own prompts and answers; failed branches spliced onto their corrected
siblings become recovery traces (Agent-R); siblings that won and lost become preference pairs; node statistics
become value targets. A held-out split can never enter a dataset.

>>> from baobab.train import PromptFormat, Split, build_dataset
>>> fmt = PromptFormat(describe, env=lambda numbers: Game24(" ".join(numbers)))  # doctest: +SKIP
>>> data = build_dataset(["g24-1"], store="sqlite:///runs.db", prompt=fmt,
...                      split=Split.of(heldout=["4 9 10 13"]))  # doctest: +SKIP
>>> data.write("data/g24")  # doctest: +SKIP
"""

from baobab.train.build import abuild_dataset, build_dataset
from baobab.train.dataset import KINDS, Dataset
from baobab.train.errors import DatasetError, HeldOutError
from baobab.train.jsonl import read_jsonl, write_jsonl
from baobab.train.outcomes import Outcomes
from baobab.train.prompts import PromptFormat
from baobab.train.sources import Source, load_sources
from baobab.train.split import Split, task_key

__all__ = [
    "KINDS", "Dataset", "DatasetError", "HeldOutError", "Outcomes", "PromptFormat", "Source", "Split",
    "abuild_dataset", "build_dataset", "load_sources", "read_jsonl", "task_key", "write_jsonl",
]
