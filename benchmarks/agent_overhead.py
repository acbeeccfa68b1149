"""Agent framework overhead per step, Baobab vs CrewAI and LangGraph's prebuilt ReAct agent, in one run.

    pip install -e '.[bench]' && python benchmarks/agent_overhead.py [--quick] [--profile]

A step is one model call and the tool call it asks for. Each framework runs the same agent: one tool,
`add(a: int, b: int) -> int`, and a scripted model that answers instantly with a call to `add` for the
first STEPS - 1 calls and with a final text answer on the last, so the wall time per run divided by the
model calls is the framework's own overhead per step. Every measured run is checked to have made exactly
STEPS model calls and STEPS - 1 tool calls, so no framework is timed doing less work.

CrewAI would downgrade packages Baobab needs (pydantic, mcp, rich), so it runs in its own virtual
environment, made on first use at --crewai-venv (default benchmarks/.venv-crewai, ignored by git), as a
subprocess of this script that prints its figures as JSON. Nothing reaches the network: the models are
scripted, CrewAI's telemetry and tracing are switched off. Writes benchmarks/results/agent_overhead.json.
"""

import argparse
import asyncio
import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import time
import venv
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from environment import cpu_name, versions  # benchmarks/environment.py (stdlib only: the CrewAI worker imports it too)

# Baobab, LangGraph and CrewAI are imported inside the functions that use them: the CrewAI worker runs this
# file under a virtual environment that has CrewAI and neither of the others, and the main process lacks CrewAI.

STEPS = 10
HERE = Path(__file__).resolve().parent
GOAL = "Baobab's framework overhead per agent step at most half of the faster peer's (CrewAI, LangGraph ReAct)"
# CrewAI phones home for telemetry, tracing and version checks unless told not to; these keep it on loopback.
CREWAI_ENV = {"CREWAI_DISABLE_TELEMETRY": "true", "CREWAI_DISABLE_TRACKING": "true", "OTEL_SDK_DISABLED": "true",
              "CREWAI_TRACING_ENABLED": "false", "CREWAI_DISABLE_VERSION_CHECK": "true"}


class Counter:
    """Model and tool calls a framework made, checked against the work it was asked to do."""

    def __init__(self) -> None:
        self.model = self.tool = 0

    def check(self, runs: int, framework: str) -> None:
        want = (runs * STEPS, runs * (STEPS - 1))
        if (self.model, self.tool) != want:
            raise AssertionError(f"{framework}: {self.model} model and {self.tool} tool calls in {runs} runs, "
                                 f"expected {want[0]} and {want[1]}")
        self.model = self.tool = 0


def timed(run: Callable[[], Any], counter: Counter, framework: str, runs: int, repeats: int, warmup: int) -> float:
    """Median over `repeats` batches of `runs` runs of the microseconds one step takes."""
    for _ in range(warmup):
        run()
    counter.model = counter.tool = 0
    per_step = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(runs):
            run()
        per_step.append((time.perf_counter() - start) / (runs * STEPS) * 1e6)
        counter.check(runs, framework)
    return statistics.median(per_step)


def timed_async(run: Callable[[], Awaitable[Any]], counter: Counter, framework: str, runs: int, repeats: int,
                warmup: int) -> float:
    """`timed` for a coroutine function: every run awaited in one event loop, as an async server would."""
    async def batch(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            await run()
        return time.perf_counter() - start

    async def main() -> float:
        await batch(warmup)
        counter.model = counter.tool = 0
        per_step = []
        for _ in range(repeats):
            per_step.append(await batch(runs) / (runs * STEPS) * 1e6)
            counter.check(runs, framework)
        return statistics.median(per_step)

    return asyncio.run(main())


def next_call(done: int) -> dict[str, Any] | None:
    """The scripted model's decision, the same in every framework: add again, or answer (None)."""
    return {"a": done, "b": 1} if done < STEPS - 1 else None


# --- Baobab ------------------------------------------------------------------------------------------------

def baobab_agent(counter: Counter) -> Any:
    from baobab.agents import Agent
    from baobab.engine import Choice, Request, ScriptedLLM, ToolCall
    from baobab.tools import tool

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        counter.tool += 1
        return a + b

    def reply(request: Request) -> str | Choice:
        counter.model += 1
        args = next_call(sum(m.role == "tool" for m in request.messages or []))
        if args is None:
            return "done"
        return Choice(tool_calls=[ToolCall(id=f"c{args['a']}", name="add", arguments=json.dumps(args))])

    return Agent("calc", model=ScriptedLLM(reply), tools=[add], max_steps=STEPS + 2)


def measure_baobab(runs: int, repeats: int, warmup: int) -> list[dict[str, Any]]:
    counter = Counter()
    agent = baobab_agent(counter)
    llm = agent.model  # ScriptedLLM keeps every request; emptied between runs so memory does not grow

    async def arun() -> None:
        llm.requests.clear()
        result = await agent.arun("Add the numbers.")
        assert result.steps == STEPS and result.output == "done", result

    def run() -> None:
        llm.requests.clear()
        result = agent.run("Add the numbers.")
        assert result.steps == STEPS and result.output == "done", result

    return [{"framework": "Baobab", "entry": "await Agent.arun", "us_per_step": timed_async(
                arun, counter, "Baobab", runs, repeats, warmup)},
            {"framework": "Baobab", "entry": "Agent.run (sync)", "us_per_step": timed(
                run, counter, "Baobab", runs, repeats, warmup)}]


def profile_baobab(runs: int, top: int = 25) -> str:
    """cProfile of Baobab's async runs: where the time of a step goes (for whoever optimises it)."""
    counter = Counter()
    agent = baobab_agent(counter)

    async def main() -> None:
        for _ in range(runs):
            agent.model.requests.clear()
            await agent.arun("Add the numbers.")

    asyncio.run(main())  # warm
    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(main())
    profiler.disable()
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text).strip_dirs()
    text.write(f"--- Baobab, {runs} runs of {STEPS} steps, by own time ---\n")
    stats.sort_stats("tottime").print_stats(top)
    text.write("--- by cumulative time ---\n")
    stats.sort_stats("cumulative").print_stats(top)
    return text.getvalue()


# --- LangGraph ---------------------------------------------------------------------------------------------

def langgraph_agent(counter: Counter) -> Any:
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
    from langchain_core.outputs import ChatGeneration, ChatResult
    from langchain_core.tools import tool as lc_tool

    with warnings.catch_warnings():  # langgraph 1.x points to langchain.agents.create_agent, not installed here
        warnings.simplefilter("ignore")
        from langgraph.prebuilt import create_react_agent

    @lc_tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        counter.tool += 1
        return a + b

    class ScriptedChat(BaseChatModel):
        """Answers at once; `bind_tools` returns itself since the script already knows the tool."""

        @property
        def _llm_type(self) -> str:
            return "scripted"

        def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                      **kwargs: Any) -> ChatResult:
            counter.model += 1
            args = next_call(sum(isinstance(m, ToolMessage) for m in messages))
            message = AIMessage(content="done") if args is None else AIMessage(
                content="", tool_calls=[{"id": f"c{args['a']}", "name": "add", "args": args}])
            return ChatResult(generations=[ChatGeneration(message=message)])

        async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                             run_manager: Any = None, **kwargs: Any) -> ChatResult:
            # native async, as real chat models have: without it langchain runs `_generate` in a thread pool
            return self._generate(messages, stop, **kwargs)

        def bind_tools(self, tools: Any, **kwargs: Any) -> "ScriptedChat":  # type: ignore[override]
            return self

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return create_react_agent(ScriptedChat(), [add])


def measure_langgraph(runs: int, repeats: int, warmup: int) -> list[dict[str, Any]]:
    counter = Counter()
    agent = langgraph_agent(counter)
    task = {"messages": [("user", "Add the numbers.")]}

    def check(out: dict[str, Any]) -> None:
        assert out["messages"][-1].content == "done" and len(out["messages"]) == 2 * STEPS, out

    async def arun() -> None:
        check(await agent.ainvoke(task))

    return [{"framework": "LangGraph", "entry": "await create_react_agent().ainvoke", "us_per_step": timed_async(
                arun, counter, "LangGraph", runs, repeats, warmup)},
            {"framework": "LangGraph", "entry": "create_react_agent().invoke", "us_per_step": timed(
                lambda: check(agent.invoke(task)), counter, "LangGraph", runs, repeats, warmup)}]


# --- CrewAI (runs in its own virtual environment) ----------------------------------------------------------

def crewai_worker(runs: int, repeats: int, warmup: int) -> None:
    """Measure CrewAI and print its rows as JSON on stdout (run by the CrewAI venv's python)."""
    os.environ.update(CREWAI_ENV)
    real_stdout = sys.stdout
    sys.stdout = sys.stderr  # anything CrewAI prints stays off the JSON channel
    from crewai import Agent, Crew, Task
    from crewai.llms.base_llm import BaseLLM
    from crewai.tools import tool as crew_tool

    counter = Counter()

    @crew_tool("add")
    def add(a: int, b: int) -> int:
        """Add two integers."""
        counter.tool += 1
        return a + b

    class ScriptedLLM(BaseLLM):
        """Native function calling (CrewAI's path for models that support it): OpenAI-style tool calls."""

        def call(self, messages: Any, tools: Any = None, callbacks: Any = None, available_functions: Any = None,
                 from_task: Any = None, from_agent: Any = None, response_model: Any = None, **kwargs: Any) -> Any:
            counter.model += 1
            args = next_call(sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "tool"))
            if args is None:
                return "done"
            return [{"id": f"c{args['a']}", "type": "function",
                     "function": {"name": "add", "arguments": json.dumps(args)}}]

        async def acall(self, messages: Any, tools: Any = None, callbacks: Any = None, available_functions: Any = None,
                        from_task: Any = None, from_agent: Any = None, response_model: Any = None,
                        **kwargs: Any) -> Any:
            return self.call(messages, tools, callbacks, available_functions, from_task, from_agent, response_model)

        def supports_function_calling(self) -> bool:
            return True

        def get_context_window_size(self) -> int:
            return 128_000

        def get_input_tokens_count(self, messages: Any, tools: Any = None, response_model: Any = None) -> int:
            # the base class estimates 4 characters a token but logs a warning on every call; a provider with
            # its own estimate (as every real one has) does not, so neither does the script
            text = messages if isinstance(messages, str) else "".join(str(m.get("content") or "") for m in messages)
            return (len(text) + 3) // 4

    agent = Agent(role="calculator", goal="Add numbers with the add tool.", backstory="You add numbers.",
                  llm=ScriptedLLM(model="scripted"), tools=[add], max_iter=STEPS + 2, verbose=False)
    task = Task(description="Add the numbers.", expected_output="The sum.", agent=agent)
    crew = Crew(agents=[agent], tasks=[task], verbose=False)

    def check(out: Any) -> None:
        assert out.raw == "done", out.raw

    async def akickoff() -> None:
        check(await crew.akickoff())

    rows = [{"framework": "CrewAI", "entry": "Crew.kickoff", "us_per_step": timed(
                lambda: check(crew.kickoff()), counter, "CrewAI", runs, repeats, warmup)},
            {"framework": "CrewAI", "entry": "await Crew.akickoff", "us_per_step": timed_async(
                akickoff, counter, "CrewAI", runs, repeats, warmup)}]
    real_stdout.write(json.dumps({"rows": rows, "versions": versions("crewai", "crewai-core", "pydantic",
                                                                     "litellm")}) + "\n")


def crewai_python(venv_dir: Path, spec: str) -> Path:
    """The CrewAI venv's python, making the venv and installing `spec` into it the first time (a few minutes)."""
    python = venv_dir / "bin" / "python"
    ready = venv_dir / ".installed"
    if not ready.exists() or ready.read_text() != spec:
        print(f"making {venv_dir} and installing {spec} into it (first use only) ...", flush=True)
        venv.create(venv_dir, with_pip=True, clear=python.exists() and not ready.exists())
        subprocess.run([str(python), "-m", "pip", "install", "-q", spec], check=True)
        ready.write_text(spec)
    return python


def measure_crewai(venv_dir: Path, spec: str, runs: int, repeats: int, warmup: int) -> tuple[list[dict[str, Any]],
                                                                                          dict[str, Any]]:
    python = crewai_python(venv_dir, spec)
    storage = venv_dir / "storage"  # CrewAI writes its task-output database somewhere; keep it out of $HOME
    storage.mkdir(exist_ok=True)
    env = {**os.environ, **CREWAI_ENV, "CREWAI_STORAGE_DIR": str(storage), "PYTHONPATH": ""}
    done = subprocess.run([str(python), __file__, "--crewai-worker", "--runs", str(runs), "--repeats", str(repeats),
                           "--warmup", str(warmup)], env=env, capture_output=True, text=True, timeout=600, cwd=HERE)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise RuntimeError(f"the CrewAI worker failed with exit status {done.returncode}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report["rows"], report["versions"]


# --- table -------------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (about 20 s once CrewAI is installed)")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of Baobab's steps")
    parser.add_argument("--crewai-venv", type=Path, default=HERE / ".venv-crewai",
                        help="virtual environment for CrewAI, made on first use (default: %(default)s)")
    parser.add_argument("--crewai-spec", default="crewai", help="what pip installs there (default: %(default)s)")
    parser.add_argument("--runs", type=int, help="agent runs per timed batch")
    parser.add_argument("--repeats", type=int, help="timed batches; the median is reported")
    parser.add_argument("--warmup", type=int, help="untimed runs first")
    parser.add_argument("--crewai-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    runs, repeats, warmup = (5, 3, 2) if args.quick else (20, 7, 5)
    runs, repeats, warmup = args.runs or runs, args.repeats or repeats, args.warmup or warmup
    if args.crewai_worker:
        crewai_worker(runs, repeats, warmup)
        return

    rows = measure_baobab(runs, repeats, warmup) + measure_langgraph(runs, repeats, warmup)
    crew_rows, crew_versions = measure_crewai(args.crewai_venv.resolve(), args.crewai_spec, runs, repeats, warmup)
    rows += crew_rows
    for r in rows:
        r["us_per_step"] = round(r["us_per_step"], 1)
        r["model_calls_per_run"], r["tool_calls_per_run"] = STEPS, STEPS - 1  # checked on every measured run

    # each framework at its fastest entry point (sync or async), so no peer is shown at its slow one
    best = {f: min(r["us_per_step"] for r in rows if r["framework"] == f) for f in ("Baobab", "LangGraph", "CrewAI")}
    peer = min(("LangGraph", "CrewAI"), key=best.__getitem__)
    for r in rows:
        r["vs_baobab"] = round(r["us_per_step"] / best["Baobab"], 2)  # how many times Baobab's best
    ratio = best["Baobab"] / best[peer]
    met = best["Baobab"] <= 0.5 * best[peer]

    width = max(len(r["framework"] + r["entry"]) for r in rows) + 3
    print(f"{STEPS} steps a run ({STEPS} model calls, {STEPS - 1} tool calls), median of {repeats} batches of "
          f"{runs} runs")
    print(f"{'framework / entry point':<{width}}  {'us/step':>9}  {'x Baobab':>8}")
    for r in rows:
        print(f"{r['framework'] + ' / ' + r['entry']:<{width}}  {r['us_per_step']:>9.1f}  {r['vs_baobab']:>8.2f}")
    summary = (f"overhead per agent step: Baobab {best['Baobab']:.0f} us, LangGraph ReAct {best['LangGraph']:.0f} us "
               f"({best['LangGraph'] / best['Baobab']:.1f}x), CrewAI {best['CrewAI']:.0f} us "
               f"({best['CrewAI'] / best['Baobab']:.1f}x); Baobab / faster peer ({peer}) = {ratio:.2f}")
    print(summary, "| goal met:", met)

    result = {
        "goal": GOAL, "met": met, "summary": summary, "quick": args.quick,
        "best_us_per_step": best, "faster_peer": peer, "baobab_over_faster_peer": round(ratio, 3),
        "workload": {"steps_per_run": STEPS, "model_calls_per_run": STEPS, "tool_calls_per_run": STEPS - 1,
                     "runs_per_batch": runs, "batches": repeats, "warmup_runs": warmup,
                     "statistic": "median over batches of batch wall time / (runs * steps)"},
        "table": rows,
        "environment": {
            "cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(),
            "versions": versions("baobab", "langgraph", "langgraph-prebuilt", "langchain-core", "pydantic"),
            "crewai_venv_versions": crew_versions,
        },
    }
    out = HERE / "results" / "agent_overhead.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    if args.profile:
        print(profile_baobab(runs * repeats))


if __name__ == "__main__":
    main()
