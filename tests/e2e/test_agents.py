"""Agents and YAML workflows on the real embedded model, and the same configs through `baobab serve`."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from baobab.agents import Agent, ToolCalled, Workflow, listen
from baobab.agents.agent import close_shared_models
from baobab.aio import run_sync
from baobab.graphs import RunResult

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(autouse=True, scope="module")
def closed_models() -> Iterator[None]:
    yield
    run_sync(close_shared_models())


def run_workflow(name: str, question: str, model: str | None = None) -> tuple[RunResult, list[ToolCalled]]:
    async def go() -> RunResult:
        workflow = await Workflow.load(EXAMPLES / name, model=model)
        try:
            return await workflow.arun({"question": question})
        finally:
            await workflow.aclose()

    calls: list[ToolCalled] = []
    with listen(lambda e: calls.append(e) if isinstance(e, ToolCalled) else None):
        result = run_sync(go())
    return result, calls


@pytest.mark.parametrize(("question", "answer"), [("What is 17 * 23?", "391"),
                                                  ("What is 2 to the power of 10?", "1024")])
def test_the_analyst_computes_with_the_python_tool(question: str, answer: str) -> None:
    result, calls = run_workflow("analyst.yaml", question)
    state = result.state
    assert result.status == "done" and answer in state.output
    assert calls and calls[0].call.name == "python" and answer in calls[0].observation.content


def test_a_yaml_team_runs_to_completion_with_structured_output() -> None:
    result, calls = run_workflow("team.yaml", "What is 17 * 23?")
    state = result.state
    assert result.status == "done"
    assert [s.agent for s in state.messages] == ["analyst", "reporter"]
    assert state.output["answer"] == 391 and isinstance(state.output["confidence"], int | float)
    assert calls and calls[0].call.name == "python"


class Capital(BaseModel):
    country: str
    capital: str


def test_structured_output_validates_on_the_embedded_model() -> None:
    result = Agent("geo", instructions="Answer with the country and its capital.", output=Capital,
                   max_tokens=48).run("What is the capital of France?")
    assert isinstance(result.output, Capital) and result.output.capital.strip()


def test_the_same_configs_run_against_baobab_serve(server: str, server_key: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAOBAB_API_KEY", server_key)
    result, calls = run_workflow("analyst.yaml", "What is 17 * 23?", model=server)
    assert result.status == "done" and "391" in result.state.output
    assert calls and calls[0].call.name == "python"
    team, _ = run_workflow("team.yaml", "What is 17 * 23?", model=server)
    assert set(team.state.output) == {"answer", "confidence"}
