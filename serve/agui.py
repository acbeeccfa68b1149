"""A workflow or graph as an AG-UI agent: POST /agui with a RunAgentInput answers the run's events as SSE.

The AG-UI threadId is the Baobab thread. A run reads its input from the last message when it is the user's (text,
or a JSON object of inputs), else from `state`; it answers RUN_STARTED, a STATE_SNAPSHOT, then STEP_STARTED and
STEP_FINISHED per node, TEXT_MESSAGE_START/CONTENT/END for the text each node's models stream, TOOL_CALL_START/ARGS/
END/RESULT for each tool an agent called, a STATE_DELTA (RFC 6902) after each super-step, and RUN_FINISHED with the
final state as `result`. A graph interrupt ends the run with RUN_FINISHED's interrupt outcome (the interrupt's
payload in its metadata); the next run on the thread answers it with `resume: [{interruptId, status: "resolved",
payload}]`, the payload being the value the run resumes with. A run that raises ends with RUN_ERROR.

>>> routes = agui_routes(graph_target(graph.compile(checkpointer=store)))  # doctest: +SKIP
"""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from ag_ui.core import (
    BaseEvent,
    Interrupt,
    RunAgentInput,
    RunErrorEvent,
    RunFinishedEvent,
    RunFinishedInterruptOutcome,
    RunStartedEvent,
    StateDeltaEvent,
    StateSnapshotEvent,
    StepFinishedEvent,
    StepStartedEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
    ToolCallArgsEvent,
    ToolCallEndEvent,
    ToolCallResultEvent,
    ToolCallStartEvent,
)
from ag_ui.core import RunFinishedCancelledOutcome as Cancelled
from ag_ui.encoder import EventEncoder
from pydantic import ValidationError
from pydantic_core import to_jsonable_python
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from baobab.agents import AgentEvent, ToolCalled, listen
from baobab.graphs import Checkpoint, Event, NodeEnd, NodeFailed, NodeStart, RunResult, Token
from baobab.serve.json_patch import diff
from baobab.serve.target import InputError, Target


async def agui_events(target: Target, run: RunAgentInput) -> AsyncIterator[BaseEvent]:
    """The AG-UI events of one run of `target` (a new run, or the resume of an interrupted thread).

    The run goes on in a task of its own (its listeners and budget set there), which ends if the events are dropped.

    >>> async for event in agui_events(target, RunAgentInput(thread_id="t", run_id="r", messages=[])):  # doctest: +SKIP
    ...     print(event.type)
    """
    yield RunStartedEvent(thread_id=run.thread_id, run_id=run.run_id)
    try:
        events = _events(target, run)
    except Exception as exc:  # a bad input or resume, before anything ran
        yield _error(exc)
        return
    if events is None:  # the interrupt was cancelled: the thread stays paused
        yield RunFinishedEvent(thread_id=run.thread_id, run_id=run.run_id, outcome=Cancelled())
        return
    told: asyncio.Queue[Event | ToolCalled | Exception | None] = asyncio.Queue()
    producer = asyncio.create_task(_produce(target, events, told))
    talk, shown = _Talk(), None
    try:
        while (event := await told.get()) is not None:
            if isinstance(event, Exception):  # the run stopped (its thread keeps its last checkpoint)
                yield _error(event)
                return
            if isinstance(event, ToolCalled):
                for said in talk.tool(event):
                    yield said
                continue
            if shown is None:
                shown = target.app.state(run.thread_id).model_dump(mode="json")
                yield StateSnapshotEvent(snapshot=shown)
            if isinstance(event, Checkpoint):
                state = event.state.model_dump(mode="json")
                if patch := diff(shown, state):
                    yield StateDeltaEvent.model_validate({"delta": patch})
                shown = state
            elif isinstance(event, RunResult):
                for said in talk.close():
                    yield said
                yield _finished(run, event)
            else:
                for said in talk.on(event):
                    yield said
    finally:
        producer.cancel()  # the client left: the run stops where its last checkpoint left it


async def _produce(target: Target, events: AsyncIterator[Event],
                   told: "asyncio.Queue[Event | ToolCalled | Exception | None]") -> None:
    """Run the graph: put its events, and the tool calls its agents make, on `told`; then an error or None."""
    loop = asyncio.get_running_loop()

    def hear(event: AgentEvent) -> None:
        if isinstance(event, ToolCalled):  # an agent in a sync node calls from the node's worker thread
            loop.call_soon_threadsafe(told.put_nowait, event)

    try:
        with listen(hear), target.running():
            async for event in events:
                await asyncio.sleep(0)  # tool calls heard so far go first
                told.put_nowait(event)
    except Exception as exc:
        told.put_nowait(exc)
    told.put_nowait(None)


def _error(exc: Exception) -> RunErrorEvent:
    return RunErrorEvent(message=f"{type(exc).__name__}: {exc}", code=type(exc).__name__)


def agui_routes(target: Target, path: str = "/agui") -> list[Route]:
    """POST `path`: a RunAgentInput in, the run's events out as server-sent events (400 for a bad body)."""

    async def run_agent(request: Request) -> Response:
        try:
            run = RunAgentInput.model_validate(json.loads(await request.body()))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return JSONResponse({"error": f"the body is not JSON: {exc}"}, status_code=400)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
            return JSONResponse({"error": f"expected a RunAgentInput: {problems}"}, status_code=400)
        encoder = EventEncoder(accept=request.headers.get("accept", "text/event-stream"))

        async def stream() -> AsyncIterator[str]:
            async for event in agui_events(target, run):
                yield encoder.encode(event)

        return StreamingResponse(stream(), media_type=encoder.get_content_type())

    return [Route(path, run_agent, methods=["POST"])]


def _interrupt_id(when: str, step: int, nodes: Any) -> str:
    """How an AG-UI client names a paused run's interrupt: where it paused."""
    return f"{when}-{step}-{'+'.join(nodes)}"


def _events(target: Target, run: RunAgentInput) -> AsyncIterator[Event] | None:
    """The run's Baobab events: a resume when `run` answers the thread's interrupt, else a run on its input."""
    thread = run.thread_id
    info = target.thread(thread)
    waiting = (_interrupt_id(info.detail["when"], info.detail["step"], info.detail["nodes"])
               if info is not None and info.status == "interrupted" and info.detail and "when" in info.detail else None)
    if run.resume:
        entry = run.resume[0]
        if entry.interrupt_id != waiting:
            raise InputError(f"resume[0].interruptId is {entry.interrupt_id!r}, but thread {thread!r} "
                             + (f"waits on {waiting!r}" if waiting else "waits on no interrupt"))
        return None if entry.status == "cancelled" else target.events(thread, resume=True, value=entry.payload,
                                                                      tokens=True)
    if waiting is not None:
        raise InputError(f"thread {thread!r} waits on interrupt {waiting!r}: answer it with resume: [{{interruptId: "
                         f"{waiting!r}, status: 'resolved', payload: ...}}]")
    last = run.messages[-1] if run.messages else None
    if last is not None and last.role == "user":
        content: Any = last.content if isinstance(last.content, str) else \
            "\n".join(getattr(part, "text", "") for part in last.content)
    else:
        content = run.state if run.state is not None else {}
    return target.events(thread, content, tokens=True)


def _finished(run: RunAgentInput, result: RunResult) -> RunFinishedEvent:
    """RUN_FINISHED: the final state as the result, or the interrupt the run paused on."""
    state = result.state.model_dump(mode="json")
    if result.status == "done":
        return RunFinishedEvent(thread_id=run.thread_id, run_id=run.run_id, result=state)
    pause = result.interrupt
    assert pause is not None
    where = f"{pause.when} {', '.join(pause.nodes)}"
    interrupt = Interrupt(id=_interrupt_id(pause.when, pause.step, pause.nodes), reason="input_required",
                          message=f"paused {where}: resume with the value to continue",
                          metadata={"when": pause.when, "nodes": list(pause.nodes), "step": pause.step,
                                    "payload": to_jsonable_python(pause.payload)})
    return RunFinishedEvent(thread_id=run.thread_id, run_id=run.run_id,
                            outcome=RunFinishedInterruptOutcome(interrupts=[interrupt]))


class _Talk:
    """Steps, streamed text and tool calls as AG-UI events: a text message per node that streams, open until the
    node ends."""

    def __init__(self) -> None:
        self.open: dict[str, str] = {}  # node -> id of its text message
        self.steps: list[str] = []  # nodes started and not ended

    def on(self, event: Event) -> Iterator[BaseEvent]:
        if isinstance(event, NodeStart):
            self.steps.append(event.node)
            yield StepStartedEvent(step_name=event.node)
        elif isinstance(event, Token):
            node = event.path[0]
            if node not in self.open:
                self.open[node] = uuid.uuid4().hex
                yield TextMessageStartEvent(message_id=self.open[node], role="assistant", name=node)
            yield TextMessageContentEvent(message_id=self.open[node], delta=event.text)
        elif isinstance(event, NodeEnd | NodeFailed):
            if event.node in self.open:
                yield TextMessageEndEvent(message_id=self.open.pop(event.node))
            self.steps.remove(event.node)
            yield StepFinishedEvent(step_name=event.node)

    def tool(self, called: ToolCalled) -> Iterator[BaseEvent]:
        """A tool call an agent made (told once the tool has answered): its start, arguments, end and result."""
        call = called.call
        yield ToolCallStartEvent(tool_call_id=call.id, tool_call_name=call.name,
                                 parent_message_id=self.open.get(called.agent))
        yield ToolCallArgsEvent(tool_call_id=call.id, delta=call.arguments)
        yield ToolCallEndEvent(tool_call_id=call.id)
        yield ToolCallResultEvent(message_id=uuid.uuid4().hex, tool_call_id=call.id, role="tool",
                                  content=called.observation.content)

    def close(self) -> Iterator[BaseEvent]:
        """End the text messages and steps still open (the nodes a pause stopped), as a run must before it ends."""
        for message in self.open.values():
            yield TextMessageEndEvent(message_id=message)
        for node in self.steps:
            yield StepFinishedEvent(step_name=node)
        self.open.clear()
        self.steps.clear()
