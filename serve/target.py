"""A workflow or graph offered to others (MCP tools, A2A agents, AG-UI streams): what it is called, which inputs it
takes (a JSON schema), how a message (text or a JSON object) becomes its graph's input, and its runs by thread.

>>> target = graph_target(graph.compile(checkpointer="sqlite:///runs.db"))  # doctest: +SKIP
>>> await target.open(); target.input("What is 2 + 2?")  # doctest: +SKIP
{'task': 'What is 2 + 2?'}
"""

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baobab.agents import Workflow, pipeline, read_config
from baobab.agents.agent import close_shared_models
from baobab.agents.config import InputEntry
from baobab.errors import BaobabError
from baobab.graphs import App, Event, ThreadInfo
from baobab.graphs.progress import MISSING

TASK = {"type": "object", "properties": {"task": {"type": "string", "description": "What to do."}},
        "required": ["task"]}


class OfferError(BaobabError, ValueError):
    """A target that cannot be offered (no checkpointer, a search: section, a name or input that clashes)."""


class InputError(BaobabError, ValueError):
    """A message or call the target cannot take as asked; the text names what it expects."""


@dataclass
class Target:
    """A runnable graph with what a tool list or an agent card says of it. Made by `graph_target`, `workflow_target`
    or an open workflow target's `agents()`; call `await open()` in the serving event loop before `app` is used and
    `await aclose()` after."""

    name: str
    description: str
    input_schema: dict[str, Any]  # the inputs, as the JSON schema of an object
    text_input: str | None  # the input a plain-text message fills (None: send a JSON object)
    examples: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    version: str = "1.0.0"  # what its Agent Card says: raise it when the inputs or the answers change shape
    _app: App | None = None
    _start: Callable[[dict[str, Any]], dict[str, Any]] = dict  # the inputs given -> the run's input
    running: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext  # wraps each run: a workflow's budget
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

    @property
    def inputs(self) -> dict[str, str]:
        """Each input's name and what it is: its description, else its JSON type."""
        return {name: _what(schema) for name, schema in self.input_schema.get("properties", {}).items()}

    async def open(self) -> None:
        """Build what runs: a YAML workflow's agents, tools and graph (in the loop that will run them)."""
        if self._app is None and self._path is not None:
            workflow = self._workflow = await Workflow.load(self._path, model=self._model)
            self._app = workflow.compile(self._checkpointer)
            self._start, self.running = lambda given: {"task": workflow.task(given)}, workflow.spending

    async def aclose(self) -> None:
        """Close a workflow's tools and the models its agents loaded."""
        if self._workflow is not None:
            await self._workflow.aclose()
            await close_shared_models()
            self._workflow, self._app = None, None

    def agents(self) -> list["Target"]:
        """Each agent of this open YAML workflow as a target of its own, named NAME.AGENT, that takes a task (its
        runs count against the workflow's run budget; closing this target closes theirs).

        >>> [t.name for t in target.agents()]  # doctest: +SKIP
        ['team.analyst', 'team.writer']
        """
        if self._workflow is None:
            raise RuntimeError(f"target {self.name!r} is not an open YAML workflow: await target.open() first")
        return [Target(f"{self.name}.{agent.name}", f"Agent {agent.name}: {agent.description}", TASK, "task",
                       tags=[agent.name], _start=_task, running=self._workflow.spending,
                       _app=pipeline([agent], name=f"{self.name}.{agent.name}").compile(self._checkpointer))
                for agent in self._workflow.agents.values()]

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
        return self._start(given)

    def thread(self, name: str) -> ThreadInfo | None:
        """The thread `name` of this target's graph, or None when there is none yet.

        Raises InputError for a thread of another graph, or one running now (another request's).
        """
        info = self.app.require_checkpointer("serve").thread(name)
        if info is not None and info.graph != self.app.graph.name:
            raise InputError(f"thread {name!r} is a run of {info.graph!r}, not of {self.app.graph.name!r}: "
                             f"give another thread")
        if info is not None and info.status == "running":
            raise InputError(f"thread {name!r} is running now (another call): wait for it to end")
        return info

    def events(self, thread: str, content: Any = None, *, resume: bool = False, value: Any = MISSING,
               tokens: bool = False) -> AsyncIterator[Event]:
        """The events of a run on `thread`: a new run (a finished thread's next) for the message `content`, or with
        `resume` the thread's unfinished run continued from its last checkpoint, `value` answering its interrupt.

        Raises InputError, before anything runs, for a bad message or a thread `thread()` refuses.

        >>> async for event in target.events("t1", "What is 2 + 2?"):  # doctest: +SKIP
        ...     print(event)
        """
        info = self.thread(thread)
        if not resume:
            return self.app.astream(self.input(content), thread=thread, tokens=tokens)
        if info is None or info.status == "done":
            raise InputError(f"resume: thread {thread!r} has no interrupted run to continue")
        return self.app.astream_resume(thread, value=value, tokens=tokens)


def graph_target(app: App) -> Target:
    """A compiled graph as a target: its state's fields are the inputs; text fills `task`, or the one required field.

    >>> graph_target(graph.compile(checkpointer=store)).inputs  # doctest: +SKIP
    {'task': 'string', 'answer': 'string'}
    """
    if app.checkpointer is None:
        raise OfferError(f"graph {app.graph.name!r}: compile it with a checkpointer, where its runs' threads are kept "
                         f"(compile(checkpointer='sqlite:///runs.db'))")
    model = app.schema.model
    required = [name for name, f in model.model_fields.items() if f.is_required()]
    text = "task" if "task" in model.model_fields else required[0] if len(required) == 1 else None
    doc = (model.__doc__ or "").strip()
    nodes = ", ".join(app.graph.nodes)
    return Target(app.graph.name, doc or f"A Baobab graph over {model.__name__} (nodes: {nodes}).",
                  model.model_json_schema(), text, tags=list(app.graph.nodes), _app=app)


def workflow_target(path: str | Path, *, checkpointer: Any, model: str | None = None) -> Target:
    """A YAML workflow as a target whose runs' threads `checkpointer` keeps (a Store or its URL), its config checked
    now (ConfigError) and its agents built by `open()`.

    >>> workflow_target("examples/team.yaml", checkpointer=Store()).inputs  # doctest: +SKIP
    {'question': 'string'}
    """
    config, _ = read_config(path, model=model)
    if config.search is not None:
        raise OfferError(f"{path}: a workflow with a search: section is run by `baobab run`; serving runs the "
                         f"workflow's graph once per task: remove the section to serve it")
    flow = config.workflow
    declared = config.inputs or {"task": InputEntry(description="the task")}
    properties = {name: {"type": entry.type,  # a declared input's type is a JSON schema type
                         **entry.model_dump(include={"description", "default"}, exclude_defaults=True)}
                  for name, entry in declared.items()}
    schema = {"type": "object", "properties": properties,
              "required": [name for name, entry in declared.items() if entry.default is None]}
    examples = [str(e.default) for e in config.inputs.values() if e.default is not None]
    agents = ", ".join(f"{name} ({entry.role})" if entry.role else name for name, entry in config.agents.items())
    name = Path(path).stem if not Path(path).is_dir() else Path(path).resolve().name
    return Target(name, flow.description or f"A Baobab {flow.type} workflow of agents {agents}.", schema,
                  next(iter(declared)) if len(declared) == 1 else None, examples, list(config.agents),
                  _path=str(path), _model=model, _checkpointer=checkpointer)


def _task(given: dict[str, Any]) -> dict[str, Any]:
    """An agent target's input: the task alone."""
    if not isinstance(given.get("task"), str):
        raise InputError(f"task: expected a string, got {given.get('task')!r}")
    return {"task": given["task"]}


def _what(schema: dict[str, Any]) -> str:
    """What a JSON schema describes, in a few words: its description, else its type (or types, or model)."""
    if schema.get("description"):
        return str(schema["description"])
    return " | ".join(str(s.get("type") or s.get("$ref", "any").rsplit("/", 1)[-1])
                      for s in schema.get("anyOf", [schema]))


def _object(text: str) -> dict[str, Any] | None:
    """`text` as a JSON object, or None when it is not one."""
    if not text.lstrip().startswith("{"):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
