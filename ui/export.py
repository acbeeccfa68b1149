"""`baobab trace export RUN --html out.html`: one run's views in one self-contained HTML file.

The viewer's page with its scripts inlined and, in place of the API, the answers it would ask for
(the run, every checkpoint's state): open it anywhere, offline. Forking needs the live app.
"""

import json
import re
from pathlib import Path
from typing import Any

from baobab.store import Store
from baobab.ui import data


def export_html(store: Store, run: str, path: str | Path, apps: data.Apps | None = None) -> Path:
    """Write `run` (`thread:NAME`, `search:NAME`, `agent:ID`, or a bare thread or search name) to `path`.

    >>> export_html(Store("sqlite:///runs.db"), "t1", "t1.html")  # doctest: +SKIP
    """
    answers, route = _answers(store, run, apps)
    answers["/api/runs"] = _only(data.runs(store), route)
    out = Path(path)
    out.write_text(page(answers, route))
    return out


def page(answers: dict[str, Any], route: str) -> str:
    """The viewer's page, scripts and styles inlined, answering API `path`s from `answers`, showing `route`.

    >>> "BAOBAB_DATA" in page({"/api/runs": {"threads": [], "searches": [], "traces": []}}, "")
    True
    """
    html = (data.STATIC / "index.html").read_text()
    html = re.sub(r'<script src="static/([^"]+)"></script>',
                  lambda m: "<script>" + _script((data.STATIC / m.group(1)).read_text()) + "</script>", html)
    html = re.sub(r'<link rel="stylesheet" href="static/([^"]+)">',
                  lambda m: "<style>" + (data.STATIC / m.group(1)).read_text() + "</style>", html)
    inline = json.dumps({"route": route, "answers": answers}, default=repr)
    return html.replace("<!--DATA-->", f"<script>window.BAOBAB_DATA = {_script(inline)};</script>")


def _answers(store: Store, run: str, apps: data.Apps | None) -> tuple[dict[str, Any], str]:
    kind, _, name = run.partition(":") if ":" in run else ("", "", run)
    if kind in ("", "thread"):
        try:
            thread = data.thread(store, name)
        except data.NotFound:
            if kind:
                raise
        else:
            answers: dict[str, Any] = {f"/api/thread/{name}": thread}
            for c in thread["checkpoints"]:
                answers[f"/api/state/{c['id']}"] = data.state(store, c["id"], apps)
            return answers, f"thread/{name}"
    if kind in ("", "search"):
        try:
            return {f"/api/search/{name}": data.search(store, name)}, f"search/{name}"
        except data.NotFound:
            if kind:
                raise
    if kind == "agent":
        return {f"/api/trace/{run}": data.trace(store, run)}, f"trace/{run}"
    raise data.NotFound(f"no thread, search or agent run named {run!r} (try thread:NAME, search:NAME, agent:ID)")


def _only(runs: dict[str, Any], route: str) -> dict[str, Any]:
    """The run list cut to the exported run: the file shares one run, not the store's index."""
    kind, _, name = route.partition("/")
    keys = {"thread": ("threads", "name"), "search": ("searches", "name"), "trace": ("traces", "run")}
    listed, key = keys[kind]
    return {section: [r for r in rows if section == listed and r[key] == name] for section, rows in runs.items()}


def _script(text: str) -> str:
    """Text safe inside <script>: a literal `</script` would end the element early (JS reads `<\\/` as `</`)."""
    return re.sub(r"</(script)", r"<\/\1", text, flags=re.IGNORECASE).replace("<!--", "<\\!--")
