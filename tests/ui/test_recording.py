"""What runs record in the spans table: graph nodes, agents with their model and tool calls, errors, pauses,
searches, standalone agents; and the OpenTelemetry export of a run."""

import json

import pytest
import scenes
from browser import off_loop

from baobab.agents import Agent
from baobab.engine import ScriptedLLM
from baobab.graphs import END, START, Graph, NodeError
from baobab.store import Store
from baobab.store.trace import recording
from baobab.ui import data


def test_a_graph_run_records_its_nodes_and_the_agent_calls_inside_them(db_url: str) -> None:
    store = Store(db_url)
    off_loop(scenes.report_app(store).run, {"task": "the sum"}, thread="t")
    spans = data.run_spans(store, "thread:t")
    by_kind = {kind: [s for s in spans if s["kind"] == kind] for kind in ("run", "node", "agent", "model", "tool")}
    assert [len(by_kind[k]) for k in by_kind] == [1, 3, 1, 2, 1]
    run, research = by_kind["run"][0], next(s for s in by_kind["node"] if s["name"] == "research")
    assert run["status"] == "ok" and run["attrs"]["graph"]["reducers"] == {"log": "append"}
    assert ["research", "write", "kind"] not in run["attrs"]["graph"]["edges"]
    assert all(s["parent"] == run["id"] for s in by_kind["node"])
    assert research["attrs"] == {"step": 2, "task": 0} and by_kind["agent"][0]["parent"] == research["id"]
    agent = by_kind["agent"][0]
    assert {s["parent"] for s in by_kind["model"] + by_kind["tool"]} == {agent["id"]}
    assert agent["attrs"]["output"] == "The sum is 5." and agent["attrs"]["steps"] == 2
    assert by_kind["tool"][0]["attrs"]["result"] == "5" and by_kind["model"][0]["attrs"]["prompt_tokens"] > 0
    assert all(s["started"] <= s["ended"] for s in spans)
    assert agent["started"] <= by_kind["model"][0]["started"] and by_kind["model"][1]["ended"] <= agent["ended"]


class Count(scenes.Loop):
    pass


def test_a_failing_node_and_a_pause_are_recorded_as_such(store_url: str) -> None:
    store = Store(store_url)

    def boom(state: Count) -> dict[str, int]:
        raise RuntimeError("no luck")

    app = Graph(Count, name="fails").node("boom", boom).edge(START, "boom").edge("boom", END).compile(
        checkpointer=store)
    with pytest.raises(NodeError):
        off_loop(app.run, {}, thread="bad")
    node, run = sorted(data.run_spans(store, "thread:bad"), key=lambda s: s["kind"] != "node")
    assert (node["status"], node["error"]) == ("error", "RuntimeError: no luck")
    assert run["status"] == "error" and "no luck" in run["error"]
    paused = (Graph(Count, name="pauses").node("a", lambda s: {"n": 1}).edge(START, "a").edge("a", END)
              .compile(checkpointer=store, interrupt_before=["a"]))
    assert off_loop(paused.run, {}, thread="p").status == "interrupted"
    assert [s["status"] for s in data.run_spans(store, "thread:p")] == ["interrupted"]
    assert [s["status"] for s in data.run_spans(store, "thread:p") if s["kind"] == "run"] == ["interrupted"]


def test_a_graph_without_a_checkpointer_records_nothing(store_url: str) -> None:
    store = Store(store_url)
    app = Graph(Count, name="mem").node("a", lambda s: {"n": 1}).edge(START, "a").edge("a", END).compile()
    assert off_loop(app.run, {}, thread="m").state.n == 1  # type: ignore[attr-defined]
    assert data.run_spans(store, "thread:m") == []


def test_an_agent_on_its_own_records_inside_recording_and_is_listed(store_url: str) -> None:
    store = Store(store_url)
    def solo() -> str:
        with recording(store, "agent:solo", "solo") as root:
            Agent("solo", model=ScriptedLLM(["hello"])).run("hi")
        return root.id

    root_id = off_loop(solo)
    spans = data.trace(store, "agent:solo")["spans"]
    assert [s["kind"] for s in spans] == ["run", "agent", "model"] and spans[0]["id"] == root_id
    assert [t["run"] for t in data.runs(store)["traces"]] == ["agent:solo"]
    with pytest.raises(ValueError), recording(store, "agent:failed"):
        raise ValueError("stopped")
    assert data.run_spans(store, "agent:failed")[0]["status"] == "error"


def test_a_search_records_its_span_with_the_tree_size(store_url: str) -> None:
    store = Store(store_url)
    size = off_loop(scenes.small_search, store)
    (span,) = data.run_spans(store, "search:toy")
    assert (span["kind"], span["name"], span["status"], span["attrs"]["nodes"]) == ("search", "mcts", "ok", size)
    assert data.search(store, "toy")["nodes"][0]["id"] == 0 and len(data.search(store, "toy")["nodes"]) == size


def test_opentelemetry_export_keeps_names_times_and_nesting(store_url: str) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from baobab.ui.otel import export_otel

    store = Store(store_url)
    off_loop(scenes.report_app(store).run, {"task": "the sum"}, thread="t")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert export_otel(store, "thread:t", provider) == 9
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"run report", "node plan", "node research", "node write", "agent researcher",
                          "model researcher", "tool add", "route plan"}  # the router's decision after plan
    root, tool = spans["run report"], spans["tool add"]
    assert spans["node research"].parent.span_id == root.context.span_id
    assert tool.parent.span_id == spans["agent researcher"].context.span_id
    assert tool.attributes["baobab.result"] == "5" and json.loads(tool.attributes["baobab.arguments"]) == {
        "a": 2, "b": 3}
    stored = {s["name"]: s for s in data.run_spans(store, "thread:t") if s["kind"] == "tool"}
    assert tool.start_time == int(stored["add"]["started"] * 1e9)
