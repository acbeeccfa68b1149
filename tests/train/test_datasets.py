"""Datasets from search trees: a hand-built tree's steps, recovery traces, pairs and values; the proposer's exact
prompts from a persisted search; JSONL round trips."""

import itertools
import json
from pathlib import Path

import pytest

from baobab.engine import Request, ScriptedLLM
from baobab.search import DeceptiveTree, Node, Tree, legal_actions_proposer, search
from baobab.train import Dataset, DatasetError, Outcomes, PromptFormat, build_dataset, read_jsonl

ENV = DeceptiveTree(depth=3, branching=3)  # optimum [1, 0, 2]; the trap is 0


def describe(state: list[int], path: list[Node]) -> str:
    return f"actions so far: {state}; reach the best leaf"


FMT = PromptFormat(describe, env=ENV)


def hand_built() -> Tree:
    """root -> 0 -> [0,0] -> [0,0,0] (the trap, 0.5); root -> 1 -> 1 -> [1,1,0] (0.1, a note blaming step 2);
    root -> 1 -> 0 -> [1,0,2] (1.0); root -> 2, never explored."""
    tree = Tree([])
    trap, one, _ = (tree.add(tree.root, action=a, state=[a], prior=1 / 3) for a in (0, 1, 2))
    plateau = tree.add(trap, action=0, state=[0, 0])
    trap_end = tree.add(plateau, action=0, state=[0, 0, 0], reward=0.5, done=True,
                        feedback="the trap's plateau, not the best leaf")
    wrong, right = tree.add(one, action=1, state=[1, 1]), tree.add(one, action=0, state=[1, 0])
    lost = tree.add(wrong, action=0, state=[1, 1, 0], reward=0.1, done=True)
    won = tree.add(right, action=2, state=[1, 0, 2], reward=1.0, done=True)
    for node in (tree.root, trap, one, plateau, wrong, right):
        tree.mark_expanded(node)
    for end in (trap_end, lost, won):
        for node in tree.path(end):
            tree.record(node, end.reward)
    tree.annotate(lost, "taking 1 twice leaves the best leaf behind", failed_at=2)
    return tree


def prompt(tree: Tree, node: Node) -> list[dict[str, str]]:
    legal = ", ".join(str(a) for a in ENV.actions(node.state))
    return [{"role": "system", "content": "You choose the next action of a task. Answer in JSON with one of the "
                                          "legal actions."},
            {"role": "user", "content": f"{describe(node.state, tree.path(node))}\n\nLegal actions: {legal}"}]


def said(action: int, weight: int | None = None) -> dict[str, object]:
    return {"role": "assistant", "content": json.dumps({"action": str(action)})} | \
        ({} if weight is None else {"weight": weight})


def test_successful_paths_become_one_example_per_step_in_the_proposers_format() -> None:
    tree = hand_built()
    data = build_dataset([tree], prompt=FMT, split=None)
    root, one, right = tree.root, tree.nodes[2], tree.nodes[7]
    assert [r["messages"] for r in data.records["steps"]] == [
        [*prompt(tree, root), said(1)], [*prompt(tree, one), said(0)], [*prompt(tree, right), said(2)]]


def test_a_recovery_trace_is_spliced_at_the_first_failing_step() -> None:
    tree = hand_built()
    first = [n.state for n in Outcomes(tree).first_failures()]
    assert first == [[0], [1, 1]]  # not [0, 0], [0, 0, 0] or [1, 1, 0]: below a first failure everything fails
    traces = build_dataset([tree], prompt=FMT, split=None).records["recoveries"]
    trap_trace, wrong_trace = (r["messages"] for r in traces)
    root, trap, one, wrong, right = (tree.nodes[i] for i in (0, 1, 2, 6, 7))
    system, user = prompt(tree, root)
    # the failed prefix up to the step (1 then 1), the note blaming step 2, back to [1], then [1,0] -> [1,0,2]
    assert wrong_trace == [system, user, said(1, 0), prompt(tree, one)[1], said(1, 0), prompt(tree, wrong)[1],
                           {"role": "assistant", "content": "taking 1 twice leaves the best leaf behind", "weight": 1},
                           prompt(tree, one)[1], said(0, 1), prompt(tree, right)[1], said(2, 1)]
    # no stored note blames step 1: a template names the move and what the environment said below it
    assert trap_trace[:3] == [system, user, said(0, 0)] and trap_trace[3] == prompt(tree, trap)[1]
    assert trap_trace[4]["content"] == ("The move 0 was a mistake: no way to succeed was found after it (the trap's "
                                        "plateau, not the best leaf). I go back to the state before it and choose "
                                        "again.")
    assert trap_trace[5:] == [user, said(1, 1), prompt(tree, one)[1], said(0, 1), prompt(tree, right)[1], said(2, 1)]


def test_pairs_set_a_winning_move_against_each_sibling_seen_to_fail_and_values_come_from_node_statistics() -> None:
    tree = hand_built()
    data = build_dataset([tree], prompt=FMT, split=None)
    root, one = tree.nodes[0], tree.nodes[2]
    assert data.records["pairs"] == [  # [2] was never tried: no pair against it
        {"prompt": prompt(tree, root), "chosen": [said(1)], "rejected": [said(0)]},
        {"prompt": prompt(tree, one), "chosen": [said(0)], "rejected": [said(1)]}]
    values = {tuple(json.loads(r["prompt"][1]["content"].split(": ")[1].split(";")[0])): r
              for r in data.records["values"]}
    assert values[()]["prompt"][0]["content"].startswith("You judge how promising a state")
    stats = {state: (r["value"], r["success_rate"], r["visits"]) for state, r in values.items()}
    assert stats[()] == (pytest.approx(1.6 / 3), 1 / 3, 3) and stats[(1,)] == (pytest.approx(0.55), 0.5, 2)
    assert values[(1, 0, 2)] | {"prompt": None} == {"prompt": None, "value": 1.0, "success_rate": 1.0, "visits": 1,
                                                    "done": True}
    assert (2,) not in values  # never visited


def test_the_critique_a_proposer_did_not_see_stays_out_unless_asked() -> None:
    tree = hand_built()
    tree.root.critique = "promising"
    plain = build_dataset([tree], prompt=FMT, split=None, kinds=["steps"])
    judged = build_dataset([tree], prompt=PromptFormat(describe, env=ENV, critique=True), split=None, kinds=["steps"])
    assert plain.records["steps"][0]["messages"] == [*prompt(tree, tree.root), said(1)]
    assert judged.records["steps"][0]["messages"][0]["content"].endswith("\n\nAssessment of this state: promising")
    assert plain.counts() == {"steps": 3, "recoveries": 0, "pairs": 0, "values": 0}


def test_a_persisted_search_gives_the_prompts_its_proposer_sent(store_url: str) -> None:
    picks = itertools.cycle([1, 0, 2, 0])  # samples name the optimum's moves and the trap

    def answer(request: Request) -> str:
        return json.dumps({"action": str(next(picks))})

    llm = ScriptedLLM(answer)
    result = search(ENV, "mcts", proposer=legal_actions_proposer(llm, ENV, describe), store=store_url, run="toy-1",
                    budget={"max_model_calls": 30}, target=1.0)
    assert result.reward == 1.0
    sent = [[m.model_dump(include={"role", "content"}) for m in r.messages or []] for r in llm.requests]
    by_name = build_dataset(["toy-1"], store=store_url, prompt=PromptFormat(describe, env=ENV), split=None)
    by_id = build_dataset([1], store=store_url, prompt=PromptFormat(describe, env=ENV), split=None)
    steps = [r["messages"] for r in by_name.records["steps"]]
    assert len(steps) == 3 and all(step[:2] in sent for step in steps)  # byte for byte what the model was asked
    assert [json.loads(step[2]["content"])["action"] for step in steps] == ["1", "0", "2"]
    every = build_dataset(None, store=store_url, prompt=PromptFormat(describe, env=ENV), split=None)
    assert by_id.records == by_name.records == every.records and by_name.sources[0]["run"] == "toy-1"
    with pytest.raises(DatasetError, match=r"no search run 'toy-2' in .*runs: 'toy-1'\)"):
        build_dataset(["toy-2"], store=store_url, prompt=FMT, split=None)


def test_jsonl_round_trips_byte_for_byte_and_a_changed_file_is_caught(tmp_path: Path) -> None:
    tree = hand_built()
    data = build_dataset([tree, tree], prompt=FMT, split=None)  # the second copy adds nothing
    assert data.counts() == {"steps": 3, "recoveries": 2, "pairs": 2, "values": 9}
    first, second = data.write(tmp_path / "a"), data.write(tmp_path / "b")
    for name in ("manifest.json", "steps.jsonl", "recoveries.jsonl", "pairs.jsonl", "values.jsonl"):
        assert (first.parent / name).read_bytes() == (second.parent / name).read_bytes()
    back = Dataset.read(tmp_path / "a")
    assert back.records == data.records and back.sources == data.sources and back.counts() == data.counts()
    manifest = json.loads(first.read_text())
    assert manifest["counts"] == data.counts() and [s["run"] for s in manifest["sources"]] == ["tree-0", "tree-1"]
    assert read_jsonl(first.parent / "steps.jsonl") == data.records["steps"]
    (first.parent / "pairs.jsonl").write_text('{"prompt": []}\nnot json\n')
    with pytest.raises(DatasetError, match=r"pairs\.jsonl: its sha256 is not the one"):
        Dataset.read(tmp_path / "a")
    with pytest.raises(DatasetError, match=r"pairs\.jsonl:2: not JSON"):
        read_jsonl(first.parent / "pairs.jsonl")
