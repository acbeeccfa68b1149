"""A model as proposer, judge, reflector and chooser: every call is charged to the search's spend.

`describe(state, path)` turns a state into the text a model reads; the lessons written so far in the
search (`lessons()`: LATS reflections, LEAFE experience notes) are added to every proposer prompt.

>>> llm = load_llm("local:smollm2-135m")  # doctest: +SKIP
>>> search(env, "mcts", proposer=legal_actions_proposer(llm, env, describe), evaluator=llm_judge(llm, describe),
...        reflect=llm_reflector(llm, describe), budget={"max_model_calls": 50})  # doctest: +SKIP
"""

import json
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from baobab.engine import LLM, Message, Request
from baobab.engine.budget import BudgetedLLM, Spend
from baobab.search.context import lessons, lessons_section
from baobab.search.environment import Environment, resolve
from baobab.search.hooks import Chooser, Evaluator, Proposer, Reflector
from baobab.search.tree import Node

Describe = Callable[[Any, list[Node]], str]
"""`describe(state, path)`: the state (and how it was reached) as text for a prompt."""

Parse = Callable[[str, Any], Any]
"""`parse(text, state)`: the action a model's text names in `state`, or None if it names no valid one."""

PROPOSE = "You choose the next action of a task. Answer with the action only."
CHOOSE = "You choose the next action of a task. Answer in JSON with one of the legal actions."
JUDGE = ("You judge how promising a state of a task is. Write a short critique, then a score from 0 (hopeless) "
         "to {scale:g} (solved or sure to be solved). Answer in JSON.")
REFLECT = "This attempt at a task failed. In one or two sentences, state a lesson that would avoid the failure."
LOCATE = " Also name the step where the failure began: its number in the list of steps. Answer in JSON."
RETURN_TO = "This attempt at a task failed. Choose the earlier state to go back to and try again from. Answer in JSON."


class Judgement(float):
    """A value with the written critique behind it; the search stores the critique on the node.

    >>> j = Judgement(0.7, "close, one step left"); (j + 0, j.critique)
    (0.7, 'close, one step left')
    """

    critique: str

    def __new__(cls, value: float, critique: str = "") -> "Judgement":
        judgement = super().__new__(cls, value)
        judgement.critique = critique
        return judgement


class Lesson(str):
    """A reflector's lesson with the step where the failure began (1: the path's first action), if it knows.

    `backtrack` returns to an alternative to that step; agents after it see the lesson (`lessons_in_scope`).

    >>> note = Lesson("the first dial was wrong", step=1); (note + "!", note.step)
    ('the first dial was wrong!', 1)
    """

    step: int | None

    def __new__(cls, text: str, step: int | None = None) -> "Lesson":
        lesson = super().__new__(cls, text)
        lesson.step = step
        return lesson


def llm_proposer(llm: LLM, describe: Describe, parse: Parse, *, samples: int = 4, temperature: float = 0.8,
                 max_tokens: int = 64, instructions: str = PROPOSE, seed: int | None = 0) -> Proposer:
    """Sample `k` (else `samples`) actions in one request with n=k; keep the valid ones, priors by frequency.

    One request lets the engine batch the samples and draft each from its siblings. Texts `parse` rejects
    are dropped; a state where every sample is invalid becomes a dead end. `seed` (with the state) seeds
    the request, so a state gets the same samples again (a resumed search repeats itself).
    Expansion by sampling n actions: LATS (Zhou et al. 2024).

    >>> propose = llm_proposer(llm, lambda s, p: f"at {s}, reach 10", lambda text, s: int(text))  # doctest: +SKIP
    """

    async def propose(state: Any, path: list[Node], k: int | None, spend: Spend) -> list[tuple[Any, float]]:
        request = Request(messages=proposal_messages(describe, state, path, instructions=instructions), n=k or samples,
                          temperature=temperature, max_tokens=max_tokens, seed=_seed(seed, state))
        completion = await BudgetedLLM(llm, spend).complete(request)
        return _by_frequency([parse(choice.text.strip(), state) for choice in completion.choices])

    return propose


def legal_actions_proposer(llm: LLM, env: Environment, describe: Describe, *, samples: int = 4,
                           temperature: float = 0.8, max_tokens: int | None = None, seed: int | None = 0,
                           floor: float = 0.0) -> Proposer:
    """Like `llm_proposer`, but the model picks from the environment's legal actions (a JSON enum it must follow).

    Constrained decoding makes even a 135M model propose only legal moves. A state with one legal
    action costs no model call; with none, it is a dead end. `max_tokens` defaults to room for the
    longest action (a character can be a token). With `floor` > 0 every legal action is proposed: those
    no sample named share `floor` of the prior, so PUCT can still reach a move a few samples missed
    (the samples sharpen the prior instead of pruning; for strategies that value every child, keep 0).

    >>> propose = legal_actions_proposer(load_llm(), env, describe)  # doctest: +SKIP
    """

    async def propose(state: Any, path: list[Node], k: int | None, spend: Spend) -> list[tuple[Any, float]]:
        legal = {action_label(a): a for a in await resolve(env.actions(state))}
        if len(legal) <= 1:
            return [(a, 1.0) for a in legal.values()]
        schema = {"type": "object", "properties": {"action": {"type": "string", "enum": list(legal)}},
                  "required": ["action"]}
        request = Request(messages=proposal_messages(describe, state, path, legal=list(legal)), n=k or samples,
                          temperature=temperature, max_tokens=max_tokens or max(map(len, legal)) + 16,
                          seed=_seed(seed, state), response_format=_schema("action", schema))
        completion = await BudgetedLLM(llm, spend).complete(request)
        sampled = _by_frequency([legal.get(str(_field(c.text, "action"))) for c in completion.choices])
        return _with_floor(sampled, list(legal.values()), floor) if floor > 0 else sampled

    return propose


def llm_judge(llm: LLM, describe: Describe, *, scale: float = 10.0, critique_chars: int = 240,
              max_tokens: int | None = None, instructions: str = JUDGE) -> Evaluator:
    """A value from a written critique and a score in [0, `scale`] (JSON the model must follow), as score/scale.

    The hybrid value of SWE-Search (Antoniades et al. 2024): the number steers the search, the critique
    is kept on the node. The grammar bounds the critique to `critique_chars`; `max_tokens` defaults to
    room for that (a character can be a token) and the score. An answer cut short scores 0, its raw
    text as the critique.

    >>> evaluate = llm_judge(load_llm(), describe)  # doctest: +SKIP
    """
    schema = {"type": "object", "required": ["critique", "score"],
              "properties": {"critique": {"type": "string", "maxLength": critique_chars},
                             "score": {"type": "number", "minimum": 0, "maximum": scale}}}

    async def evaluate(state: Any, path: list[Node], spend: Spend) -> float:
        request = Request(messages=judge_messages(describe, state, path, scale=scale, instructions=instructions),
                          temperature=0.0, max_tokens=max_tokens or critique_chars + 40,
                          response_format=_schema("judgement", schema))
        text = (await BudgetedLLM(llm, spend).complete(request)).text
        score, critique = _field(text, "score"), _field(text, "critique")
        if not isinstance(score, int | float) or not isinstance(critique, str):
            return Judgement(0.0, text)
        return Judgement(min(max(score / scale, 0.0), 1.0), critique)

    return evaluate


def llm_reflector(llm: LLM, describe: Describe, *, max_tokens: int | None = None, instructions: str = REFLECT,
                  locate: bool = False, lesson_chars: int = 240) -> Reflector:
    """A lesson from a failed trajectory: the model reads its last state and the environment's feedback.

    The reflections of LATS (Zhou et al. 2024); as `backtrack`'s `summarise`, LEAFE's experience notes.
    With `locate`, the model also names the step where the failure began among the path's numbered steps
    (LEAFE's rollback point; JSON it must follow, the lesson at most `lesson_chars` long) and the result is a
    `Lesson` with that `step`: `backtrack` returns to an alternative to it, and the lesson reaches the
    samples of its siblings. An answer that is no such JSON is the lesson as written, naming no step.
    `max_tokens` defaults to 96, or with `locate` to room for the lesson and the step.

    >>> await search(env, "mcts", reflect=llm_reflector(llm, describe))  # doctest: +SKIP
    >>> await search(env, "backtrack", summarise=llm_reflector(llm, describe, locate=True))  # doctest: +SKIP
    """

    async def reflect(path: list[Node], spend: Spend) -> str:
        said = "\n".join(f"- {n.feedback}" for n in path if n.feedback) or "- (none)"
        text = f"{describe(path[-1].state, path)}\n\nTotal reward: {sum(n.reward for n in path):g}\nFeedback:\n{said}"
        if not locate or len(path) < 2:  # no step to name: the root failed
            request = Request(messages=[Message(role="system", content=instructions),
                                        Message(role="user", content=text)],
                              temperature=0.0, max_tokens=max_tokens or 96)
            return (await BudgetedLLM(llm, spend).complete(request)).text.strip()
        steps = "\n".join(f"{i}. {action_label(n.action)}" + (f": {n.observation}" if n.observation else "")
                          for i, n in enumerate(path[1:], start=1))
        schema = {"type": "object", "required": ["step", "lesson"],
                  "properties": {"step": {"type": "integer", "enum": list(range(1, len(path)))},
                                 "lesson": {"type": "string", "maxLength": lesson_chars}}}
        request = Request(messages=[Message(role="system", content=instructions + LOCATE),
                                    Message(role="user", content=f"{text}\n\nSteps:\n{steps}")],
                          temperature=0.0, max_tokens=max_tokens or lesson_chars + 32,
                          response_format=_schema("lesson", schema))
        answer = (await BudgetedLLM(llm, spend).complete(request)).text.strip()
        step, lesson = _field(answer, "step"), _field(answer, "lesson")
        if not isinstance(lesson, str) or not lesson.strip():
            return Lesson(answer)
        return Lesson(lesson.strip(), step if isinstance(step, int) and 1 <= step < len(path) else None)

    return reflect


def llm_chooser(llm: LLM, describe: Describe, *, max_tokens: int = 24) -> Chooser:
    """`backtrack`'s `choose` hook: the model picks the state to return to (a JSON enum of their numbers).

    >>> search(env, "backtrack", choose=llm_chooser(llm, describe))  # doctest: +SKIP
    """

    async def choose(failed: list[Node], options: list[list[Node]], spend: Spend) -> int:
        listed = "\n".join(f"{i}: {describe(p[-1].state, p)}" for i, p in enumerate(options))
        text = f"Failed at: {describe(failed[-1].state, failed)}\n\nStates to return to:\n{listed}"
        schema = {"type": "object", "properties": {"choice": {"type": "integer", "enum": list(range(len(options)))}},
                  "required": ["choice"]}
        request = Request(messages=_messages(RETURN_TO, text, failed), temperature=0.0, max_tokens=max_tokens,
                          response_format=_schema("choice", schema))
        choice = _field((await BudgetedLLM(llm, spend).complete(request)).text, "choice")
        return choice if isinstance(choice, int) and 0 <= choice < len(options) else 0

    return choose


def proposal_messages(describe: Describe, state: Any, path: list[Node], *, legal: Sequence[str] | None = None,
                      instructions: str = PROPOSE, notes: Sequence[str] | None = None) -> list[Message]:
    """The messages a proposer sends at `state`: `llm_proposer`'s, or with `legal` (the legal actions' labels, see
    `action_label`) `legal_actions_proposer`'s; `notes` are the lessons shown (default: `lessons()`, the search's).

    What a dataset of the proposer's choices is written in (`baobab.train`), so it is built here, once.

    >>> proposal_messages(lambda s, p: f"at {s}", 3, [], legal=["1", "2"], notes=[])[1].content
    'at 3\\n\\nLegal actions: 1, 2'
    """
    if legal is None:
        return _messages(instructions, describe(state, path), path, notes)
    return _messages(CHOOSE, f"{describe(state, path)}\n\nLegal actions: {', '.join(legal)}", path, notes)


def proposal_answer(action: Any, *, legal: bool) -> str:
    """The answer that names `action`: its label, or for `legal_actions_proposer` the JSON its grammar makes.

    >>> proposal_answer("4 * 6 = 24", legal=True)
    '{"action": "4 * 6 = 24"}'
    """
    label = action_label(action)
    return json.dumps({"action": label}, ensure_ascii=False) if legal else label


def judge_messages(describe: Describe, state: Any, path: list[Node], *, scale: float = 10.0,
                   instructions: str = JUDGE) -> list[Message]:
    """The messages `llm_judge` sends to value `state`.

    >>> judge_messages(lambda s, p: f"at {s}", 3, [])[1].content
    'at 3'
    """
    return [Message(role="system", content=instructions.format(scale=scale)),
            Message(role="user", content=describe(state, path))]


def _messages(instructions: str, text: str, path: list[Node], notes: Sequence[str] | None = None) -> list[Message]:
    """The system instructions, the lessons learnt so far in this search, the judge's critique of this state."""
    critique = path[-1].critique if path else ""
    shown = lessons() if notes is None else notes
    context = lessons_section(shown) + (f"\n\nAssessment of this state: {critique}" if critique else "")
    return [Message(role="system", content=instructions + context), Message(role="user", content=text)]


def _by_frequency(actions: list[Any]) -> list[tuple[Any, float]]:
    """The distinct valid actions (None is invalid), in order of first appearance, with their sample frequencies."""
    counts: dict[str, tuple[Any, int]] = {}
    for action in actions:
        if action is not None:
            key = json.dumps(action, sort_keys=True)
            counts[key] = (action, counts.get(key, (action, 0))[1] + 1)
    total = sum(n for _, n in counts.values())
    return [(action, n / total) for action, n in counts.values()]


def _with_floor(sampled: list[tuple[Any, float]], legal: list[Any], floor: float) -> list[tuple[Any, float]]:
    """Every legal action: the sampled ones with 1 - `floor` of the prior by frequency, the rest sharing `floor`."""
    named = {json.dumps(a, sort_keys=True) for a, _ in sampled}
    rest = [a for a in legal if json.dumps(a, sort_keys=True) not in named]
    if not sampled:  # no valid sample: the floor is all there is
        return [(a, 1 / len(rest)) for a in rest]
    if not rest:
        return sampled
    return [(a, p * (1 - floor)) for a, p in sampled] + [(a, floor / len(rest)) for a in rest]


def action_label(action: Any) -> str:
    """How a prompt names `action`: a string as it is, anything else as canonical JSON.

    >>> action_label([1, 2]), action_label("up")
    ('[1, 2]', 'up')
    """
    return action if isinstance(action, str) else json.dumps(action, sort_keys=True)


def _field(text: str, name: str) -> Any:
    """`name` from a JSON object answer; None if the answer is not one (cut short, say)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    return data.get(name) if isinstance(data, dict) else None


def _schema(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}


def _seed(seed: int | None, state: Any) -> int | None:
    # by the state, not by call order: concurrent and resumed searches ask the same question the same way
    return None if seed is None else zlib.crc32(f"{seed}:{json.dumps(state, sort_keys=True)}".encode())
