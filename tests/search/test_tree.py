"""The tree: JSON round trip, paths, best trajectory."""

import json

import pytest

from baobab.search import DeceptiveTree, Node, Tree, search


def test_json_round_trip_keeps_every_field() -> None:
    tree = search(DeceptiveTree(), "mcts", budget={"max_expansions": 20}).tree
    tree.nodes[3].reflection = "the trap pays 0.5 at best"
    again = Tree.from_json(tree.to_json())
    assert [n.to_dict() for n in again.nodes] == [n.to_dict() for n in tree.nodes]
    assert again.best_trajectory() == tree.best_trajectory() and not again.dirty
    assert json.loads(tree.to_json())["nodes"][0]["children"] == tree.root.children


def test_from_json_refuses_a_tree_with_holes() -> None:
    with pytest.raises(ValueError, match=r"numbered 0\.\.n-1"):
        Tree.from_nodes([Node(0, None, None, []), Node(2, 0, 1, [1])])


def test_path_returns_score_and_best_trajectory() -> None:
    tree = Tree([])
    a = tree.add(tree.root, action="a", state=["a"], reward=0.25)
    b = tree.add(a, action="b", state=["a", "b"], reward=0.5, done=True)
    c = tree.add(tree.root, action="c", state=["c"])
    tree.record(c, 0.9)  # a promising estimate, but nothing finished there
    assert tree.path(b) == [tree.root, a, b] and tree.returns(b) == 0.75
    assert tree.score(c) == 0.9 and tree.score(a) == 0.25  # unvisited: the rewards so far
    assert tree.best_trajectory() == [tree.root, a, b]  # a finished trajectory beats an estimate
    assert tree.ranked([a, c]) == [c, a] and tree.expansions == 0


def test_record_keeps_the_mean_of_returns() -> None:
    tree = Tree([])
    for value in (1.0, 0.0, 0.5):
        tree.record(tree.root, value)
    assert tree.root.visits == 3 and tree.root.value == pytest.approx(0.5)
