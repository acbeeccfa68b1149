"""`baobab ui --app FILE.py:NAME`: the named graph's threads get exact states and validated forks."""

import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
from browser import off_loop

from baobab.graphs import Checkpointer
from baobab.store import Store

GRAPH = '''
from typing import Annotated
from pydantic import BaseModel
from baobab.graphs import END, START, Graph

def longest(current: str, update: str) -> str:
    return max(current, update, key=len)

class Words(BaseModel):
    word: Annotated[str, longest] = ""
    count: int = 0

graph = (Graph(Words, name="words").node("a", lambda s: {"word": "tree", "count": s.count + 1})
         .node("b", lambda s: {"word": "oak", "count": s.count + 1}).edge(START, "a").edge("a", "b").edge("b", END))
'''


def test_ui_with_an_app_replays_custom_reducers_and_validates_forks(tmp_path: Path, port_finder: Callable[[], int],
                                                                    serving: Callable[..., None]) -> None:
    source = tmp_path / "words.py"
    source.write_text(GRAPH)
    url = f"sqlite:///{tmp_path / 'w.db'}"
    done = subprocess.run(["baobab", "run", f"{source}:graph", "--input", "{}", "--thread", "w", "--db", url],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    last = off_loop(lambda: Checkpointer(Store(url)).history(Checkpointer(Store(url)).thread("w").id, "w")[0])
    port = port_finder()
    server = subprocess.Popen(["baobab", "ui", "--db", url, "--port", str(port), "--app", f"{source}:graph"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        serving(server, f"{base}/api/runs")
        state = httpx.get(f"{base}/api/state/{last.id}").json()
        assert state["exact"] and state["state"] == {"word": "tree", "count": 2}  # `longest` kept "tree"
        bad = httpx.post(f"{base}/api/fork", json={"checkpoint": last.id, "update": {"count": "many"}})
        assert bad.status_code == 400 and "count" in bad.json()["error"]
        good = httpx.post(f"{base}/api/fork", json={"checkpoint": last.id, "update": {"count": 7}})
        assert good.status_code == 200 and Checkpointer(Store(url)).thread(good.json()["thread"]) is not None
    finally:
        server.terminate()
        server.wait(timeout=30)
