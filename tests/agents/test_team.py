"""Teams as graphs on scripted models: pipelines, a supervisor, handoffs; they checkpoint and resume."""

import json
from pathlib import Path

import pytest

from baobab.agents import Agent, TeamState, handoffs, pipeline, supervisor
from baobab.engine import Choice, Request, ScriptedLLM, ToolCall
from baobab.graphs import NodeError


def prompt_of(request: Request) -> str:
    return "\n".join(m.content or "" for m in request.messages or [])


def test_a_pipeline_passes_each_agents_work_to_the_next() -> None:
    researcher = Agent("researcher", role="finds facts", model=ScriptedLLM(["Baobabs store water."]))
    writer_llm = ScriptedLLM(lambda r: "Baobabs: water towers." if "researcher: Baobabs store water." in
                             prompt_of(r) else "no facts seen")
    writer = Agent("writer", role="writes", model=writer_llm)
    result = pipeline([researcher, writer]).compile().run({"task": "Explain baobabs"})
    state = result.state
    assert isinstance(state, TeamState)
    assert [(s.agent, s.content) for s in state.messages] == [
        ("researcher", "Baobabs store water."), ("writer", "Baobabs: water towers.")]
    assert state.output == "Baobabs: water towers."


def test_a_supervisor_picks_agents_until_it_finishes() -> None:
    picks = iter(["writer", "checker", "FINISH"])
    boss = ScriptedLLM(lambda r: json.dumps({"choice": next(picks)}))
    writer = Agent("writer", role="writes drafts", model=ScriptedLLM(["draft"]))
    checker = Agent("checker", role="checks drafts", model=ScriptedLLM(["checked"]))
    state = supervisor([writer, checker], model=boss).compile().run({"task": "Write"}).state
    assert [s.agent for s in state.messages] == ["writer", "checker"] and state.output == "checked"
    first = boss.requests[0]
    assert "- writer: writes drafts" in str(first.messages[0].content) and first.json_schema is not None
    assert first.json_schema["properties"]["choice"]["enum"] == ["writer", "checker"]  # FINISH once work was done
    assert boss.requests[1].json_schema["properties"]["choice"]["enum"] == ["writer", "checker", "FINISH"]


def test_a_supervisor_stops_after_max_rounds() -> None:
    boss = ScriptedLLM([json.dumps({"choice": "worker"})], cycle=True)
    worker = Agent("worker", model=ScriptedLLM(["again"], cycle=True))
    state = supervisor([worker], model=boss, max_rounds=3).compile().run({"task": "t"}).state
    assert len(state.messages) == 3 and len(boss.requests) == 3


def test_an_agent_hands_off_with_a_message() -> None:
    transfer = Choice(tool_calls=[ToolCall(id="h", name="transfer_to_billing", arguments='{"message": "refund"}')])
    triage_llm = ScriptedLLM([transfer])
    triage = Agent("triage", model=triage_llm, handoffs=["billing", "support"])
    billing = Agent("billing", model=ScriptedLLM(lambda r: "refunded" if "triage: refund" in prompt_of(r) else "?"))
    support = Agent("support", model=ScriptedLLM(["unused"]))
    state = handoffs([triage, billing, support]).compile().run({"task": "I was charged twice"}).state
    assert [(s.agent, s.content) for s in state.messages] == [("triage", "refund"), ("billing", "refunded")]
    assert [t.name for t in triage_llm.requests[0].tools or []] == ["transfer_to_billing", "transfer_to_support"]


def test_handoffs_to_strangers_are_refused() -> None:
    with pytest.raises(ValueError, match=r"hands off to \['legal'\], which are not in the team"):
        handoffs([Agent("triage", handoffs=["legal"])])


def test_a_failed_team_run_resumes_without_redoing_finished_agents(tmp_path: Path) -> None:
    first = ScriptedLLM(["facts"], cycle=True)
    flaky_replies: list[str | Exception] = [RuntimeError("model down"), "summary"]

    def flaky(request: Request) -> str:
        reply = flaky_replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    team = pipeline([Agent("researcher", model=first), Agent("writer", model=ScriptedLLM(flaky))])
    app = team.compile(checkpointer=f"sqlite:///{tmp_path / 'runs.db'}")
    with pytest.raises(NodeError, match="model down"):
        app.run({"task": "t"}, thread="team-1")
    result = app.resume("team-1")
    assert result.status == "done" and result.state.output == "summary"
    assert len(first.requests) == 1  # the researcher's answer came from its checkpoint
    assert [s.agent for s in result.state.messages] == ["researcher", "writer"]
