"""A model as proposer, judge and reflector (scripted models: replies are functions of the request)."""

import asyncio
import itertools
import json
from typing import Any

from baobab.aio import run_sync
from baobab.engine import Request, ScriptedLLM, load_llm
from baobab.engine.budget import Budget, Spend
from baobab.search import (
    DeceptiveTree,
    Judgement,
    Node,
    Transition,
    Tree,
    legal_actions_proposer,
    llm_judge,
    llm_proposer,
    llm_reflector,
    search,
)

ENV = DeceptiveTree(depth=3, branching=3)  # optimum [1, 0, 2]


def describe(state: list[int], path: list[Node]) -> str:
    return f"actions so far: {state}; choose 0, 1 or 2"


def parse(text: str, state: list[int]) -> int | None:
    return int(text) if text in ("0", "1", "2") else None


def system(request: Request) -> str:
    return (request.messages or [])[0].content or ""


def test_the_proposer_samples_n_in_one_request_and_keeps_valid_distinct_actions_by_frequency() -> None:
    samples = itertools.cycle(["2", "2", "go left", "0", " 2\n"])
    llm = ScriptedLLM(lambda request: next(samples))
    spend = Spend(Budget(max_model_calls=5))
    proposals = asyncio.run(llm_proposer(llm, describe, parse)([1], [], 5, spend))
    assert proposals == [(2, 0.75), (0, 0.25)]  # "go left" dropped; priors over the valid samples
    assert len(llm.requests) == 1 and llm.requests[0].n == 5 and spend.calls == 1
    assert llm.requests[0].messages[1].content == "actions so far: [1]; choose 0, 1 or 2"  # type: ignore[index]


def test_the_proposer_is_charged_to_the_search_budget() -> None:
    llm = ScriptedLLM(lambda request: "1")
    result = search(ENV, "mcts", proposer=llm_proposer(llm, describe, parse), budget={"max_model_calls": 3})
    assert result.stopped_by == "max_model_calls" and result.model_calls == len(llm.requests) == 3
    assert all(r.n == 4 and r.seed is not None for r in llm.requests)  # `samples` when k is not set


def test_the_legal_actions_proposer_asks_for_an_enum_and_yields_only_legal_moves() -> None:
    answers = itertools.cycle(['{"action": "1"}', '{"action": "7"}', '{"action": "1"}', "{", '{"action": "0"}'])
    llm = ScriptedLLM(lambda request: next(answers))  # a scripted model ignores the schema; a real one cannot
    propose = legal_actions_proposer(llm, ENV, describe)
    proposals = asyncio.run(propose([], [], 5, Spend()))
    assert proposals == [(1, 2 / 3), (0, 1 / 3)]  # the illegal 7 and the broken JSON are dropped
    schema = llm.requests[0].json_schema
    assert schema is not None and schema["properties"]["action"]["enum"] == ["0", "1", "2"]
    assert "Legal actions: 0, 1, 2" in (llm.requests[0].messages or [])[1].content  # type: ignore[operator]

    class OneWay(DeceptiveTree):
        def actions(self, state: list[int]) -> list[int]:
            return [2] if len(state) < self.depth else []

    assert asyncio.run(legal_actions_proposer(llm, OneWay(), describe)([], [], None, Spend())) == [(2, 1.0)]
    assert len(llm.requests) == 1  # a forced move costs no model call


def test_the_judge_scores_out_of_ten_and_the_tree_keeps_the_critique() -> None:
    def judge(request: Request) -> str:
        assert request.json_schema is not None and request.json_schema["required"] == ["critique", "score"]
        state = json.loads(request.messages[1].content.split(": ")[1].split(";")[0])  # type: ignore[index, union-attr]
        on_path = state == ENV.optimum[: len(state)]
        return json.dumps({"critique": f"{state} is {'on' if on_path else 'off'} the path",
                           "score": 9 if on_path else 2})

    llm = ScriptedLLM(judge)
    value = asyncio.run(llm_judge(llm, describe)([1], [], Spend()))
    assert isinstance(value, Judgement) and value == 0.9 and value.critique == "[1] is on the path"
    result = search(ENV, "greedy", evaluator=llm_judge(llm, describe))
    assert result.reward == 1.0 and result.best[1].critique == "[1] is on the path"
    assert all(n.critique for n in result.tree.nodes[1:] if n.visits and not n.done)
    assert Tree.from_json(result.tree.to_json()).nodes[1].critique == result.tree.nodes[1].critique
    broken = asyncio.run(llm_judge(ScriptedLLM(["{\"critique\": \"cut sh"]), describe)([1], [], Spend()))
    assert broken == 0.0 and broken.critique == "{\"critique\": \"cut sh"  # type: ignore[attr-defined]


def test_reflections_on_failed_leaves_condition_later_expansions(store_url: str) -> None:
    early = itertools.cycle(["0", "2"])

    def reply(request: Request) -> str:
        if "This attempt at a task failed" in system(request):
            return "lesson: that path paid too little"
        return next(early) if "Lessons" not in system(request) else "1"  # the lessons steer it elsewhere

    llm = ScriptedLLM(reply)
    options: dict[str, Any] = {"reflect": llm_reflector(llm, describe), "proposer": llm_proposer(llm, describe, parse),
                               "budget": {"max_model_calls": 12}, "store": store_url, "run": "lats"}
    result = search(ENV, "mcts", **options)
    failed = [n for n in result.tree.nodes if n.reflection]
    assert failed and all(n.done and n.reward < 1.0 for n in failed)  # written on failed terminal leaves only
    assert result.experiences == [n.reflection for n in failed]
    prompts = [system(r) for r in llm.requests if "This attempt" not in system(r)]
    assert "Lessons" not in prompts[0] and "Lessons from earlier attempts:\n- lesson" in prompts[-1]
    assert any(n.action == 1 for n in result.tree.nodes)  # a later expansion changed course
    assert result.model_calls == len(llm.requests) <= 12
    again = search(ENV, "mcts", **options)  # a hook option is stored by name: the finished run comes back
    assert again.tree.to_json() == result.tree.to_json() and again.experiences == result.experiences


class Reach:
    """Reach 6 from 1 with +1 and *2 in at most four moves (the legal actions are known)."""

    def reset(self) -> list[int]:
        return [1, 0]  # the number, the moves made

    def actions(self, state: list[int]) -> list[str]:
        return ["+1", "*2"]

    def step(self, state: list[int], action: str) -> Transition:
        number, moves = (state[0] + 1 if action == "+1" else state[0] * 2), state[1] + 1
        done = number >= 6 or moves == 4
        said = "reached 6" if number == 6 else f"overshot: {number}" if number > 6 else "out of moves" if done else ""
        return Transition([number, moves], f"now {number}", reward=float(number == 6), done=done, feedback=said)


def test_the_embedded_model_searches_with_legal_moves_and_a_judge_within_its_budget() -> None:
    env, llm = Reach(), load_llm("local:smollm2-135m", threads=2)

    def show(state: list[int], path: list[Node]) -> str:
        return f"Reach 6 from 1 using +1 and *2. The number is {state[0]} after {state[1]} of 4 moves."

    try:
        result = search(env, "mcts", budget={"max_model_calls": 10}, proposer=legal_actions_proposer(llm, env, show),
                        evaluator=llm_judge(llm, show, critique_chars=60),
                        reflect=llm_reflector(llm, show, max_tokens=32), k=2)
    finally:
        run_sync(llm.aclose())
    assert result.stopped_by in ("max_model_calls", "done") and result.model_calls <= 10
    assert len(result.tree.nodes) > 1 and all(n.action in ("+1", "*2") for n in result.tree.nodes[1:])
    judged = [n for n in result.tree.nodes[1:] if n.visits and not n.done]
    # every judgement followed the schema: a critique within its bound (a cut-off answer would keep its raw JSON)
    assert judged and all(0.0 <= n.value <= 1.0 and 0 < len(n.critique) <= 60 for n in judged)


def test_the_legal_actions_proposer_with_a_floor_keeps_every_legal_move_with_the_samples_sharpening_the_prior() -> None:
    answers = itertools.cycle(['{"action": "1"}', '{"action": "1"}', '{"action": "2"}', '{"action": "1"}'])
    llm = ScriptedLLM(lambda request: next(answers))
    proposals = asyncio.run(legal_actions_proposer(llm, ENV, describe, floor=0.2)([], [], 4, Spend()))
    assert proposals == [(1, 0.75 * 0.8), (2, 0.25 * 0.8), (0, 0.2)]  # the unsampled 0 keeps the floor
    broken = ScriptedLLM(lambda request: "{")
    assert asyncio.run(legal_actions_proposer(broken, ENV, describe, floor=0.2)([], [], 2, Spend())) == [
        (0, 1 / 3), (1, 1 / 3), (2, 1 / 3)]  # no valid sample: uniform over the legal moves
