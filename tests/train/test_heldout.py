"""Held-out protection: a run on a held-out task never enters a dataset (raised by default, skipped when asked)."""

from pathlib import Path

import pytest

from baobab.search import Tree
from baobab.train import DatasetError, HeldOutError, PromptFormat, Split, build_dataset, task_key

GAME24 = Path(__file__).resolve().parents[3] / "shared" / "data" / "game24" / "24.csv"
FMT = PromptFormat(lambda state, path: f"numbers left: {' '.join(state)}")


def solved(numbers: list[str]) -> Tree:
    """A one-step 'solution' from `numbers`: enough to make examples."""
    tree = Tree(numbers)
    tree.add(tree.root, action="done", state=["24"], reward=1.0, done=True)
    return tree


@pytest.fixture
def split(tmp_path: Path) -> Split:
    csv = tmp_path / "24.csv"
    csv.write_text("Rank,Puzzles,AMT (s)\n1,1 1 4 6,4.4\n2,1 1 11 11,4.4\n901,1 2 3 4,5.0\n902,2 2 6 6,5.1\n")
    return Split.from_csv(csv, heldout=range(901, 1001), allowed=range(1, 901), name="game24 901-1000")


def test_a_held_out_puzzle_in_any_order_raises_naming_the_run_and_the_item(split: Split) -> None:
    assert split.heldout == {"1 2 3 4", "2 2 6 6"} and split.allowed == {"1 1 4 6", "1 1 11 11"}
    runs = [solved(["1", "1", "4", "6"]), solved(["4", "2", "3", "1"])]
    with pytest.raises(HeldOutError, match=r"search run 'tree-1': task \['4', '2', '3', '1'\] \(key '1 2 3 4'\) "
                                           r"is held out by split 'game24 901-1000'"):
        build_dataset(runs, prompt=FMT, split=split)
    with pytest.raises(HeldOutError, match=r"task \['1', '2', '3', '5'\] .* is not among the 2 tasks"):
        build_dataset([solved(["1", "2", "3", "5"])], prompt=FMT, split=split)  # allowed= lists the usable ones


def test_skipping_drops_the_held_out_run_and_reports_it(split: Split, tmp_path: Path) -> None:
    runs = [solved(["1", "1", "4", "6"]), solved(["6", "2", "6", "2"])]
    data = build_dataset(runs, prompt=FMT, split=split, on_heldout="skip")
    assert data.counts()["steps"] == 1 and [s["task"] for s in data.sources] == ["1 1 4 6"]
    assert data.skipped == [{"run": "tree-1", "id": None, "task": "2 2 6 6"}]
    assert "2 2 6 6" not in data.write(tmp_path / "out").parent.joinpath("steps.jsonl").read_text()
    assert data.manifest()["split"] == {"name": "game24 901-1000", "heldout": 2, "allowed": 2}


def test_a_graph_runs_tree_needs_its_task_named_before_a_split_can_check_it(split: Split) -> None:
    from baobab.train.sources import Source

    graph_tree = Source("essay", solved(["7"]), 1, "mcts", checkpoints=True)  # the root state is a checkpoint id
    with pytest.raises(DatasetError, match="search run 'essay' \\(id 1\\) searched a graph run"):
        build_dataset([graph_tree], prompt=FMT, split=split)
    with pytest.raises(HeldOutError, match="is held out"):
        build_dataset([graph_tree], prompt=FMT, split=split, task=lambda source: "4 3 2 1")


@pytest.mark.skipif(not GAME24.exists(), reason="the Game of 24 set is not in ../shared/data")
def test_the_game24_benchmark_split_holds_out_ranks_901_to_1000() -> None:
    split = Split.from_csv(GAME24, heldout=range(901, 1001), allowed=range(1, 901))
    rows = [line.split(",")[:2] for line in GAME24.read_text().splitlines()[1:]]
    held = {task_key(p) for r, p in rows if 901 <= int(r) <= 1000}
    assert split.heldout == held and len(held) == 100 and len(split.allowed or ()) == 900
    rank_901 = next(p for r, p in rows if r == "901").split()
    assert not split.admits(list(reversed(rank_901))) and split.admits(next(p for r, p in rows if r == "1"))
