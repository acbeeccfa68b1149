"""End to end on the embedded model: an agent node's real model calls are recorded (tokens, time, drafted and
accepted tokens) and shown by an exported trace in Chromium."""

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import scenes
from browser import off_loop, open_view

from baobab.agents import Agent
from baobab.agents.agent import close_shared_models
from baobab.aio import run_sync
from baobab.graphs import END, START, Graph
from baobab.store import Store
from baobab.ui import data


@pytest.fixture(autouse=True, scope="module")
def closed_models() -> Iterator[None]:
    yield
    off_loop(run_sync, close_shared_models())


def test_model_calls_on_the_embedded_model_are_recorded_and_shown(page: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'e2e.db'}"
    store = Store(url)
    echo = Agent("echo", model="local:smollm2-135m", max_tokens=12, instructions="Repeat the text exactly.")

    async def say(state: scenes.Report) -> dict[str, object]:
        return {"answer": (await echo.arun(state.task)).text}

    app = Graph(scenes.Report, name="echo").node("say", say).edge(START, "say").edge("say", END).compile(
        checkpointer=store)
    task = "the cat sat on the mat, the cat sat on the mat, the cat sat on the mat"
    off_loop(app.run, {"task": task}, thread="e2e")
    (model,) = [s for s in data.run_spans(store, "thread:e2e") if s["kind"] == "model"]
    attrs = model["attrs"]
    assert attrs["prompt_tokens"] > 10 and 0 < attrs["completion_tokens"] <= 12 and attrs["total_time"] > 0
    assert 0 <= attrs["accepted_tokens"] <= attrs["drafted_tokens"] and model["ended"] > model["started"]
    out = tmp_path / "e2e.html"
    done = subprocess.run(["baobab", "trace", "export", "thread:e2e", "--db", url, "--html", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    open_view(page, out.as_uri(), "thread")
    shown = page.get_by_test_id("span-model").inner_text()
    assert f"{attrs['prompt_tokens']} prompt + {attrs['completion_tokens']} completion tokens" in shown
    if attrs["drafted_tokens"]:
        assert f"accepted {attrs['accepted_tokens']}/{attrs['drafted_tokens']} drafted" in shown
