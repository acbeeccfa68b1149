"""The `baobab` command: run graphs, look at threads, draw graphs."""

import contextlib
import importlib.util
import json
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from baobab import __version__
from baobab.errors import MissingExtraError


class _Commands(TyperGroup):
    """The `baobab` command group: a StoreError from any command (a corrupt database file, a full disk) or a missing
    optional extra is one line on stderr and exit status 1, not a traceback."""

    def invoke(self, ctx: Any) -> Any:  # click's Context, vendored by newer typers as typer._click
        try:
            return super().invoke(ctx)
        except Exception as exc:
            # whatever raised a StoreError imported the store; importing it here would slow every command down
            store = sys.modules.get("baobab.store.db")
            if not isinstance(exc, MissingExtraError) and (store is None or not isinstance(exc, store.StoreError)):
                raise
            print_error(str(exc))
            raise typer.Exit(1) from exc


app = typer.Typer(help="Baobab: agent graphs with durable, resumable runs.", no_args_is_help=True, cls=_Commands)
threads_app = typer.Typer(help="List, inspect, prune and delete stored threads.", no_args_is_help=True)
graph_app = typer.Typer(help="Draw graphs.", no_args_is_help=True)
search_app = typer.Typer(help="Look at stored searches.", no_args_is_help=True)
memory_app = typer.Typer(help="Add to, search and draw a Zettelkasten memory.", no_args_is_help=True)
trace_app = typer.Typer(help="Share recorded runs.", no_args_is_help=True)
app.add_typer(threads_app, name="threads")
app.add_typer(graph_app, name="graph")
app.add_typer(search_app, name="search")
app.add_typer(memory_app, name="memory")
app.add_typer(trace_app, name="trace")
console = Console()
errors = Console(stderr=True)  # colour in a terminal, plain text in a pipe (rich looks at the stream)

DbOption = Annotated[str | None, typer.Option("--db", help="Database URL (default: $BAOBAB_DB_URL, else "
                                              "sqlite in $BAOBAB_DATA_DIR or ./.baobab).")]


def print_error(message: str, *, located: bool = False) -> None:
    """Print an error to stderr, one line per problem: red in a terminal, plain text in a pipe, never read as markup
    and never wrapped. `located` lines (a ConfigError's) start with where, `file:line: field: ...`, which is kept
    first; other lines get `error: ` before them.

    >>> print_error("disk on fire")  # doctest: +SKIP
    error: disk on fire
    """
    for line in message.splitlines() or [""]:
        if located:
            text = Text(line)
            text.stylize("bold red", 0, line.find(": ") + 1)
        else:
            text = Text.assemble(("error:", "bold red"), " ", line)
        errors.print(text, soft_wrap=True, highlight=False)


def _version(value: bool) -> None:
    if value:
        console.print(f"baobab {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="Print the version and exit.")] = False) -> None:
    """Baobab's command line."""


def load_target(target: str) -> Any:
    """The object named by `FILE.py:name` (a Graph or a compiled App).

    >>> load_target("examples/quickstart.py:graph")  # doctest: +SKIP
    """
    path_text, sep, attr = target.rpartition(":")
    if not sep or not path_text or not attr:
        raise typer.BadParameter(f"{target!r}: expected FILE.py:NAME, e.g. examples/quickstart.py:graph")
    path = Path(path_text)
    if not path.is_file():
        raise typer.BadParameter(f"{target!r}: file {path_text!r} not found")
    spec = importlib.util.spec_from_file_location(f"_baobab_target_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise typer.BadParameter(f"{target!r}: {path_text!r} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent.resolve()))  # let the file import its neighbours
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent.resolve()))
    if not hasattr(module, attr):
        names = sorted(n for n in vars(module) if not n.startswith("_"))
        raise typer.BadParameter(f"{target!r}: {path_text} has no {attr!r}; it defines {names}")
    return getattr(module, attr)


def _app(target: str, db: str | None) -> Any:
    from baobab.graphs import App, Graph
    from baobab.store import Store

    obj = load_target(target)
    if isinstance(obj, Graph):
        return obj.compile(checkpointer=Store(db))
    if isinstance(obj, App):
        return obj if obj.checkpointer is not None and db is None else obj.with_checkpointer(Store(db))
    raise typer.BadParameter(f"{target!r} is a {type(obj).__name__}; expected a baobab Graph or compiled App")


def _json_option(text: str | None, option: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"{option} is not valid JSON: {exc.msg} at line {exc.lineno} column "
                                 f"{exc.colno}") from exc


@app.command()
def run(
    target: Annotated[str, typer.Argument(help="A workflow FILE.yaml (or a directory of them), or FILE.py:NAME of "
                                               "a Graph or compiled App.")],
    input: Annotated[list[str] | None, typer.Option(
        "--input", "-i", help="KEY=VALUE (repeatable), or the whole input as a JSON object.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="YAML: use this model for every agent.")] = None,
    thread: Annotated[str | None, typer.Option("--thread", "-t", help="Thread id (default: new).")] = None,
    resume: Annotated[str | None, typer.Option("--resume", help="Continue this interrupted/failed thread.")] = None,
    value: Annotated[str | None, typer.Option("--value", help="JSON value for the interrupted node.")] = None,
    search: Annotated[str | None, typer.Option(
        "--search", help="YAML: search over runs with this strategy (mcts, best_of_n, beam, greedy, ...) instead "
                         "of the search: section's; the section names the reward. --thread names the search.")] = None,
    budget: Annotated[str | None, typer.Option(
        "--budget", help="With a search: N (model calls), or LIMIT=N,... with LIMIT among model_calls, "
                         "expansions, tokens, seconds, cost, e.g. expansions=20,model_calls=50.")] = None,
    db: DbOption = None,
    inputs: Annotated[Path | None, typer.Option(
        "--inputs", help="YAML: a batch run, one run per line of this JSONL file of inputs; --thread names the "
                         "batch (its runs are NAME-1, NAME-2, ...; the same command again resumes what did not end).")]
    = None,
    executor: Annotated[str, typer.Option("--executor", help="With --inputs: local (this process) or ray.")] = "local",
    address: Annotated[str | None, typer.Option("--address", help="With --executor ray: the cluster (host:6379, "
                                                "ray://host:10001, auto); default: a local Ray on 127.0.0.1.")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="With --executor ray: worker processes.")] = 2,
) -> None:
    """Run a workflow or graph and print its result; nodes, model calls and tool calls are shown live.

    A YAML workflow with a search: section (or --search) searches over runs and prints the best.
    """
    from baobab.agents import ConfigError

    if inputs is not None:
        _run_batch(target, inputs, model, thread, db, executor, address, workers)
        return
    if executor != "local" or address is not None:
        raise typer.BadParameter("an executor runs batch runs: give --inputs FILE.jsonl", param_hint="--executor")
    data = _inputs(input or [])
    resume_value = _json_option(value, "--value")
    limits = _budget(budget)
    workflow = None
    try:
        if target.endswith((".yaml", ".yml")) or Path(target).is_dir():
            from baobab.agents import Workflow
            from baobab.aio import run_sync
            from baobab.store import Store

            # the run's inputs are checked with the config, before any model loads (a resume takes none)
            workflow = run_sync(Workflow.load(target, model=model, inputs=None if resume is not None else data or {}))
            if search or limits or workflow.config.search is not None:
                _show_search(workflow, data or {}, Store(db), thread, search, limits)
                return
            graph_app_ = workflow.compile(Store(db))
            start = None if resume is not None else {"task": workflow.task(data or {})}
        elif search or limits:
            raise typer.BadParameter("searches over graphs run from YAML workflows, whose search: section names "
                                     "the choice points and the reward", param_hint="--search")
        else:
            graph_app_, start = _app(target, db), data
        with contextlib.ExitStack() as stack:
            if workflow is not None:
                stack.enter_context(workflow.spending())
            _show_run(graph_app_, target, start, thread, resume, value, resume_value, stack)
    except ConfigError as exc:
        print_error(str(exc), located=True)
        raise typer.Exit(2) from exc
    except (typer.Exit, typer.BadParameter):
        raise
    except Exception as exc:  # the run's record is in the store; show the cause and how to go on
        print_error(str(exc))
        if thread or resume:
            errors.print(f"continue: baobab run {target} --resume {resume or thread}", markup=False, highlight=False,
                         soft_wrap=True)
        raise typer.Exit(1) from exc
    finally:
        if workflow is not None:
            from baobab.agents.agent import close_shared_models
            from baobab.aio import run_sync

            run_sync(workflow.aclose())
            run_sync(close_shared_models())


def _run_batch(target: str, inputs: Path, model: str | None, prefix: str | None, db: str | None, executor: str,
               address: str | None, workers: int) -> None:
    """Run a YAML workflow once per input line on the executor; print one JSON line per input, then a count."""
    from baobab.agents import ConfigError
    from baobab.agents.agent import close_shared_models
    from baobab.agents.batch import close_workflows, read_inputs, run_workflow_batch
    from baobab.aio import run_sync
    from baobab.executors import executor as make_executor
    from baobab.store import Store

    if not (target.endswith((".yaml", ".yml")) or Path(target).is_dir()):
        raise typer.BadParameter("batch runs (--inputs) take a YAML workflow", param_hint="TARGET")
    try:
        rows = read_inputs(inputs)
        store = Store(db)  # made here, once: workers then open a database that has its tables
        store.close()
        pool = make_executor(executor, address, **({"workers": workers} if executor == "ray" else {}))
    except ConfigError as exc:
        print_error(str(exc), located=True)
        raise typer.Exit(2) from exc
    except (ValueError, OSError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--executor") from exc
    try:
        results = run_sync(run_workflow_batch(target, rows, db=store.url, executor=pool, model=model, prefix=prefix))
    except ConfigError as exc:
        print_error(str(exc), located=True)
        raise typer.Exit(2) from exc
    finally:
        run_sync(pool.aclose())
        run_sync(close_workflows())
        run_sync(close_shared_models())
    counts = {"done": 0, "interrupted": 0, "failed": 0}
    for number, result in enumerate(results, start=1):
        if isinstance(result, BaseException):
            counts["failed"] += 1
            print_error(f"input {number} failed: {result}")
            continue
        counts[result["status"]] += 1
        print(json.dumps({"input": number, "thread": result["thread"], "status": result["status"],
                          "output": result["state"].get("output")}))
    console.print(f"{len(rows)} inputs: " + ", ".join(f"{n} {status}" for status, n in counts.items()))
    if counts["failed"]:
        errors.print("continue: the same command again resumes the failed runs from their last checkpoints")
        raise typer.Exit(1)


def _show_run(graph_app_: Any, target: str, start: Any, thread: str | None, resume: str | None,
              value: str | None, resume_value: Any, stack: contextlib.ExitStack) -> None:
    from baobab.agents import listen
    from baobab.graphs import Interrupt, NodeEnd, NodeFailed, NodeStart, RunResult

    progress = Progress(console)
    stack.enter_context(listen(progress.agent_event))
    stack.enter_context(progress.live())
    if resume is not None:
        events = graph_app_.stream_resume(resume, **({} if value is None else {"value": resume_value}))
    else:
        events = graph_app_.stream(start, thread=thread)
    for event in events:
        if isinstance(event, NodeStart):
            progress.node = event.node
        elif isinstance(event, NodeEnd):
            console.print(f"[dim]step {event.step}[/] [bold]{event.node}[/] {event.seconds * 1000:.1f} ms")
        elif isinstance(event, NodeFailed):
            print_error(f"step {event.step} {event.node} failed: {event.error!r}")
        elif isinstance(event, Interrupt):
            console.print(f"[yellow]interrupted {event.when} {', '.join(event.nodes)}[/]"
                          + (f": {json.dumps(event.payload, default=repr)}" if event.payload is not None else ""))
        elif isinstance(event, RunResult):
            progress.stop()
            console.print_json(event.state.model_dump_json())
            if event.status == "done" and getattr(event.state, "output", None) is not None:
                console.print(f"[bold]result:[/] {json.dumps(event.state.output)}")  # type: ignore[attr-defined]
            console.print(f"thread [bold]{event.thread}[/] {event.status} at step {event.step}")
            if event.status == "interrupted":
                console.print(f"continue: baobab run {target} --resume {event.thread} --value JSON")


def _show_search(workflow: Any, inputs: dict[str, Any], store: Any, name: str | None, strategy: str | None,
                 limits: dict[str, Any] | None) -> None:
    from baobab.agents import listen
    from baobab.aio import run_sync

    progress = Progress(console)
    progress.node = "search"
    with listen(progress.agent_event), progress.live():
        found = run_sync(workflow.asearch(inputs, run=name, checkpointer=store, strategy=strategy, budget=limits))
        progress.stop()
    result, best = found.result, found.best
    console.print_json(best.state.model_dump_json())
    if getattr(best.state, "output", None) is not None:
        console.print(f"[bold]result:[/] {json.dumps(best.state.output)}")
    console.print(f"search [bold]{found.name}[/] best reward {result.reward:g} ({result.expansions} expansions, "
                  f"{result.model_calls} model calls, stopped by {result.stopped_by}); its run: thread "
                  f"{best.thread} checkpoint {best.checkpoint}")
    console.print(f"the tree: baobab search show {found.name}")


def _budget(text: str | None) -> dict[str, Any] | None:
    """--budget as search limits: N model calls, or LIMIT=N pairs."""
    from pydantic import ValidationError

    from baobab.search import SearchBudget

    if text is None:
        return None
    pairs = [p.partition("=") for p in text.split(",")] if not text.strip().isdigit() else [("model_calls", "=", text)]
    limits = {f"max_{key.strip()}": value.strip() for key, sep, value in pairs if sep}
    names = sorted(n.removeprefix("max_") for n in SearchBudget.model_fields)
    unknown = [key.strip() for key, sep, _ in pairs if not sep or f"max_{key.strip()}" not in SearchBudget.model_fields]
    if unknown:
        raise typer.BadParameter(f"{text!r}: expected N (model calls) or LIMIT=N,... with LIMIT among {names}",
                                 param_hint="--budget")
    try:
        return SearchBudget.model_validate(limits).model_dump(exclude_none=True)
    except ValidationError as exc:
        problem = exc.errors()[0]
        raise typer.BadParameter(f"{problem['loc'][0]}: {problem['msg']}", param_hint="--budget") from exc


class Progress:
    """The live status line of a run (node, model calls, tokens, tokens/s, time) and a line per tool call."""

    def __init__(self, out: Console) -> None:
        self.out, self.node, self.calls, self.tokens = out, "", 0, 0
        self.started = time.monotonic()
        self._live: Live | None = None

    @contextlib.contextmanager
    def live(self) -> Iterator[None]:
        with Live(self, console=self.out, refresh_per_second=4, transient=True) as live:
            self._live = live
            yield
        self._live = None

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()

    def agent_event(self, event: Any) -> None:
        from baobab.agents import ModelCalled, ToolCalled

        if isinstance(event, ModelCalled):
            self.calls += 1
            self.tokens += event.usage.completion_tokens
        elif isinstance(event, ToolCalled):
            shown = event.observation.content.strip().replace("\n", " ")
            self.out.print(f"  [cyan]{event.agent}[/] {event.call.name}({event.call.arguments[:80]}) -> "
                           f"{'[red]' if event.observation.error else ''}{shown[:100]}", markup=True, highlight=False)

    def __rich__(self) -> str:
        elapsed = time.monotonic() - self.started
        return (f"[bold]{self.node or '...'}[/] | {self.calls} model calls | {self.tokens} tokens | "
                f"{self.tokens / elapsed if elapsed else 0:.1f} tok/s | {elapsed:.1f} s")


def _inputs(items: list[str]) -> dict[str, Any] | None:
    """--input values: KEY=VALUE pairs and JSON objects, merged."""
    if not items:
        return None
    merged: dict[str, Any] = {}
    for item in items:
        if item.lstrip().startswith("{"):
            merged.update(_json_option(item, "--input"))
        elif "=" in item:
            key, _, text = item.partition("=")
            merged[key.strip()] = text
        else:
            raise typer.BadParameter(f"{item!r}: expected KEY=VALUE or a JSON object", param_hint="--input")
    return merged


@app.command()
def validate(
    target: Annotated[str, typer.Argument(help="A workflow FILE.yaml or a directory of them.")],
    input: Annotated[list[str] | None, typer.Option(
        "--input", "-i", help="KEY=VALUE (repeatable) or a JSON object: check these run inputs too.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Check this model instead of the file's, as "
                                              "`baobab run --model` uses it for every agent.")] = None,
) -> None:
    """Check a workflow config as `baobab run` does before loading any model, in one pass: schema, names, tool
    options, model strings and (with --input) the inputs. Each problem is one line: file:line: field: what was
    expected; exit status 2 if there is any."""
    from baobab.agents import ConfigError, read_config

    try:
        config, _ = read_config(target, inputs=_inputs(input or []), model=model)
    except ConfigError as exc:
        print_error(str(exc), located=True)
        raise typer.Exit(2) from exc
    console.print(f"{target}: ok ({len(config.agents)} agents, {config.workflow.type} workflow"
                  + (f", {config.search.strategy} search)" if config.search is not None else ")"), soft_wrap=True)


ModelOption = Annotated[str, typer.Option("--model", "-m", help="Model string: local:smollm2-135m (default), "
                                          "local:PATH, scripted:TEXT, a litellm name, or http://host:port/v1.")]


SERVE_SIZING = (
    "Sizing, local models: the embedded SmolLM2-135M holds about 570 MB resident once it has answered (torch "
    "itself about 230 MB of it; llama.cpp holds 207 MB for the same GGUF; python benchmarks/engine_startup.py). "
    "Each token a request keeps costs 45 KB of KV cache, taken from the OS as used: 8 concurrent requests of "
    "4,096 tokens reserve 1.5 GB of address space, a chat uses a few MB. The prefix cache keeps at most 512 MB "
    "of earlier prompts. The first start converts the weights and caches them on disk (250 MB in "
    "$BAOBAB_CACHE or ~/.cache/baobab; the 4 last used such files are kept); a start with that cache answers in "
    "about 1.5 s on 2 CPU cores.")


@app.command(epilog=SERVE_SIZING)
def serve(
    model: ModelOption = "local:smollm2-135m",
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="BAOBAB_API_KEY", show_envvar=True,
                                                help="Require this key (Authorization: Bearer KEY).")] = None,
    speculative: Annotated[bool, typer.Option(help="Local models: draft from earlier text and verify the "
                                                   "drafts (same outputs, fewer forwards).")] = True,
    max_pending: Annotated[int, typer.Option(min=1, help="Completions in progress at most; more are answered "
                                                         "503 with Retry-After at once.")] = 64,
    max_body: Annotated[int, typer.Option(min=1, help="Largest request body in bytes (default 4 MiB); a larger one is "
                                                      "answered 413 before it is read.")] = 4 * 2**20,
    alias: Annotated[list[str] | None, typer.Option(
        "--alias", help="Another model name to answer to (e.g. gpt-4o-mini); repeatable. Other names get 404.")]
    = None,
) -> None:
    """Serve a model over OpenAI-compatible HTTP APIs: /v1/chat/completions, /v1/completions, the Responses API
    (/v1/responses: input items, function tools, text.format, streamed events; nothing stored), /v1/models."""
    from baobab.serve.openai_server import create_app

    llm = _load_model(model, **({} if speculative or not model.startswith("local:") else {"speculative": False}))
    errors.print(f"serving [bold]{llm.name}[/] on http://{host}:{port}/v1" + (" (API key required)" if api_key else "")
                 + (f", also as {', '.join(alias)}" if alias else ""))
    import uvicorn  # after baobab.serve or baobab.ui, which name the extra to install if it is missing

    uvicorn.run(create_app(llm, api_key=api_key, aliases=alias or (), max_pending=max_pending, max_body=max_body),
                host=host, port=port, log_level="warning")


@app.command()
def mcp(
    targets: Annotated[list[str], typer.Argument(help="Workflow FILE.yaml files (or directories of them) and "
                                                      "FILE.py:NAME of Graphs or compiled Apps; each is one tool.")],
    transport: Annotated[str, typer.Option(help="stdio (a client starts this command) or http (streamable HTTP "
                                                "at http://HOST:PORT/mcp).")] = "stdio",
    host: Annotated[str, typer.Option(help="With --transport http: the address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="With --transport http: the port to listen on.")] = 8000,
    model: Annotated[str | None, typer.Option("--model", "-m", help="YAML: use this model for every agent.")] = None,
    db: DbOption = None,
    agents: Annotated[bool, typer.Option("--agents", help="YAML: offer each agent as a tool too "
                                                          "(WORKFLOW.AGENT, taking a task).")] = False,
) -> None:
    """Offer workflows and graphs as MCP tools: a call runs one to its end, with progress per node; a run's thread
    continues it after an interrupt or a restart."""
    from baobab.agents import ConfigError
    from baobab.aio import run_sync
    from baobab.serve.mcp_server import serve_mcp
    from baobab.serve.target import OfferError
    from baobab.store import Store

    if transport not in ("stdio", "http"):
        raise typer.BadParameter(f"expected stdio or http, got {transport!r}", param_hint="--transport")
    flows = [t for t in targets if t.endswith((".yaml", ".yml")) or Path(t).is_dir()]
    apps = [_app(t, db) for t in targets if t not in flows]
    where = "stdio" if transport == "stdio" else f"http://{host}:{port}/mcp"
    try:
        run_sync(serve_mcp(apps, flows, store=Store(db), model=model, agents=agents, transport=transport, host=host,
                           port=port, on_ready=lambda names: errors.print(
                               f"MCP tools {', '.join(names)} on {where}", markup=False, highlight=False)))
    except ConfigError as exc:
        print_error(str(exc), located=True)
        raise typer.Exit(2) from exc
    except OfferError as exc:
        print_error(str(exc))
        raise typer.Exit(2) from exc


@app.command("serve-agent")
def serve_agent(
    target: Annotated[str, typer.Argument(help="A workflow FILE.yaml (or a directory of them), or FILE.py:NAME of "
                                               "a Graph or compiled App.")],
    protocol: Annotated[str, typer.Option(help="a2a, agui or both.")] = "both",
    model: Annotated[str | None, typer.Option("--model", "-m", help="YAML: use this model for every agent.")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    url: Annotated[str | None, typer.Option(help="The URL clients reach this server at, for the Agent Card "
                                                 "(default: http://HOST:PORT/).")] = None,
    db: DbOption = None,
) -> None:
    """Serve a workflow or graph to other agents: over A2A (Agent Card at /.well-known/agent-card.json, JSON-RPC at
    /; a task's contextId is its thread, an interrupt asks for input) and AG-UI (POST /agui, server-sent events)."""
    from baobab.agents import ConfigError
    from baobab.serve.agent_app import PROTOCOLS, create_agent_app
    from baobab.serve.target import OfferError, graph_target, workflow_target
    from baobab.store import Store

    protocols = PROTOCOLS if protocol == "both" else (protocol,)
    if protocol != "both" and protocol not in PROTOCOLS:
        raise typer.BadParameter(f"expected a2a, agui or both, got {protocol!r}", param_hint="--protocol")
    try:
        if target.endswith((".yaml", ".yml")) or Path(target).is_dir():
            served = workflow_target(target, model=model, checkpointer=Store(db))
        elif model is not None:
            raise typer.BadParameter("--model replaces the models of a YAML workflow's agents", param_hint="--model")
        else:
            served = graph_target(_app(target, db))
    except ConfigError as exc:
        print_error(str(exc), located=True)
        raise typer.Exit(2) from exc
    except OfferError as exc:
        raise typer.BadParameter(str(exc), param_hint="TARGET") from exc
    public = url or f"http://{host}:{port}/"
    where = {"a2a": f"A2A (card: {public.rstrip('/')}/.well-known/agent-card.json)",
             "agui": f"AG-UI (POST {public.rstrip('/')}/agui)"}
    errors.print(Text(f"serving {served.name} over {' and '.join(where[p] for p in protocols)}"), soft_wrap=True)
    import uvicorn  # after baobab.serve or baobab.ui, which name the extra to install if it is missing

    uvicorn.run(create_agent_app(served, url=public, protocols=protocols), host=host, port=port, log_level="warning")


AppsOption = Annotated[list[str] | None, typer.Option(
    "--app", help="FILE.py:NAME of a Graph or App whose threads are shown (exact states, validated forks); "
                  "repeatable.")]


def _apps(targets: list[str] | None, db: str | None) -> dict[str, Any]:
    apps = [_app(t, db) for t in targets or ()]
    return {a.graph.name: a for a in apps}


@app.command()
def ui(
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    apps: AppsOption = None,
    memory: Annotated[str | None, typer.Option(help="Memory database URL for the memory view (default: --db).")]
    = None,
    allow_host: Annotated[list[str] | None, typer.Option(
        "--allow-host", help="Also answer requests for this host name (repeatable). Only loopback names and --host "
                             "are answered otherwise: another site's page cannot reach the viewer by pointing its "
                             "own name at this machine (DNS rebinding).")] = None,
) -> None:
    """The trace viewer in the browser: threads, searches, agent runs; graph, timeline, diff, fork; live."""
    from baobab.store import Store
    from baobab.ui.app import create_app

    store = Store(db)
    # the address it listens on is a name browsers use for it; a wildcard address is no one's name
    hosts = [*(allow_host or ()), *([host] if host not in ("0.0.0.0", "::") else [])]
    errors.print(f"trace viewer on http://{host}:{port}/ for {store.safe_url}")
    import uvicorn  # after baobab.serve or baobab.ui, which name the extra to install if it is missing

    uvicorn.run(create_app(store, _apps(apps, db), memory, allow_hosts=hosts), host=host, port=port,
                log_level="warning")


@trace_app.command("export")
def trace_export(
    run: Annotated[str, typer.Argument(help="thread:NAME, search:NAME, agent:ID, or a thread or search name.")],
    html: Annotated[Path, typer.Option("--html", help="The HTML file to write.")],
    db: DbOption = None,
    apps: AppsOption = None,
) -> None:
    """Write one run's views (graph, timeline, diffs or search tree) to one self-contained HTML file."""
    from baobab.store import Store
    from baobab.ui.data import NotFound
    from baobab.ui.export import export_html

    store = Store(db)
    try:
        out = export_html(store, run, html, _apps(apps, db))
    except NotFound as exc:
        print_error(f"{exc} in {store.safe_url}")
        raise typer.Exit(1) from exc
    console.print(f"wrote {out} ({out.stat().st_size // 1024} KB)")


@app.command()
def train(
    out: Annotated[Path, typer.Option("--out", help="The model directory to write (use it as --model local:OUT); "
                                                    "run again to resume from its last checkpoint.")],
    from_search: Annotated[list[str] | None, typer.Option(
        "--from-search", help="A stored search run's name or id (repeatable): its tree becomes training data.")] = None,
    data: Annotated[list[Path] | None, typer.Option(
        "--data", help="A JSONL file of chats or a dataset folder (repeatable), with or without searches.")] = None,
    prompt: Annotated[str | None, typer.Option(
        "--format", help="With --from-search: FILE.py:NAME of the PromptFormat the searches' proposer used.")] = None,
    split: Annotated[str | None, typer.Option(
        "--split", help="With --from-search: FILE.py:NAME of a Split whose held-out tasks may never enter.")] = None,
    base: Annotated[str, typer.Option("--base", help="The model to start from.")] = "local:smollm2-135m",
    method: Annotated[str, typer.Option(help="lora, or full (every weight; small models).")] = "lora",
    epochs: Annotated[int, typer.Option(help="Passes over the data.")] = 1,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps (default: the epochs).")] = None,
    batch_size: Annotated[int, typer.Option(help="Examples a step.")] = 8,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (default 2e-4 LoRA, 2e-5 full).")] = None,
    save_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = 50,
    device: Annotated[str, typer.Option(help="auto (a GPU if there is one), cpu or cuda.")] = "auto",
    db: DbOption = None,
) -> None:
    """Fine-tune a local model on what searches found (and on chat JSONL files) into a directory the engine loads."""
    from baobab.train import DatasetError, TrainConfig, TrainError
    from baobab.train import train as train_model

    sources: list[Path] = list(data or [])
    try:
        if from_search:
            if prompt is None:
                raise typer.BadParameter("--from-search needs --format FILE.py:NAME (the proposer's PromptFormat)")
            from baobab.store import default_url
            from baobab.train import build_dataset

            dataset = build_dataset(from_search, store=db or default_url(), prompt=load_target(prompt),
                                    split=load_target(split) if split else None)
            sources.append(dataset.write(out / "dataset").parent)
            errors.print(f"dataset: {dataset.counts()} in {out / 'dataset'}", markup=False, highlight=False)
        if not sources:
            raise typer.BadParameter("nothing to train on: give --from-search RUN or --data FILE")
        config = TrainConfig(method=method, epochs=epochs, max_steps=max_steps, batch_size=batch_size,
                             learning_rate=lr, save_every=save_every, device=device)
        result = train_model(base, sources, out, config, on_log=lambda r: errors.print(
            f"step {r['step']}/{r['of']} loss {r['loss']:.4f} {r['seconds']:.0f} s", markup=False, highlight=False))
    except (DatasetError, TrainError) as exc:
        print_error(str(exc))
        raise typer.Exit(1) from exc
    console.print(f"trained {result.steps} steps on {result.examples} examples ({result.trained_tokens} of "
                  f"{result.tokens} tokens learnt) on {result.device} in {result.seconds:.0f} s: use "
                  f"--model local:{out}", markup=False, highlight=False, soft_wrap=True)


@app.command()
def chat(
    model: ModelOption = "local:smollm2-135m",
    system: Annotated[str | None, typer.Option(help="A system message.")] = None,
    max_tokens: Annotated[int, typer.Option(help="Longest answer in tokens.")] = 512,
    temperature: Annotated[float, typer.Option(help="0 for greedy.")] = 0.7,
) -> None:
    """Chat with a model in the terminal; answers stream as they are written. Empty line or /exit quits."""
    from baobab.aio import run_sync

    llm = _load_model(model)
    messages: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    while True:
        try:
            text = console.input("[bold green]you>[/] ")
        except (EOFError, KeyboardInterrupt):
            break
        if not text.strip() or text.strip() == "/exit":
            break
        messages.append({"role": "user", "content": text})
        answer = []
        console.print("[bold blue]model>[/] ", end="")
        for piece in llm.stream_sync(messages=messages, max_tokens=max_tokens, temperature=temperature):
            answer.append(piece.text)
            console.print(piece.text, end="", markup=False, highlight=False)
        console.print()
        messages.append({"role": "assistant", "content": "".join(answer)})
    run_sync(llm.aclose())


def _load_model(model: str, **options: Any) -> Any:
    """The model, with a line on stderr that shows what loading a local one is doing; Ctrl-C exits with 130."""
    loading = _Loading(model.removeprefix("local:"))
    try:
        from baobab.engine import load_llm

        with loading.shown():
            return load_llm(model, **options, **({"progress": loading.step} if model.startswith("local:") else {}))
    except (ValueError, OSError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--model") from exc
    except KeyboardInterrupt:
        errors.print(f"interrupted while loading {model}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None


class _Loading:
    """`loading NAME: STEP 1.2 s`, one updating line in a terminal (a line per step in a pipe), then `ready in`."""

    def __init__(self, name: str) -> None:
        self.name, self.what, self.started = name, "starting", time.monotonic()
        self.stepped = False

    @contextlib.contextmanager
    def shown(self) -> Iterator[None]:
        """Show the line while loading; end with how long it took (only for models that report steps)."""
        with Live(self, console=errors, refresh_per_second=8, transient=True) if errors.is_terminal \
                else contextlib.nullcontext():
            yield
        if self.stepped:
            errors.print(Text(f"loading {self.name}: ready in {time.monotonic() - self.started:.1f} s"), soft_wrap=True)

    def step(self, what: str) -> None:
        """Called by the engine thread as each loading step begins."""
        self.what, self.stepped = what, True
        if not errors.is_terminal:
            errors.print(self.__rich__(), soft_wrap=True)

    def __rich__(self) -> Text:
        return Text(f"loading {self.name}: {self.what} {time.monotonic() - self.started:.1f} s")


@threads_app.command("list")
def threads_list(db: DbOption = None,
                 limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50) -> None:
    """The stored threads, most recently updated first."""
    from baobab.graphs import Checkpointer

    table = Table("thread", "graph", "status", "updated")
    for info in Checkpointer(db).threads(limit):
        table.add_row(info.name, info.graph, info.status, _time(info.updated))
    console.print(table)


@threads_app.command("show")
def threads_show(thread: Annotated[str, typer.Argument(help="Thread id.")], db: DbOption = None) -> None:
    """A thread's status and its checkpoints, newest first."""
    from baobab.graphs import Checkpointer

    checkpointer = Checkpointer(db)
    info = checkpointer.thread(thread)
    if info is None:
        print_error(f"no thread named {thread!r} in {checkpointer.store.safe_url}")
        raise typer.Exit(1)
    console.print(f"thread [bold]{info.name}[/] graph {info.graph} status [bold]{info.status}[/]"
                  + (f" forked from checkpoint {info.forked_from}" if info.forked_from else ""))
    if info.detail is not None:
        console.print_json(json.dumps(info.detail))
    table = Table("step", "checkpoint", "next", "snapshot", "time")
    for c in checkpointer.history(info.id, info.name):
        table.add_row(str(c.step), str(c.id), ", ".join(c.next) or "END", "yes" if c.snapshot else "",
                      _time(c.created))
    console.print(table)


@threads_app.command("prune")
def threads_prune(
    thread: Annotated[list[str] | None, typer.Argument(help="Threads to prune (default: all).")] = None,
    db: DbOption = None,
    keep_last: Annotated[int | None, typer.Option(help="Keep each thread's last N checkpoints.")] = None,
    older_than: Annotated[str | None, typer.Option(help="Delete checkpoints older than this: 7d, 12h, 30m.")] = None,
) -> None:
    """Delete old checkpoints; each thread keeps its last one, and forks and searches what they refer to."""
    from baobab.graphs import Checkpointer, CheckpointError
    from baobab.graphs.retention import duration

    try:
        age = duration(older_than) if older_than is not None else None
        removed = Checkpointer(db).prune(thread or None, keep_last=keep_last, older_than=age)
    except CheckpointError as exc:
        print_error(str(exc))
        raise typer.Exit(1) from exc
    console.print(Text(f"pruned {removed.checkpoints} checkpoints and {removed.writes} writes ({_size(removed.bytes)}) "
                       f"from {_names(removed.threads)}; {removed.kept} checkpoints kept"))


@threads_app.command("delete")
def threads_delete(
    thread: Annotated[list[str], typer.Argument(help="Threads to delete, with their subgraph threads and branches.")],
    db: DbOption = None,
) -> None:
    """Delete threads with all their checkpoints; refused while other threads or searches depend on them."""
    from baobab.graphs import Checkpointer, CheckpointError

    try:
        removed = Checkpointer(db).delete_thread(*thread)
    except CheckpointError as exc:
        print_error(str(exc))
        raise typer.Exit(1) from exc
    console.print(Text(f"deleted {_names(removed.threads)}: {removed.checkpoints} checkpoints and {removed.writes} "
                       f"writes ({_size(removed.bytes)})"))


def _names(threads: tuple[str, ...]) -> str:
    """`3 threads (a, b, c)`; past ten names, the count alone."""
    shown = f" ({', '.join(threads)})" if 0 < len(threads) <= 10 else ""
    return f"{len(threads)} thread{'' if len(threads) == 1 else 's'}{shown}"


def _size(chars: int) -> str:
    """Characters of JSON, which are about bytes: `812 B`, `12.3 KB`, `4.0 MB`."""
    return f"{chars} B" if chars < 1000 else f"{chars / 1000:.1f} KB" if chars < 1e6 else f"{chars / 1e6:.1f} MB"


@graph_app.command("draw")
def graph_draw(
    target: Annotated[str, typer.Argument(help="FILE.py:NAME of a Graph or compiled App.")],
    format: Annotated[str, typer.Option("--format", "-f", help="mermaid or dot.")] = "mermaid",
) -> None:
    """Print the graph as Mermaid (default) or DOT text."""
    from baobab.graphs import App, Graph

    obj = load_target(target)
    graph = obj.graph if isinstance(obj, App) else obj
    if not isinstance(graph, Graph):
        raise typer.BadParameter(f"{target!r} is a {type(obj).__name__}; expected a Graph or App")
    if format not in ("mermaid", "dot"):
        raise typer.BadParameter(f"--format must be mermaid or dot, got {format!r}")
    print(graph.to_mermaid() if format == "mermaid" else graph.to_dot())


@search_app.command("show")
def search_show(run: Annotated[str, typer.Argument(help="The search's name (what baobab run printed).")],
                db: DbOption = None,
                depth: Annotated[int | None, typer.Option(help="Show nodes down to this depth only.")] = None) -> None:
    """A stored search as a tree: each node's action, value, visits and reward; the best path in green."""
    from baobab.search.persist import read_run
    from baobab.store import Store

    store = Store(db)
    stored = read_run(store, run)
    if stored is None or stored.tree is None:
        print_error(f"no search named {run!r} in {store.safe_url}")
        raise typer.Exit(1)
    spent, result = stored.spent, stored.result or {}
    console.print(f"search [bold]{run}[/] {stored.strategy} {stored.status}"
                  + (f", stopped by {result['stopped_by']}" if "stopped_by" in result else "")
                  + f": {stored.tree.expansions} expansions, {spent.get('calls', 0)} model calls")
    console.print(_search_tree(stored.tree, depth))


ScopeOption = Annotated[str, typer.Option(help="The memory's scope: global, team:NAME or agent:NAME.")]


def _memory(db: str | None, scope: str, model: str | None = None) -> Any:
    from baobab.memory import Memory

    return Memory(db, llm=model, scope=scope)


@memory_app.command("add")
def memory_add(content: Annotated[str, typer.Argument(help="The note's text.")], db: DbOption = None,
               scope: ScopeOption = "global",
               tag: Annotated[list[str] | None, typer.Option(help="A tag (repeat for more).")] = None,
               model: Annotated[str | None, typer.Option(help="A model writes keywords, tags, context and links "
                                                         "(default: none, links by similarity).")] = None) -> None:
    """Add a note; print it with its links."""
    with _memory(db, scope, model) as memory:
        note = memory.add(content, tags=tag or [])
        console.print(f"[bold]note {note.id}[/] keywords: {', '.join(note.keywords)}; tags: {', '.join(note.tags)}")
        for link in note.links:
            console.print(f"  -> {link.target} ({link.kind}: {link.reason})")


@memory_app.command("search")
def memory_search(query: Annotated[str, typer.Argument(help="What to look for.")], db: DbOption = None,
                  scope: ScopeOption = "global", k: Annotated[int, typer.Option(help="How many notes.")] = 5,
                  hops: Annotated[int, typer.Option(help="Follow links this many steps.")] = 0) -> None:
    """The notes that best match a query, with why each matched."""
    with _memory(db, scope) as memory:
        table = Table("note", "score", "content", "why")
        for hit in memory.search(query, k, hops=hops):
            table.add_row(str(hit.note.id), f"{hit.score:.4f}", hit.note.content, "; ".join(hit.why))
        console.print(table)


@memory_app.command("show")
def memory_show(note: Annotated[int, typer.Argument(help="The note's id.")], db: DbOption = None,
                scope: ScopeOption = "global") -> None:
    """One note: its fields, links and earlier versions."""
    from baobab.memory import NotesError

    with _memory(db, scope) as memory:
        try:
            found, history = memory.get(note), memory.history(note)
        except NotesError as exc:
            raise typer.BadParameter(str(exc), param_hint="NOTE") from exc
        console.print(f"[bold]note {found.id}[/] (version {found.version}, scope {found.scope})\n{found.content}")
        console.print(f"keywords: {', '.join(found.keywords)}\ntags: {', '.join(found.tags)}\ncontext: {found.context}")
        if found.metadata:  # with a model, how the note was made: made_by model or fallback (and why)
            console.print(f"metadata: {json.dumps(found.metadata)}", markup=False)
        for link in found.links:
            console.print(f"link {link.source} -> {link.target}: {link.kind} ({link.reason})")
        for version in history:
            console.print(f"version {version.version} ({version.reason}): {version.context or version.content}")


@memory_app.command("graph")
def memory_graph(db: DbOption = None, scope: ScopeOption = "global",
                 html: Annotated[Path | None, typer.Option(help="Write the viewer's memory view to this "
                                                           "self-contained HTML file instead.")] = None) -> None:
    """The notes and links as Mermaid text, or as an HTML page (`--html out.html`)."""
    from baobab.memory.mermaid import mermaid

    with _memory(db, scope) as memory:
        if html is None:
            typer.echo(mermaid(memory.graph()))
            return
        from baobab.ui.export import page
        from baobab.ui.memory import memory_view

        answers = {"/api/runs": {"threads": [], "searches": [], "traces": []}, "/api/memory": memory_view(memory)}
        html.write_text(page(answers, "memory"))
        console.print(f"wrote {html}")


def _search_tree(tree: Any, depth: int | None = None) -> Any:
    """The search tree (down to `depth`) as a rich Tree, the best trajectory highlighted."""
    from rich.text import Text
    from rich.tree import Tree as RichTree

    best = {n.id for n in tree.best_trajectory()}

    def label(node: Any) -> Text:
        said = " ".join(node.observation.split())
        on_best = node.id in best  # marked for terminals without colour too
        text = Text(("* " if on_best else "") + ("root" if node.parent is None else json.dumps(node.action)),
                    style="bold green" if on_best else "bold")
        if said:
            text.append(f" {said[:80]}{'...' if len(said) > 80 else ''}")
        text.append(f"  value {node.value:.3f}  visits {node.visits}  reward {node.reward:g}"
                    + ("  done" if node.done else "") + (f"  {node.feedback[:60]}" if node.feedback else ""),
                    style="green" if on_best else "dim")
        return text

    root = RichTree(label(tree.root))
    stack = [(tree.root, root)]
    while stack:  # iteratively: deep trees do not hit the recursion limit
        node, branch = stack.pop()
        for child in tree.children(node) if depth is None or node.depth < depth else []:
            stack.append((child, branch.add(label(child))))
    return root


def _time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")
