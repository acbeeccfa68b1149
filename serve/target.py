"""A workflow or graph served to other agents (A2A, AG-UI): what it is called, which inputs it takes, and how a
message (text or a JSON object) becomes its graph's input.

>>> target = graph_target(graph.compile(checkpointer="sqlite:///runs.db"))  # doctest: +SKIP
>>> await target.open(); target.input("What is 2 + 2?")  # doctest: +SKIP
{'task': 'What is 2 + 2?'}
"""

import contextlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baobab.agents import Workflow, read_config
from baobab.agents.agent import close_shared_models
from baobab.errors import BaobabError
from baobab.graphs import App


class InputError(BaobabError, ValueError):
    """A message the target cannot take as its input; the text names the inputs it expects."""


@dataclass
class Target:
    """A runnable graph with what an agent card says of it. Made by `graph_target` or `workflow_target`; call
    `await open()` in the serving event loop before `app` is used and `await aclose()` after."""

    name: str
    description: str
    inputs: dict[str, str]  # each input's name and what it is
    text_input: str | None  # the input a plain-text message fills (None: send a JSON object)
    examples: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    version: str = "1.0.0"  # what its Agent Card says: raise it when the inputs or the answers change shape
    _app: App | None = None
    _path: str | None = None  # a YAML workflow, loaded by open()
    _model: str | None = None
    _checkpointer: Any = None
    _workflow: Workflow | None = None

    @property
    def app(self) -> App:
        """The compiled graph (once `open()` has run)."""
        if self._app is None:
            raise RuntimeError(f"target {self.name!r} is not open: await target.open() first")
        return self._app

    async def open(self) -> None:
        """Build what runs: a YAML workflow's agents, tools and graph (in the loop that will run them)."""
        if self._app is None and self._path is not None:
            self._workflow = await Workflow.load(self._path, model=self._model)
            self._app = self._workflow.compile(self._checkpointer)

    async def aclose(self) -> None:
        """Close a workflow's tools and the models its agents loaded."""
        if self._workflow is not None:
            await self._workflow.aclose()
            await close_shared_models()
            self._workflow, self._app = None, None

    def input(self, content: Any) -> dict[str, Any]:
        """The graph's input for a message: a JSON object gives the inputs by name; other text fills `text_input`.

        Raises InputError (or a workflow's ConfigError) naming the inputs expected.
        """
        if not isinstance(content, str | Mapping):
            raise InputError(f"{self.name} takes text or a JSON object of inputs {sorted(self.inputs)}, got "
                             f"{type(content).__name__} {json.dumps(content)[:80]}")
        given = _object(content) if isinstance(content, str) else dict(content)
        if given is None:
            if self.text_input is None:
                raise InputError(f"{self.name} takes the inputs {sorted(self.inputs)}: send them as a JSON object, "
                                 f"e.g. {json.dumps(dict.fromkeys(self.inputs, '...'))}")
            given = {self.text_input: content}
        if self._workflow is not None:
            return {"task": self._workflow.task(given)}
        return given

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Around a run: a workflow's run budget counts the model calls made inside."""
        with self._workflow.spending() if self._workflow is not None else contextlib.nullcontext():
            yield


def graph_target(app: App) -> Target:
    """A compiled graph as a target: its state's fields are the inputs; text fills `task`, or the one required field.

    >>> graph_target(graph.compile(checkpointer=store)).inputs  # doctest: +SKIP
    {'task': 'str', 'answer': 'str'}
    """
    if app.checkpointer is None:
        raise InputError(f"graph {app.graph.name!r} needs a checkpointer to be served: runs are resumed by thread "
                         f"(compile(checkpointer='sqlite:///runs.db'))")
    fields = app.schema.model.model_fields
    required = [name for name, f in fields.items() if f.is_required()]
    text = "task" if "task" in fields else required[0] if len(required) == 1 else None
    doc = (app.schema.model.__doc__ or "").strip()
    nodes = ", ".join(app.graph.nodes)
    return Target(app.graph.name, doc or f"A Baobab graph over {app.schema.model.__name__} (nodes: {nodes}).",
                  {name: str(f.description or getattr(f.annotation, "__name__", None) or f.annotation)
                   for name, f in fields.items()}, text, tags=list(app.graph.nodes), _app=app)


def workflow_target(path: str | Path, *, model: str | None = None, checkpointer: Any = None) -> Target:
    """A YAML workflow as a target, its config checked now (ConfigError) and its agents built by `open()`.

    >>> workflow_target("examples/team.yaml", checkpointer=Store()).inputs  # doctest: +SKIP
    {'question': 'string'}
    """
    config, _ = read_config(path, model=model)
    if config.search is not None:
        raise InputError(f"{path}: a workflow with a search: section is run by `baobab run`; serving runs the "
                         f"workflow's graph once per task: remove the section to serve it")
    flow = config.workflow
    declared = {name: entry.description or entry.type for name, entry in config.inputs.items()}
    inputs = declared or {"task": "the task"}
    examples = [str(e.default) for e in config.inputs.values() if e.default is not None]
    agents = ", ".join(f"{name} ({entry.role})" if entry.role else name for name, entry in config.agents.items())
    name = Path(path).stem if not Path(path).is_dir() else Path(path).resolve().name
    return Target(name, f"A Baobab {flow.type} workflow of agents {agents}.", inputs,
                  next(iter(inputs)) if len(inputs) == 1 else None, examples, list(config.agents),
                  _path=str(path), _model=model, _checkpointer=checkpointer)


def _object(text: str) -> dict[str, Any] | None:
    """`text` as a JSON object, or None when it is not one."""
    if not text.lstrip().startswith("{"):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
