"""Baobab against LangGraph on random graphs: edges, joins, routers reading the state, Send fan-out, loops.

LangGraph's outcomes are recorded in data/langgraph_random.json (`python tests/graphs/langgraph_parity.py
--record`, with the bench extra), so this runs without LangGraph. Each graph must give LangGraph's tasks in
every super-step, its final counter and `last`, its log in step order, or its error.
`python tests/graphs/langgraph_parity.py --compare` groups the graphs that differ by the rule that explains them
and prints a `-k` expression that runs just those (or `pytest --lf` after a run).
"""

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # langgraph_parity.py, beside this file
from langgraph_parity import COUNT, LANGGRAPH, Spec, examples, generate, load, run_baobab, simulate

CASES = load()


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_baobab_runs_each_graph_as_langgraph_did(case: dict[str, Any]) -> None:
    spec = Spec.from_json(case["spec"])
    assert run_baobab(spec) == case["expect"], f"graph {spec.id}: {spec}"


def test_the_recording_is_of_the_generator_and_examples_of_today() -> None:
    """Specs changed in the code and not recorded again would test nothing LangGraph did."""
    recorded = {c["id"]: Spec.from_json(c["spec"]) for c in CASES}
    made = [*examples(), *(generate(c["seed"]) for c in CASES if c["seed"] is not None)]
    assert recorded == {s.id: s for s in made}
    assert len(made) == COUNT + len(examples())


def test_the_rules_written_in_the_model_are_langgraphs() -> None:
    """`simulate` under LangGraph's rules (langgraph_parity.Rules) gives every recorded outcome: the rules
    --compare names when it explains a difference are the ones LangGraph follows."""
    assert [c["id"] for c in CASES if simulate(Spec.from_json(c["spec"]), LANGGRAPH) != c["expect"]] == []


def test_map_map_refines_each_item_once_in_langgraph() -> None:
    expect = next(c["expect"] for c in CASES if c["id"] == "map-map")
    assert expect["steps"] == [["process:2", "process:3", "process:4"], ["refine:2", "refine:3", "refine:4"]]


def test_the_graphs_cover_what_they_are_for() -> None:
    """Several tasks of a node in one step, a Send beside a plain trigger, loops, joins, and both errors."""
    ran = [c for c in CASES if c["expect"]["error"] is None]

    def nodes(step: list[str]) -> Counter[str]:
        return Counter(entry.partition(":")[0] for entry in step)

    several = [c for c in ran if any(max(nodes(s).values()) > 1 for s in c["expect"]["steps"])]
    send_and_plain = [c for c in ran if any(f"{n}:-" in s and nodes(s)[n] > 1 for s in c["expect"]["steps"]
                                             for n in nodes(s))]
    loops = [c for c in ran if max(Counter(n for s in c["expect"]["steps"] for n in nodes(s)).values(), default=0) > 1]
    joins = [c for c in ran if any(len(sources) > 1 for sources, _ in c["spec"]["edges"])]
    errors = Counter(c["expect"]["error"] for c in CASES)
    assert min(len(several), len(send_and_plain), len(loops), len(joins)) >= 50
    assert errors["GraphRecursionError"] >= 10 and errors["InvalidUpdateError"] >= 10
