"""Graphs and a YAML workflow served as AG-UI event streams on a real loopback server, read by a consumer that parses
the SSE into ag_ui.core's event models: the state rebuilt from STATE_SNAPSHOT and the STATE_DELTAs (applied by
jsonpatch) equals the run's, across a fan-out, an interrupt and its resume; steps, streamed text and an agent's tool
calls arrive as their events; errors are RUN_ERROR or a 400; and a workflow on the embedded model answers right."""

import contextlib
import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import jsonpatch
from ag_ui.core import (
    BaseEvent,
    Event,
    EventType,
    RunErrorEvent,
    RunFinishedEvent,
    StateDeltaEvent,
    StateSnapshotEvent,
    TextMessageContentEvent,
    ToolCallArgsEvent,
    ToolCallResultEvent,
    ToolCallStartEvent,
)
from asgi_server import served
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter

from baobab.agents import Agent, pipeline
from baobab.engine import Choice, ScriptedLLM, ToolCall
from baobab.graphs import END, START, App, Graph, RunContext, append, token_sink
from baobab.serve.agent_app import create_agent_app
from baobab.serve.json_patch import diff
from baobab.serve.target import Target, graph_target, workflow_target
from baobab.tools import tool

EVENTS: TypeAdapter[Any] = TypeAdapter(Event)


class Trip(BaseModel):
    task: str = ""
    notes: Annotated[list[str], append] = []
    offers: dict[str, int] = {}
    approved: bool = False


def hotels(state: Trip) -> dict[str, Any]:
    sink = token_sink()
    if sink is not None:
        sink(("model",), "Two ")
        sink(("model",), "hotels")
    return {"notes": ["hotels"], "offers": {"hotel": 120}}


def flights(state: Trip) -> dict[str, Any]:
    return {"notes": ["flights"]}


def confirm(state: Trip, ctx: RunContext) -> dict[str, Any]:
    yes = ctx.interrupt({"offers": state.offers})
    return {"approved": yes, "offers": {"total": 120} if yes else {}, "notes": ["confirmed"]}


def trip_app(db: str) -> App:
    graph = Graph(Trip).node("hotels", hotels).node("flights", flights).node("confirm", confirm)
    graph.edge(START, "hotels").edge(START, "flights").edge(["hotels", "flights"], "confirm").edge("confirm", END)
    return graph.compile(checkpointer=db)


@contextlib.contextmanager
def served_agui(target: Target) -> Iterator[str]:
    with served(lambda url: create_agent_app(target, url=f"{url}/", protocols=["agui"])) as url:
        yield f"{url}/agui"


def run_agent(url: str, body: dict[str, Any]) -> list[BaseEvent]:
    """POST a RunAgentInput; the SSE answer parsed into ag_ui.core events."""
    with httpx.stream("POST", url, json=body, headers={"Accept": "text/event-stream"}, timeout=300) as reply:
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/event-stream")
        return [EVENTS.validate_json(line.removeprefix("data: ")) for line in reply.iter_lines()
                if line.startswith("data: ")]


def rebuilt(events: list[BaseEvent]) -> Any:
    """The state a client holds after the events: the snapshot, then each delta applied in order."""
    state: Any = None
    for event in events:
        if isinstance(event, StateSnapshotEvent):
            state = copy.deepcopy(event.snapshot)
        elif isinstance(event, StateDeltaEvent):
            state = jsonpatch.apply_patch(state, [op.model_dump() for op in event.delta])
    return state


def well_formed(events: list[BaseEvent]) -> None:
    """As AG-UI clients check a stream: one run, opened first and closed last, each step and message closed."""
    kinds = [e.type for e in events]
    assert kinds[0] == EventType.RUN_STARTED and kinds[-1] in (EventType.RUN_FINISHED, EventType.RUN_ERROR)
    assert kinds.count(EventType.RUN_STARTED) == 1 and kinds[1] in (EventType.STATE_SNAPSHOT, EventType.RUN_ERROR)
    steps = [(e.type, getattr(e, "step_name", None)) for e in events if "STEP" in e.type]
    assert sorted(n for k, n in steps if k == EventType.STEP_STARTED) == \
        sorted(n for k, n in steps if k == EventType.STEP_FINISHED)
    started = [getattr(e, "message_id", None) for e in events if e.type == EventType.TEXT_MESSAGE_START]
    assert started == [getattr(e, "message_id", None) for e in events if e.type == EventType.TEXT_MESSAGE_END]


def test_state_rebuilt_from_snapshot_and_deltas_through_fan_out_interrupt_and_resume(tmp_path: Path) -> None:
    app = trip_app(f"sqlite:///{tmp_path / 'served.db'}")
    with served_agui(graph_target(app)) as url:
        first = run_agent(url, {"threadId": "t1", "runId": "r1", "messages": [
            {"id": "m1", "role": "user", "content": "a weekend in Lisbon"}]})
        well_formed(first)
        assert [e.type for e in first][:2] == [EventType.RUN_STARTED, EventType.STATE_SNAPSHOT]
        assert first[1].snapshot == {"task": "a weekend in Lisbon", "notes": [], "offers": {}, "approved": False}
        text = [e for e in first if isinstance(e, TextMessageContentEvent)]
        assert "".join(e.delta for e in text) == "Two hotels"
        steps = [(e.type.value, getattr(e, "step_name", "")) for e in first
                 if "STEP" in e.type or e.type == EventType.STATE_DELTA]
        assert set(steps[:4]) == {("STEP_STARTED", "hotels"), ("STEP_STARTED", "flights"),
                                  ("STEP_FINISHED", "hotels"), ("STEP_FINISHED", "flights")}  # run side by side
        assert steps[4:] == [("STATE_DELTA", ""), ("STEP_STARTED", "confirm"), ("STEP_FINISHED", "confirm")]
        finished = first[-1]
        assert isinstance(finished, RunFinishedEvent) and finished.outcome is not None
        assert finished.outcome.type == "interrupt"
        pause = finished.outcome.interrupts[0]
        assert pause.metadata == {"when": "inside", "nodes": ["confirm"], "step": 2,
                                  "payload": {"offers": {"hotel": 120}}}
        assert rebuilt(first) == app.state("t1").model_dump(mode="json")

        second = run_agent(url, {"threadId": "t1", "runId": "r2", "messages": [],
                                 "resume": [{"interruptId": pause.id, "status": "resolved", "payload": True}]})
        well_formed(second)
        deltas = [e.delta for e in second if isinstance(e, StateDeltaEvent)]
        assert [op.model_dump() for op in deltas[0]] == [  # the key the node dropped is removed, one is added
            {"op": "add", "path": "/notes/2", "value": "confirmed"}, {"op": "remove", "path": "/offers/hotel"},
            {"op": "add", "path": "/offers/total", "value": 120}, {"op": "replace", "path": "/approved", "value": True}]
        result = second[-1]
        assert isinstance(result, RunFinishedEvent) and result.outcome is None

    direct = trip_app(f"sqlite:///{tmp_path / 'direct.db'}")
    assert direct.run({"task": "a weekend in Lisbon"}, thread="d").status == "interrupted"
    expected = direct.resume("d", value=True).state.model_dump(mode="json")
    assert rebuilt(second) == result.result == expected
    assert expected["notes"] == ["hotels", "flights", "confirmed"] and expected["offers"] == {"total": 120}


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def test_tool_calls_errors_and_bad_bodies(tmp_path: Path) -> None:
    calls = Choice(text="", tool_calls=[ToolCall(id="call_1", name="add", arguments='{"a": 2, "b": 3}')])
    agent = Agent("calc", model=ScriptedLLM([calls, "The sum is 5."]), tools=[add])
    app = pipeline([agent]).compile(checkpointer=f"sqlite:///{tmp_path / 'served.db'}")
    with served_agui(graph_target(app)) as url:
        events = run_agent(url, {"threadId": "c1", "runId": "r1", "state": {"task": "Add 2 and 3."}, "messages": []})
        well_formed(events)
        start = next(e for e in events if isinstance(e, ToolCallStartEvent))
        assert (start.tool_call_id, start.tool_call_name) == ("call_1", "add")
        assert [e.delta for e in events if isinstance(e, ToolCallArgsEvent)] == ['{"a": 2, "b": 3}']
        assert [e.content for e in events if isinstance(e, ToolCallResultEvent)] == ["5"]
        kinds = [e.type for e in events]
        assert kinds.index(EventType.TOOL_CALL_END) < kinds.index(EventType.STEP_FINISHED)
        assert rebuilt(events)["output"] == events[-1].result["output"] == "The sum is 5."

        again = run_agent(url, {"threadId": "c1", "runId": "r2", "messages": [], "resume": [
            {"interruptId": "inside-1-calc", "status": "resolved", "payload": 1}]})
        assert isinstance(again[-1], RunErrorEvent)
        assert again[-1].message == "InputError: resume[0].interruptId is 'inside-1-calc', but thread 'c1' waits " \
                                    "on no interrupt"

        bad = httpx.post(url, json={"threadId": "x", "runId": "r", "messages": "hi"})
        assert bad.status_code == 400 and bad.json()["error"].startswith("expected a RunAgentInput: messages")
        assert httpx.post(url, content=b"{").json()["error"].startswith("the body is not JSON")

    trip = trip_app(f"sqlite:///{tmp_path / 'trip.db'}")
    with served_agui(graph_target(trip)) as url:
        run_agent(url, {"threadId": "t", "runId": "r1", "messages": [], "state": {"task": "a trip"}})
        busy = run_agent(url, {"threadId": "t", "runId": "r2", "messages": [], "state": {"task": "another"}})
        assert isinstance(busy[-1], RunErrorEvent) and "thread 't' waits on interrupt 'inside-2-confirm': answer " \
            "it with resume" in busy[-1].message
        dropped = run_agent(url, {"threadId": "t", "runId": "r3", "messages": [], "resume": [
            {"interruptId": "inside-2-confirm", "status": "cancelled"}]})
        assert isinstance(dropped[-1], RunFinishedEvent) and dropped[-1].outcome.type == "cancelled"
        assert trip.thread_info("t").status == "interrupted"  # a cancelled interrupt leaves the run paused


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=3),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4),
                    max_leaves=12)


@given(JSON, JSON)
def test_json_patch_turns_one_document_into_the_other(old: Any, new: Any) -> None:
    patched = jsonpatch.apply_patch({"s": copy.deepcopy(old)}, diff({"s": old}, {"s": new}))
    assert json.dumps(patched, sort_keys=True) == json.dumps({"s": new}, sort_keys=True)  # 1 is not True here


MODEL_WORKFLOW = (Path(__file__).parent / "geographer.yaml").read_text()  # one agent naming a capital


def test_workflow_on_the_embedded_model_answers_over_agui(tmp_path: Path) -> None:
    (tmp_path / "geo.yaml").write_text(MODEL_WORKFLOW)
    target = workflow_target(tmp_path / "geo.yaml", checkpointer=f"sqlite:///{tmp_path / 'runs.db'}")
    with served_agui(target) as url:
        events = run_agent(url, {"threadId": "g1", "runId": "r1", "messages": [
            {"id": "m1", "role": "user", "content": "What is the capital of France?"}]})
    well_formed(events)
    final = events[-1]
    assert isinstance(final, RunFinishedEvent), final
    streamed = "".join(e.delta for e in events if isinstance(e, TextMessageContentEvent))
    assert "Paris" in final.result["output"] and streamed.strip() == final.result["output"].strip()
    assert rebuilt(events) == final.result
    assert final.result["task"] == "What is the capital of France?"
