"""An agent: a model, instructions and tools in a loop that ends with an answer.

Each step asks the model; tool calls run (concurrently when the model asks for several) and their
observations go back to it; a failing tool is an observation too. With `output` (a pydantic model) the
answer is validated JSON, repaired a bounded number of times. The local engine constrains tool calls and
JSON to their schemas while decoding; remote models use their native tool calling.
"""

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from baobab.agents.events import AgentFinished, ModelCalled, ToolCalled, emit
from baobab.agents.state import Said
from baobab.aio import run_sync
from baobab.engine import DEFAULT_MODEL, LLM, Completion, Message, Request, ToolCall, ToolSpec, Usage, load_llm
from baobab.engine.budget import Budget, BudgetedLLM, Spend, current_spend
from baobab.engine.llm import completion_of
from baobab.errors import BaobabError
from baobab.graphs.tokens import Sink, token_sink
from baobab.search.context import lessons_in_scope, lessons_section
from baobab.store.trace import excerpt, span
from baobab.tools import Observation, Tool

if TYPE_CHECKING:  # numpy and an embedder load only when a memory is used
    from baobab.memory import Memory

FINAL_ANSWER = "final_answer"
HANDOFF_PREFIX = "transfer_to_"

_shared_models: dict[str, LLM] = {}


def shared_model(model: str | LLM, **options: Any) -> LLM:
    """The LLM named by `model` (and `options`), loaded once per process: agents naming one local model
    share its engine, and so its batching, prefix cache and drafters."""
    if isinstance(model, LLM):
        return model
    key = json.dumps([model, options], sort_keys=True, default=str)
    if key not in _shared_models:
        _shared_models[key] = load_llm(model, **options)
    return _shared_models[key]


async def close_shared_models() -> None:
    """Close the models agents loaded (a local engine's thread must stop before the interpreter does)."""
    models = list(_shared_models.values())
    _shared_models.clear()
    for llm in models:
        await llm.aclose()


class AgentError(BaobabError, RuntimeError):
    """An agent could not produce a valid answer (the message says why and after how many tries)."""


@dataclass
class AgentResult:
    """What a run produced: `output` (text, or an instance of the agent's output model) and how."""

    agent: str
    output: Any
    messages: list[Message]
    steps: int
    usage: Usage = field(default_factory=Usage)
    handoff: str | None = None  # the agent passed control to this agent

    @property
    def text(self) -> str:
        """The output as text (JSON for structured output)."""
        if isinstance(self.output, BaseModel):
            return self.output.model_dump_json()
        return self.output if isinstance(self.output, str) else json.dumps(to_jsonable_python(self.output))


class ExampleCall(BaseModel):
    """A tool call in a worked example, with what the tool returned."""

    tool: str  # the tool's name
    arguments: dict[str, Any] = {}  # its arguments
    result: str  # what it returned, as text


class Example(BaseModel):
    """A worked example shown to the model before its task: small models follow demonstrations far better
    than instructions."""

    task: str  # what the user asked
    calls: list[ExampleCall] = []  # the tool calls made, in order
    answer: str  # the final answer

    def messages(self, index: int) -> list[Message]:
        """The example as the conversation it stands for."""
        out = [Message(role="user", content=self.task)]
        for i, call in enumerate(self.calls):
            tool_call = ToolCall(id=f"example{index}_{i}", name=call.tool, arguments=json.dumps(call.arguments))
            out += [Message(role="assistant", tool_calls=[tool_call]),
                    Message(role="tool", tool_call_id=tool_call.id, name=call.tool, content=call.result)]
        return [*out, Message(role="assistant", content=self.answer)]


class Agent:
    """A named worker: a model, a role, instructions, tools, and limits.

    >>> from baobab.tools import builtin_tools
    >>> agent = Agent("analyst", role="data analyst", tools=builtin_tools("python"))  # doctest: +SKIP
    >>> agent.run("What is the mean of 3, 5 and 10? Use python.").output  # doctest: +SKIP
    '6'

    `model` is a model string (`local:smollm2-135m`, `openai/gpt-4o-mini`, ...) or an LLM;
    `output` a pydantic model the answer must validate against; `examples` are worked examples shown
    before the task; `max_steps` bounds model calls that may call tools (a call repeating an earlier one
    ends the tool use: the model answers from what it has); `repairs` bounds retries after an answer that
    does not validate; `handoffs` names agents this one may pass control to in a team; `budget` caps what
    one run of the agent spends; with a `memory`, the `recall` notes nearest the task are shown before it
    starts, and what it answered is stored as a note tagged with its name. Run as a sample of a search (a
    choice point of a `GraphEnvironment`), it is shown the lessons of the failed branches in scope
    (`baobab.search.context.lessons_in_scope`).
    An agent is also a graph node over a `TeamState` (see `baobab.agents.team`).
    """

    def __init__(self, name: str, *, role: str = "", instructions: str = "", model: str | LLM = DEFAULT_MODEL,
                 tools: Sequence[Tool] = (), output: type[BaseModel] | None = None,
                 examples: Sequence[Example] = (), max_steps: int = 8,
                 max_tokens: int = 512, temperature: float = 0.0, repairs: int = 2,
                 handoffs: Sequence[str] = (), budget: Budget | None = None, memory: "Memory | None" = None,
                 recall: int = 3) -> None:
        if not name.isidentifier():
            raise ValueError(f"agent name {name!r} must be an identifier (letters, digits, _), it names tools")
        if max_steps < 1:
            raise ValueError(f"agent {name!r}: max_steps must be at least 1, got {max_steps}")
        names = [t.name for t in tools]
        clashes = sorted({n for n in names if names.count(n) > 1 or n == FINAL_ANSWER or n.startswith(HANDOFF_PREFIX)})
        if clashes:
            raise ValueError(f"agent {name!r}: tool names {clashes} are repeated or reserved")
        self.name, self.role, self.instructions, self.model = name, role, instructions, model
        self.tools = {t.name: t for t in tools}
        self.output, self.max_steps, self.max_tokens, self.temperature = output, max_steps, max_tokens, temperature
        self.repairs, self.handoffs, self.budget = repairs, tuple(handoffs), budget
        self.examples = list(examples)
        self.memory, self.recall = memory, recall
        for example in self.examples:
            unknown = sorted({c.tool for c in example.calls} - set(self.tools))
            if unknown:
                raise ValueError(f"agent {name!r}: an example calls {unknown}, which are not among its tools")

    @property
    def description(self) -> str:
        """One line saying what the agent does (a supervisor picks agents by it)."""
        return self.role or self.instructions.split("\n", 1)[0] or self.name

    def run(self, task: str, *, context: Sequence[Said] = ()) -> AgentResult:
        """Do `task` and return the answer (sync form of `arun`)."""
        return run_sync(self.arun(task, context=context))

    async def arun(self, task: str, *, context: Sequence[Said] = ()) -> AgentResult:
        """Do `task`, seeing what teammates said before (`context`), and return the answer."""
        parent = current_spend.get()
        spend = parent.child(self.budget, self.name) if parent is not None else Spend(self.budget, self.name)
        llm = BudgetedLLM(shared_model(self.model), spend)
        shown = [m for i, example in enumerate(self.examples) for m in example.messages(i)]
        system = self._system() + lessons_section(lessons_in_scope())  # in a search: its failed branches nearby
        if self.memory is not None and self.recall:
            hits = await self.memory.asearch(task, self.recall)
            if hits:
                system += "\nNotes from earlier work:\n" + "\n".join(f"- {h.note.content}" for h in hits)
        messages = [Message(role="system", content=system), *shown, Message(role="user", content=_task(task, context))]
        model = self.model if isinstance(self.model, str) else type(self.model).__name__
        with span("agent", self.name, {"model": model, "task": excerpt(task)}) as recorded:
            result = await _Loop(self, llm, messages).run()
            if recorded is not None:
                recorded.attrs.update(output=excerpt(result.text), steps=result.steps, handoff=result.handoff,
                                      usage=spend.usage.model_dump())
        result.usage = spend.usage
        if self.memory is not None:
            await self.memory.aadd(f"Task: {task}\nAnswer: {result.text}", tags=[self.name],
                                   metadata={"agent": self.name})
        emit(AgentFinished(self.name, result.output, result.steps, result.usage, result.handoff))
        return result

    async def __call__(self, state: BaseModel) -> dict[str, Any]:
        """As a graph node over a TeamState: do its task, add what it said, name who goes next."""
        if not hasattr(state, "task") or not hasattr(state, "messages"):
            raise TypeError(f"agent {self.name!r} as a node needs a state with task and messages fields "
                            f"(baobab.agents.TeamState), got {type(state).__name__}")
        result = await self.arun(state.task, context=state.messages)
        return {"messages": [Said(agent=self.name, content=result.text)], "output": to_jsonable_python(result.output),
                "next": result.handoff or ""}

    def _system(self) -> str:
        lines = [f"You are {self.name}" + (f", {self.role}." if self.role else ".")]
        if self.instructions:
            lines.append(self.instructions)
        return "\n".join(lines)

    def tool_specs(self) -> list[ToolSpec]:
        """The tools the model is offered: the agent's, handoffs, and final_answer for structured output."""
        specs = [ToolSpec.model_validate(t.spec()) for t in self.tools.values()]
        specs += [ToolSpec(name=f"{HANDOFF_PREFIX}{n}", description=f"Pass the task to {n}, with a message.",
                           parameters={"type": "object", "properties": {"message": {"type": "string"}},
                                       "required": ["message"]}) for n in self.handoffs]
        if specs and self.output is not None:
            specs.append(ToolSpec(name=FINAL_ANSWER, description="Give the final answer.",
                                  parameters=self.output.model_json_schema()))
        return specs


class _Loop:
    """One run of an agent: the conversation so far and the steps taken."""

    def __init__(self, agent: Agent, llm: LLM, messages: list[Message]) -> None:
        self.agent, self.llm, self.messages, self.steps, self.repairs = agent, llm, messages, 0, 0
        self.specs = agent.tool_specs()
        self.made: dict[tuple[str, str], Observation] = {}  # calls so far: a repeat is answered, not run again
        self.repeated = False

    async def run(self) -> AgentResult:
        while self.steps < self.agent.max_steps and not self.repeated:
            completion = await self._ask(tools=True)
            choice = completion.choices[0]
            if choice.tool_calls:
                self.messages.append(Message(role="assistant", content=choice.text or None,
                                             tool_calls=choice.tool_calls))
                ended = await self._call_tools(choice.tool_calls)
                if ended is not None:
                    return ended
                continue
            answered = self._answer(choice.text, cut_off=choice.incomplete_json)
            if answered is not None:
                return answered
        # out of steps, or calling the same tool again: one last call without tools, for the best answer
        why = "You already have that result." if self.repeated else "You have used all your steps."
        self.messages.append(Message(role="user", content=f"{why} Give your final answer now."))
        while True:
            choice = (await self._ask(tools=False)).choices[0]
            answered = self._answer(choice.text, cut_off=choice.incomplete_json)
            if answered is not None:
                return answered

    async def _ask(self, *, tools: bool) -> Completion:
        agent = self.agent
        offer = tools and bool(self.specs)
        schema = agent.output.model_json_schema() if agent.output is not None and not offer else None
        request = Request(
            messages=self.messages, max_tokens=agent.max_tokens, temperature=agent.temperature,
            tools=self.specs if offer else None,
            tool_choice="required" if offer and agent.output is not None else "auto",
            response_format=None if schema is None else
            {"type": "json_schema", "json_schema": {"name": agent.output.__name__, "schema": schema}})  # type: ignore[union-attr]
        started = time.perf_counter()
        sink = token_sink()  # a graph run streaming tokens: the answer streams too, and adds up to the same one
        completion = await self.llm.complete(request) if sink is None else await self._streamed(request, sink)
        self.steps += 1
        seconds = time.perf_counter() - started
        emit(ModelCalled(agent.name, self.steps, completion.choices[0], completion.usage, seconds, request))
        return completion

    async def _streamed(self, request: Request, sink: Sink) -> Completion:
        """The completion of `request`, its text sent to `sink` under the agent's name as the model writes it."""
        chunks = []
        async for chunk in self.llm.stream(request):
            if chunk.text:
                sink((self.agent.name,), chunk.text)
            chunks.append(chunk)
        return completion_of(chunks, self.llm.name)

    async def _call_tools(self, calls: list[ToolCall]) -> AgentResult | None:
        """Run the calls (concurrently); a final answer or a handoff ends the run."""
        for call in calls:
            if call.name == FINAL_ANSWER:
                answered = self._answer(call.arguments, call=call)
                if answered is not None:
                    return answered
            elif call.name.startswith(HANDOFF_PREFIX) and call.name[len(HANDOFF_PREFIX):] in self.agent.handoffs:
                message = _argument(call.arguments, "message")
                return self._result(message, handoff=call.name[len(HANDOFF_PREFIX):])
        regular = [c for c in calls if c.name != FINAL_ANSWER]
        keys = [(c.name, _canonical(c.arguments)) for c in regular]
        self.repeated = bool(regular) and all(key in self.made for key in keys)  # going round in circles
        fresh = {key: call for key, call in zip(keys, regular, strict=True) if key not in self.made}
        self.made.update(zip(fresh, await asyncio.gather(*(self._call_tool(c) for c in fresh.values())), strict=True))
        for call, key in zip(regular, keys, strict=True):
            observation = self.made[key]
            self.messages.append(Message(role="tool", tool_call_id=call.id, name=call.name,
                                         content=observation.content))
        return None

    async def _call_tool(self, call: ToolCall) -> Observation:
        started = time.perf_counter()
        tool = self.agent.tools.get(call.name)
        if tool is None:
            known = ", ".join(self.agent.tools) or "none"
            observation = Observation(tool=call.name, content=f"unknown tool {call.name!r} (tools: {known})",
                                      error=True)
        else:
            observation = await tool.run(call.arguments)
        emit(ToolCalled(self.agent.name, self.steps, call, observation, time.perf_counter() - started))
        return observation

    def _answer(self, text: str, call: ToolCall | None = None, *, cut_off: bool = False) -> AgentResult | None:
        """The result for an answer, or None after asking the model to repair an answer that does not validate;
        `cut_off`: its JSON stopped at max_tokens (Choice.incomplete_json), which the repair says plainly."""
        output = self.agent.output
        if output is None:
            return self._result(text)
        try:
            return self._result(output.model_validate_json(text))
        except ValidationError as exc:
            if cut_off:
                problems = f"answer: cut off after {self.agent.max_tokens} tokens, before its JSON was complete; " \
                           "give a shorter answer"
            else:
                problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'answer'}: {e['msg']}"
                                     for e in exc.errors())
            if self.repairs >= self.agent.repairs:
                raise AgentError(f"agent {self.agent.name!r}: the answer did not validate against "
                                 f"{output.__name__} after {self.repairs} repairs: {problems}") from exc
            self.repairs += 1
            fix = f"Your answer does not match the required schema: {problems}. Answer again, fixing this."
            if call is None:
                self.messages += [Message(role="assistant", content=text), Message(role="user", content=fix)]
            else:  # the model called final_answer: the error goes back as that call's result
                self.messages.append(Message(role="tool", tool_call_id=call.id, name=call.name, content=fix))
            return None

    def _result(self, output: Any, handoff: str | None = None) -> AgentResult:
        return AgentResult(self.agent.name, output, self.messages, self.steps, handoff=handoff)


def _task(task: str, context: Sequence[Said]) -> str:
    if not context:
        return task
    said = "\n".join(f"- {s.agent}: {s.content}" for s in context)
    return f"{task}\n\nWork so far:\n{said}\n\nNow do your part."


def _argument(arguments: str, name: str) -> str:
    try:
        data = json.loads(arguments)
    except json.JSONDecodeError:
        return arguments
    return str(data.get(name, arguments)) if isinstance(data, dict) else arguments


def _canonical(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments), sort_keys=True)
    except json.JSONDecodeError:
        return arguments
