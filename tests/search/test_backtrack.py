"""Backtracking (LEAFE): failures become experience notes, the search returns to an earlier decision and recovers."""

from typing import Any

from baobab.engine import Request, ScriptedLLM
from baobab.engine.budget import Spend
from baobab.search import (
    DeceptiveTree,
    Node,
    Transition,
    lessons,
    llm_chooser,
    llm_reflector,
    search,
    uniform_proposer,
)


class Told(DeceptiveTree):
    """A DeceptiveTree whose leaves say what they paid (the feedback an experience note is built from)."""

    def step(self, state: list[int], action: int) -> Transition:
        step = super().step(state, action)
        return Transition(step.state, step.observation, step.reward, step.done,
                          f"leaf pays {step.reward:g}" if step.done else "")


ENV = Told(depth=3, branching=2)  # optimum [1, 1, 1]; the trap is everything under 0 (0.5 a leaf)


def describe(state: list[int], path: list[Node]) -> str:
    return f"actions taken: {state}"



def test_backtracking_recovers_from_the_trap_with_notes_from_feedback() -> None:
    seen: list[list[str]] = []
    uniform = uniform_proposer(ENV)

    async def propose(state: list[int], path: list[Node], k: int | None, spend: Spend) -> list[tuple[Any, float]]:
        seen.append(lessons())  # what an LLM proposer would show the model
        return await uniform(state, path, k, spend)

    assert search(ENV, "greedy", evaluator=ENV.misleading_value).reward == 0.5
    result = search(ENV, "backtrack", evaluator=ENV.misleading_value, proposer=propose)
    assert result.reward == 1.0 and [n.action for n in result.best[1:]] == ENV.optimum
    assert result.stopped_by == "done"
    # two attempts fail in the trap (the best-valued alternative first: 0.5 at depth 2), then the optimum
    assert result.experiences == ["after [0, 0, 0] (total reward 0.5): leaf pays 0.5",
                                  "after [0, 1, 0] (total reward 0.5): leaf pays 0.5"]
    assert [n.action for n in result.tree.nodes if n.reflection] == [0, 0]
    assert seen[0] == [] and seen[-1] == result.experiences  # later expansions had the notes in context


def test_a_model_writes_the_note_and_chooses_where_to_return() -> None:
    def reply(request: Request) -> str:
        system = request.messages[0].content if request.messages else ""
        if system and "Choose the earlier state" in system:
            assert "0: " in (request.messages[1].content or "")  # the options are listed by number
            return '{"choice": 1}'  # not the best-valued option ([0, 1]) but the root's other action
        return "Everything under 0 pays 0.5: leave it."

    llm = ScriptedLLM(reply)
    result = search(ENV, "backtrack", evaluator=ENV.misleading_value, summarise=llm_reflector(llm, describe),
                    choose=llm_chooser(llm, describe))
    assert result.reward == 1.0 and result.experiences == ["Everything under 0 pays 0.5: leave it."]
    assert result.model_calls == 2 and len(llm.requests) == 2  # one note, one choice, both charged
    assert "leaf pays 0.5" in (llm.requests[0].messages or [])[1].content  # type: ignore[operator]
    assert "Lessons from earlier attempts:\n- Everything under 0" in (llm.requests[1].messages or [])[0].content  # type: ignore[operator]


def test_it_stops_when_no_alternative_is_left() -> None:
    result = search(ENV, "backtrack", evaluator=ENV.misleading_value, max_depth=2)  # no leaf is reachable
    # one attempt under each first action; a node at max_depth is no alternative (nothing more to learn there)
    assert result.stopped_by == "done" and result.experiences == ["after [0, 0] (total reward 0): took 0",
                                                                  "after [1, 1] (total reward 0): took 1"]


def test_a_model_call_limit_stops_it_cleanly() -> None:
    llm = ScriptedLLM(lambda request: "a lesson")
    result = search(ENV, "backtrack", evaluator=ENV.misleading_value, summarise=llm_reflector(llm, describe),
                    budget={"max_model_calls": 1}, choose=llm_chooser(llm, describe))
    assert result.stopped_by == "max_model_calls" and result.model_calls == len(llm.requests) == 1
    assert result.experiences == ["a lesson"] and result.reward == 0.5  # the best found so far
