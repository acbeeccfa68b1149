"""Chat records from verified agent runs: each model call of a run whose answer was checked right, with the prompt
the engine rendered for it and what the model wrote as the reply it learns.

A call is a request and the choice that came back; an agent reports both as `baobab.agents.ModelCalled`. The
reply is written the way the engine shows it to later calls (`baobab.engine.local.chat_messages`): a tool call
as its JSON, and an answer as {"content": ...} where tools were offered. Only the reply is learnt: the earlier
assistant turns of the prompt (worked examples, the run's earlier calls) get weight 0.

>>> calls = []
>>> def record(e): calls.append((e.request, e.choice)) if isinstance(e, ModelCalled) else None  # doctest: +SKIP
>>> with listen(record):  # doctest: +SKIP
...     result = agent.run("What is 31 * 47?")
>>> write_jsonl("runs.jsonl", verified_records([(calls, result.text == "1457")]))  # doctest: +SKIP
"""

from collections.abc import Iterable, Sequence
from typing import Any

from baobab.engine.local import chat_messages
from baobab.engine.types import Choice, Message, Request

Call = tuple[Request, Choice]
"""A model call: what was asked, and the choice the run went on with."""


def call_record(request: Request, choice: Choice) -> dict[str, Any]:
    """One call as a chat record {"messages": [...]}: the turns of its prompt, then its reply, learnt.

    >>> call_record(Request(messages=[{"role": "user", "content": "Hi"}]), Choice(text="Hello"))
    {'messages': [{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Hello'}]}
    """
    reply = Message(role="assistant", content=choice.text or None, tool_calls=choice.tool_calls)
    assert request.messages is not None, "a call of a prompt, not of messages, has no chat to record"
    turns = chat_messages(request.model_copy(update={"messages": [*request.messages, reply]}))
    shown = [{"role": t["role"], "content": t["content"]} | ({"weight": 0} if t["role"] == "assistant" else {})
             for t in turns[:-1]]
    return {"messages": [*shown, {"role": "assistant", "content": turns[-1]["content"]}]}


def verified_records(runs: Iterable[tuple[Sequence[Call], bool]]) -> list[dict[str, Any]]:
    """The records of every call of each run verified right (its flag); a run not verified gives none."""
    return [call_record(request, choice) for calls, right in runs if right for request, choice in calls]
