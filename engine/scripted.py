"""A deterministic model for tests: replies from a list or a function, through the same interface."""

import uuid
from collections.abc import Callable, Sequence

from baobab.engine.llm import LLM
from baobab.engine.types import Choice, Completion, Request, Usage

Reply = str | Choice | Callable[[Request], "str | Choice"]


class ScriptedLLM(LLM):
    """Answers each request with the next reply (a string, a Choice with tool calls, or a function of the request).

    >>> llm = ScriptedLLM(["first", "second"])
    >>> llm.complete_sync(prompt="x").text, llm.complete_sync(prompt="y").text
    ('first', 'second')
    """

    def __init__(self, replies: Sequence[Reply] | Callable[[Request], "str | Choice"], *, name: str = "scripted",
                 cycle: bool = False) -> None:
        self.replies = replies
        self.cycle = cycle
        self.name = name
        self.requests: list[Request] = []

    async def _complete(self, request: Request) -> Completion:
        self.requests.append(request)
        choices = [self._choice(request, i) for i in range(request.n)]
        words = sum(len(c.text.split()) for c in choices)
        prompt = request.prompt if request.prompt is not None else \
            " ".join(m.content or "" for m in request.messages or [])
        usage = Usage(prompt_tokens=len(prompt.split()), completion_tokens=words)
        return Completion(id=f"scripted-{uuid.uuid4().hex[:12]}", model=self.name, choices=choices, usage=usage)

    def _choice(self, request: Request, index: int) -> Choice:
        if callable(self.replies):
            reply: Reply = self.replies
        else:
            position = len(self.requests) - 1 + index
            if position >= len(self.replies) and not self.cycle:
                raise IndexError(f"scripted model {self.name!r} ran out of replies ({len(self.replies)} given)")
            reply = self.replies[position % len(self.replies)]
        if callable(reply):
            reply = reply(request)
        choice = reply if isinstance(reply, Choice) else Choice(text=reply)
        if choice.tool_calls and choice.finish_reason == "stop":
            choice = choice.model_copy(update={"finish_reason": "tool_calls"})
        return choice.model_copy(update={"index": index})
