"""Graphs and a YAML workflow served over A2A v1.0, driven by a2a-sdk's own client on a real loopback server: the
Agent Card is discovered, a task streams each node's update and the text it streamed, an interrupt ends the request
input-required and the next message on the task resumes it, a context's tasks continue one thread, bad input is
rejected and a failing node fails the task; `baobab serve-agent` on the embedded model answers a question right."""

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import httpx
from a2a.client import A2ACardResolver, Client, ClientConfig, create_client
from a2a.helpers import get_data_parts, get_text_parts, new_data_message, new_text_message
from a2a.types import (
    AgentCard,
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Role,
    SendMessageRequest,
    StreamResponse,
    TaskState,
)
from asgi_server import served
from pydantic import BaseModel

from baobab.aio import run_sync
from baobab.graphs import END, START, App, Graph, RunContext, append, token_sink
from baobab.serve.agent_app import create_agent_app
from baobab.serve.target import graph_target


class Review(BaseModel):
    """Drafts a reply to a task and asks a human to approve it before publishing."""

    task: str = ""
    draft: str = ""
    verdict: str = ""
    log: Annotated[list[str], append] = []


def write(state: Review) -> dict[str, Any]:
    sink = token_sink()
    if sink is not None:  # as an agent's model would: the text as it is written
        sink(("model",), "Dear ")
        sink(("model",), "reader")
    return {"draft": state.task.upper(), "log": ["write"]}


def review(state: Review, ctx: RunContext) -> dict[str, Any]:
    return {"verdict": ctx.interrupt({"draft": state.draft}), "log": ["review"]}


def publish(state: Review) -> dict[str, Any]:
    return {"log": [f"publish {state.verdict}"]}


def review_app(db: str) -> App:
    graph = Graph(Review).node("write", write).node("review", review).node("publish", publish)
    return graph.edge(START, "write").edge("write", "review").edge("review", "publish").edge("publish", END) \
        .compile(checkpointer=db)


class Sum(BaseModel):
    a: int
    b: int
    total: int = 0


def add(state: Sum) -> dict[str, Any]:
    if state.a < 0:
        raise ValueError(f"a must not be negative, got {state.a}")
    return {"total": state.a + state.b}


def sum_app(db: str) -> App:
    return Graph(Sum).node("add", add).edge(START, "add").edge("add", END).compile(checkpointer=db)


def user(text: str | None = None, data: Any = None, *, task: str | None = None, context: str | None = None) -> Message:
    if data is not None:
        return new_data_message(data, role=Role.ROLE_USER, task_id=task, context_id=context)
    assert text is not None
    return new_text_message(text, role=Role.ROLE_USER, task_id=task, context_id=context)


def send(client: Client, message: Message) -> list[StreamResponse]:
    async def go() -> list[StreamResponse]:
        return [r async for r in client.send_message(SendMessageRequest(message=message))]

    return run_sync(go())


def last_status(responses: list[StreamResponse]) -> Any:
    return [r.status_update.status for r in responses if r.HasField("status_update")][-1]


@contextlib.contextmanager
def served_a2a(app: App) -> Iterator[tuple[str, Client]]:
    """`app` served over A2A on a loopback port, and an a2a-sdk client that found it by its card."""
    with served(lambda url: create_agent_app(graph_target(app), url=f"{url}/", protocols=["a2a"])) as url:
        client = run_sync(create_client(url))
        try:
            yield url, client
        finally:
            run_sync(client.close())


def card_of(url: str) -> AgentCard:
    async def go() -> AgentCard:
        async with httpx.AsyncClient() as http:
            return await A2ACardResolver(http, url).get_agent_card()

    return run_sync(go())


def test_card_streamed_task_interrupt_and_resume_match_a_direct_run(tmp_path: Path) -> None:
    app = review_app(f"sqlite:///{tmp_path / 'served.db'}")
    with served_a2a(app) as (url, client):
        card = card_of(url)
        assert card.name == "Review" and card.description.startswith("Drafts a reply")
        assert card.capabilities.streaming and card.supported_interfaces[0].url == f"{url}/"
        assert card.supported_interfaces[0].protocol_binding == "JSONRPC"
        assert [s.tags for s in card.skills] == [["write", "review", "publish"]]
        assert "Send the task as text" in card.skills[0].description

        first = send(client, user("ship it"))
        assert first[0].task.status.state == TaskState.TASK_STATE_SUBMITTED
        task, context = first[0].task.id, first[0].task.context_id
        chunks = [r.artifact_update for r in first if r.HasField("artifact_update")]
        assert [(c.artifact.artifact_id, get_text_parts(c.artifact.parts), c.append) for c in chunks] == [
            ("write-text", ["Dear "], False), ("write-text", ["reader"], True)]
        steps = [get_data_parts(s.message.parts) for s in
                 (r.status_update.status for r in first if r.HasField("status_update")) if s.message.parts]
        assert steps[0] == [{"node": "write", "step": 1.0, "update": {"draft": "SHIP IT", "log": ["write"]}}]
        paused = last_status(first)
        assert paused.state == TaskState.TASK_STATE_INPUT_REQUIRED
        assert get_data_parts(paused.message.parts)[0]["payload"] == {"draft": "SHIP IT"}

        second = send(client, user("approved", task=task, context=context))
        assert last_status(second).state == TaskState.TASK_STATE_COMPLETED
        state = next(get_data_parts(r.artifact_update.artifact.parts)[0] for r in second
                 if r.HasField("artifact_update") and r.artifact_update.artifact.artifact_id == "state")
        stored = run_sync(client.get_task(GetTaskRequest(id=task)))
        assert stored.status.state == TaskState.TASK_STATE_COMPLETED and stored.context_id == context

    direct = review_app(f"sqlite:///{tmp_path / 'direct.db'}")
    assert direct.run({"task": "ship it"}, thread="d").status == "interrupted"
    expected = direct.resume("d", value="approved").state
    assert Review.model_validate(state) == expected
    assert expected.log == ["write", "review", "publish approved"]
    assert app.state(context) == expected  # the context's thread holds the run


def test_context_continues_its_thread_bad_input_is_rejected_and_a_failing_node_fails(tmp_path: Path) -> None:
    app = sum_app(f"sqlite:///{tmp_path / 'served.db'}")
    with served_a2a(app) as (_, client):
        done = send(client, user(data={"a": 2, "b": 3}))
        context = done[0].task.context_id
        assert last_status(done).state == TaskState.TASK_STATE_COMPLETED
        again = send(client, user(data={"a": 10}, context=context))  # a new task in the same context: same thread
        assert again[0].task.id != done[0].task.id
        state = [get_data_parts(r.artifact_update.artifact.parts)[0] for r in again if r.HasField("artifact_update")]
        assert state == [{"a": 10.0, "b": 3.0, "total": 13.0}]  # protobuf numbers are doubles

        rejected = last_status(send(client, user("add two and three")))
        assert rejected.state == TaskState.TASK_STATE_REJECTED
        assert get_text_parts(rejected.message.parts)[0].startswith(
            "Sum takes the inputs ['a', 'b', 'total']: send them as a JSON object")

        failed = last_status(send(client, user('{"a": -1, "b": 0}')))  # JSON text is an object of inputs too
        assert failed.state == TaskState.TASK_STATE_FAILED
        assert "a must not be negative, got -1" in get_text_parts(failed.message.parts)[0]


class Slow(BaseModel):
    task: str = ""
    done: bool = False


async def wait(state: Slow) -> dict[str, Any]:
    await asyncio.sleep(120)
    return {"done": True}


def test_a_cancelled_task_stops_its_run(tmp_path: Path) -> None:
    app = Graph(Slow).node("wait", wait).edge(START, "wait").edge("wait", END) \
        .compile(checkpointer=f"sqlite:///{tmp_path / 'served.db'}")
    with served(lambda url: create_agent_app(graph_target(app), url=f"{url}/", protocols=["a2a"])) as url:
        client = run_sync(create_client(url, client_config=ClientConfig(streaming=False, polling=True)))
        started = send(client, user("take your time"))[0].task  # answered at once: the run goes on
        assert started.status.state in (TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING)
        cancelled = run_sync(client.cancel_task(CancelTaskRequest(id=started.id)))
        assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
        assert run_sync(client.get_task(GetTaskRequest(id=started.id))).status.state == TaskState.TASK_STATE_CANCELED
        run_sync(client.close())
    assert app.state(started.context_id).done is False  # the node never finished


MODEL_WORKFLOW = (Path(__file__).parent / "geographer.yaml").read_text()  # one agent naming a capital


def test_serve_agent_on_the_embedded_model_answers_over_a2a(tmp_path: Path, port_finder: Callable[[], int],
                                                           serving: Callable[..., None]) -> None:
    (tmp_path / "geo.yaml").write_text(MODEL_WORKFLOW)
    port = port_finder()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(["baobab", "serve-agent", "geo.yaml", "--protocol", "a2a", "--port", str(port),
                             "--db", f"sqlite:///{tmp_path / 'runs.db'}"], cwd=tmp_path, stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        serving(proc, f"{url}/.well-known/agent-card.json", timeout=120)
        client = run_sync(create_client(url))
        assert client._card.skills[0].description.endswith("Send the question as text, or the inputs as a JSON "
                                                            "object (question: a question about a capital city).")
        answer = send(client, user("What is the capital of Japan?"))
        assert last_status(answer).state == TaskState.TASK_STATE_COMPLETED
        artifacts = [r.artifact_update.artifact for r in answer if r.HasField("artifact_update")]
        streamed = "".join(t for a in artifacts if a.artifact_id == "geographer-text" for t in get_text_parts(a.parts))
        output = next(get_text_parts(a.parts)[0] for a in artifacts if a.artifact_id == "output")
        assert "Tokyo" in output and streamed.strip() == output.strip()
        run_sync(client.close())
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    assert "Traceback" not in (tmp_path / "server.log").read_text()


def test_serve_agent_names_a_bad_protocol_and_a_bad_workflow(tmp_path: Path) -> None:
    (tmp_path / "geo.yaml").write_text(MODEL_WORKFLOW.replace("agents: [geographer]", "agents: [geographer, poet]"))
    bad = subprocess.run(["baobab", "serve-agent", "geo.yaml", "--protocol", "smoke"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "expected a2a, agui or both, got 'smoke'" in bad.stderr
    broken = subprocess.run(["baobab", "serve-agent", "geo.yaml"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60)
    assert broken.returncode == 2
    assert broken.stderr.strip() == "geo.yaml:8: workflow.agents.1: 'poet' is not an agent (['geographer'])"
