"""Routing: static, llm, bandit and lookahead routers side by side on simulated environments and a YAML team.

    python benchmarks/routing.py [--quick]

Three environments, each a Baobab graph whose routing is the only thing that changes between rows:
- drifting arms: a router picks one of three solver nodes per run; each pays 1 with a probability that
  changes half-way (a is best, then c). The static rows always route to one target (what if/else routing
  does); the bandit learns online. Turns are node runs (a lookahead runs every arm it tries).
- trap chain: D decision points; `bold` gains more at once than `steady` and reaches the next point in one
  node instead of two, but at a trap point (half of them, seeded per task) it fails two nodes later.
  Step-by-step routing picks by the value one step ahead (LookaheadRouter depth 1); "step-by-step +
  retries" runs the task again after a failure, avoiding each point where it failed, until it succeeds.
- YAML team: the embedded model (local:smollm2-135m) as a `calculator` (with the python tool) and a `poet`
  agent; the tasks are products of two-digit numbers; a run succeeds when the product is in the output.
  Routers are declared in YAML (`by: {kind: ...}`).
The llm router is the embedded model everywhere. Model calls count the router's and the agents' calls.
Writes benchmarks/results/routing.json.
"""

import argparse
import asyncio
import json
import os
import platform
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from environment import cpu_name, versions  # benchmarks/environment.py
from pydantic import BaseModel

from baobab.agents import LLMRouter, ModelCalled, Workflow, listen
from baobab.agents.agent import close_shared_models
from baobab.graphs import END, START, Decision, Graph, RouteContext, Routed, Router
from baobab.graphs.bandit import BanditRouter
from baobab.graphs.lookahead import LookaheadRouter

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "routing.json"
MODEL = "local:smollm2-135m"
GOAL = ("trap chain: lookahead reaches the best static route's success with fewer total turns than step-by-step "
        "routing (with retries until success); drifting arms: the bandit converges to within 10% of the best "
        "fixed target's reward (the pay rate of its choices over the last fifth of each phase)")
Row = dict[str, Any]


# ---- drifting arms ----------------------------------------------------------------------------------------

ARMS = {"a": (0.8, 0.2), "b": (0.5, 0.5), "c": (0.2, 0.9)}  # chance of success before and after the change


class Pull(BaseModel):
    episode: int = 0
    change: int = 0
    reward: float = 0.0


def chance(arm: str, s: Pull) -> float:
    return ARMS[arm][s.episode >= s.change]


def arms_graph(router: Any, turns: Counter[str]) -> Graph:
    graph = Graph(Pull).node("task", lambda s: {}).edge(START, "task")
    for arm in ARMS:
        def solve(s: Pull, arm: str = arm) -> dict[str, float]:
            turns["all"] += 1
            return {"reward": float(random.Random(f"{s.episode}:{arm}").random() < chance(arm, s))}
        graph.node(arm, solve).edge(arm, END)
    return graph.route("task", router, list(ARMS))


async def drifting_arms(episodes: int) -> list[Row]:
    change = episodes // 2
    window = max(1, episodes // 10)  # the last fifth of each phase
    rows = []
    makers: dict[str, Callable[[], Any]] = {f"static {arm}": (lambda arm=arm: (lambda s: arm)) for arm in ARMS}
    makers |= {"llm": lambda: LLMRouter(MODEL, {a: f"solver {a.upper()}" for a in ARMS}, reason=False),
               "bandit linucb": lambda: BanditRouter(f"bench-{time.time_ns()}", reward=lambda s: s.reward),
               "bandit thompson": lambda: BanditRouter(f"bench-{time.time_ns()}", reward=lambda s: s.reward,
                                                       method="thompson"),
               "lookahead": lambda: LookaheadRouter(lambda s: s.reward, depth=1)}
    for name, make in makers.items():
        turns: Counter[str] = Counter()
        app = arms_graph(make(), turns).compile()
        rewards, expected, calls, started = [], [], 0, time.perf_counter()
        for e in range(episodes):
            events = [ev async for ev in app.astream(Pull(episode=e, change=change))]
            calls += sum(1 for ev in events if isinstance(ev, Routed) and ev.router == "llm")
            rewards.append(events[-1].state.reward)  # type: ignore[union-attr]
            chosen = next(ev.choice[0] for ev in events if isinstance(ev, Routed))
            expected.append(chance(chosen, Pull(episode=e, change=change)))  # the chosen arm's pay rate: no coin noise
        before = sum(expected[change - window:change]) / window
        after = sum(expected[-window:]) / window
        rows.append({"env": "drifting arms", "router": name, "success": sum(rewards) / episodes,
                     "late_before_change": before, "late_after_change": after,
                     "turns_per_task": turns["all"] / episodes, "model_calls_per_task": calls / episodes,
                     "seconds": time.perf_counter() - started})
    return rows


# ---- trap chain -------------------------------------------------------------------------------------------


class Walk(BaseModel):
    traps: list[bool] = []
    avoid: list[int] = []  # points where bold failed in an earlier attempt (step-by-step + retries)
    score: float = 0.0
    failed: bool = False


def trap_graph(router: Any, points: int, turns: Counter[str]) -> Graph:
    graph = Graph(Walk)

    def act(gain: float, fail: bool = False) -> Callable[[Walk], dict[str, Any]]:
        def node(s: Walk) -> dict[str, Any]:
            turns["all"] += 1
            return {"score": s.score + gain, "failed": s.failed or fail}
        return node

    for i in range(points):
        after = f"choose{i + 1}" if i + 1 < points else END
        graph.node(f"choose{i}", lambda s: {}).route(f"choose{i}", router, [f"steady{i}", f"bold{i}"])
        graph.node(f"steady{i}", act(1.0)).node(f"steady2_{i}", act(1.0))
        graph.node(f"bold{i}", act(2.0)).node(f"bold2_{i}", act(1.0)).node(f"crash{i}", act(-10.0, fail=True))
        graph.edge(f"steady{i}", f"steady2_{i}").edge(f"steady2_{i}", after)
        graph.route(f"bold{i}", lambda s, i=i, after=after: f"bold2_{i}" if s.traps[i] else after,
                    [f"bold2_{i}", after])
        graph.edge(f"bold2_{i}", f"crash{i}").edge(f"crash{i}", END)
    return graph.edge(START, "choose0")


class Always(Router):
    """A static route: the target of one kind (steady or bold) at every point."""

    def __init__(self, kind: str) -> None:
        self.kind, self.name = kind, f"static {kind}"

    async def decide(self, state: BaseModel, ctx: RouteContext) -> Decision:
        return Decision(next(t for t in ctx.targets if t.startswith(self.kind)))


class StepByStepWithRetries(Router):
    """One step of lookahead, except at the points where an earlier attempt of the task failed."""

    name = "step-by-step + retries"

    def __init__(self) -> None:
        self.greedy = LookaheadRouter(lambda s: s.score, depth=1)

    async def decide(self, state: BaseModel, ctx: RouteContext) -> Decision:
        point = int(ctx.source.removeprefix("choose"))
        if point in state.avoid:  # type: ignore[attr-defined]
            return Decision(f"steady{point}", {}, "bold failed here in an earlier attempt")
        return await self.greedy.decide(state, ctx)


async def trap_chain(tasks: int, points: int) -> list[Row]:
    worlds = [[random.Random(f"{t}:{i}").random() < 0.5 for i in range(points)] for t in range(tasks)]
    described = {f"{kind}{i}": text for i in range(points)
                 for kind, text in [("steady", "slow and safe"), ("bold", "fast, but it can fail later")]}
    makers: dict[str, Callable[[], Any]] = {
        "static steady": lambda: Always("steady"), "static bold": lambda: Always("bold"),
        "llm": lambda: LLMRouter(MODEL, described, reason=False),
        "bandit linucb": lambda: BanditRouter(f"bench-{time.time_ns()}", reward=lambda s: 0.0 if s.failed else 1.0),
        "bandit thompson": lambda: BanditRouter(f"bench-{time.time_ns()}", reward=lambda s: 0.0 if s.failed else 1.0,
                                                method="thompson"),
        "step-by-step": lambda: LookaheadRouter(lambda s: s.score, depth=1),
        "step-by-step + retries": StepByStepWithRetries,
        "lookahead": lambda: LookaheadRouter(lambda s: s.score, depth=3)}
    rows = []
    for name, make in makers.items():
        turns: Counter[str] = Counter()
        app = trap_graph(make(), points, turns).compile()
        retries = name == "step-by-step + retries"
        wins, calls, attempts, started = 0, 0, 0, time.perf_counter()
        for world in worlds:
            avoid: list[int] = []
            for _ in range(points + 1 if retries else 1):
                attempts += 1
                events = [ev async for ev in app.astream(Walk(traps=world, avoid=avoid))]
                calls += sum(1 for ev in events if isinstance(ev, Routed) and ev.router == "llm")
                state = events[-1].state  # type: ignore[union-attr]
                if not state.failed:
                    wins += 1
                    break
                failed_at = min(i for i in range(points) if world[i] and i not in avoid)  # the first trap taken
                avoid = [*avoid, failed_at]
        rows.append({"env": "trap chain", "router": name, "success": wins / tasks,
                     "turns_per_task": turns["all"] / tasks, "model_calls_per_task": calls / tasks,
                     "attempts_per_task": attempts / tasks, "seconds": time.perf_counter() - started})
    return rows


# ---- a YAML team on the embedded model --------------------------------------------------------------------

TEAM = """models:
  small: {model}
tools:
  python: {{builtin: python, time_limit: 10}}
agents:
  calculator:
    role: computes arithmetic with the python tool
    instructions: Compute the answer with the python tool, then reply with the number it printed.
    model: small
    tools: [python]
    max_steps: 3
    max_tokens: 96
    examples:  # as in examples/analyst.yaml: a 135M model follows worked examples
      - {{task: "What is 6 * 7?", calls: [{{tool: python, arguments: {{code: "print(6 * 7)"}}, result: "42"}}],
         answer: "42"}}
      - {{task: "What is the mean of 2, 4 and 9?",
         calls: [{{tool: python, arguments: {{code: "print((2 + 4 + 9) / 3)"}}, result: "5.0"}}], answer: "5.0"}}
  poet: {{role: "writes short poems", instructions: "Write a two-line poem about the task.", model: small,
         max_steps: 1, max_tokens: 32}}
workflow:
  type: graph
  task: "{{question}}"
  nodes: {{start: {{call: "team_helpers:start"}}, calculator: {{agent: calculator}}, poet: {{agent: poet}}}}
  edges: [[START, start], [calculator, END], [poet, END]]
  routes:
    - {{from: start, to: [calculator, poet], by: {by}}}
inputs:
  question: {{type: string}}
"""
HELPERS = """def start(state):
    return {}

def correct(state):
    import re
    want = re.findall(r"\\d+", state.task)
    return float(bool(state.output) and str(int(want[0]) * int(want[1])) in str(state.output))
"""


async def yaml_team(tasks: int, base: Path) -> list[Row]:
    (base / "team_helpers.py").write_text(HELPERS)
    questions = [f"What is {a} * {b}?" for a, b in
                 [(random.Random(t).randrange(11, 40), random.Random(-t - 1).randrange(11, 40)) for t in range(tasks)]]
    kinds = {"static calculator": "'team_helpers:to_calculator'", "static poet": "'team_helpers:to_poet'",
             "llm": "{kind: llm, model: small, reason: false}",
             "bandit linucb": f"{{kind: bandit, reward: 'team_helpers:correct', name: 'team-{time.time_ns()}'}}",
             "lookahead": "{kind: lookahead, value: 'team_helpers:correct', depth: 1}"}
    (base / "team_helpers.py").write_text(HELPERS + "\ndef to_calculator(state):\n    return 'calculator'\n"
                                          "\ndef to_poet(state):\n    return 'poet'\n")
    rows = []
    for name, by in kinds.items():
        path = base / f"team_{name.replace(' ', '_')}.yaml"
        path.write_text(TEAM.format(model=MODEL, by=by))
        flow = await Workflow.load(path)
        agent_calls: list[ModelCalled] = []
        wins, router_calls, turns, started = 0, 0, 0, time.perf_counter()
        with listen(lambda e, calls=agent_calls: calls.append(e) if isinstance(e, ModelCalled) else None):
            app = flow.compile(f"sqlite:///{base / 'team.db'}")
            for q in questions:
                events = [ev async for ev in app.astream({"task": q})]
                router_calls += sum(1 for ev in events if isinstance(ev, Routed) and ev.router == "llm")
                state = events[-1].state  # type: ignore[union-attr]
                a, b = map(int, q[8:-1].split(" * "))
                wins += int(bool(state.output) and str(a * b) in str(state.output))
        turns = len(agent_calls)  # every agent turn is one model call here (max_steps 1)
        await flow.aclose()
        rows.append({"env": "YAML team", "router": name, "success": wins / tasks, "turns_per_task": turns / tasks,
                     "model_calls_per_task": (turns + router_calls) / tasks, "seconds": time.perf_counter() - started})
    await close_shared_models()
    return rows


# ---- report -----------------------------------------------------------------------------------------------


def verdict(rows: list[Row]) -> dict[str, Any]:
    """The goal's two checks, from the measured rows."""
    trap = {r["router"]: r for r in rows if r["env"] == "trap chain"}
    best_static = max((r for n, r in trap.items() if n.startswith("static")), key=lambda r: r["success"])
    look, retry = trap["lookahead"], trap["step-by-step + retries"]
    lookahead_ok = look["success"] >= best_static["success"] and look["turns_per_task"] < retry["turns_per_task"]
    arms = {r["router"]: r for r in rows if r["env"] == "drifting arms"}
    best_fixed = max(r["success"] for n, r in arms.items() if n.startswith("static"))
    phase_best = (max(p[0] for p in ARMS.values()), max(p[1] for p in ARMS.values()))
    bandit = arms["bandit linucb"]
    converged = (bandit["late_before_change"] >= 0.9 * phase_best[0]
                 and bandit["late_after_change"] >= 0.9 * phase_best[1])
    return {"lookahead": lookahead_ok, "bandit": converged and bandit["success"] >= 0.9 * best_fixed,
            "best_static": best_static["router"], "best_fixed_reward": best_fixed}


def table(rows: list[Row]) -> str:
    lines = [f"{'environment':<14} {'router':<24} {'success':>8} {'turns/task':>10} {'calls/task':>10} "
             f"{'vs static':>9}"]
    for env in dict.fromkeys(r["env"] for r in rows):
        group = [r for r in rows if r["env"] == env]
        best = max(r["success"] for r in group if r["router"].startswith("static"))
        for r in group:
            ratio = r["success"] / best if best else float("nan")
            lines.append(f"{env:<14} {r['router']:<24} {r['success']:>8.2f} {r['turns_per_task']:>10.2f} "
                         f"{r['model_calls_per_task']:>10.2f} {ratio:>8.2f}x")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rows = await drifting_arms(200 if args.quick else 600)
    rows += await trap_chain(10 if args.quick else 40, 5)
    with tempfile.TemporaryDirectory() as base:
        rows += await yaml_team(4 if args.quick else 12, Path(base))
    return {"rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer episodes and tasks (about a minute)")
    args = parser.parse_args()
    started = time.perf_counter()
    result = asyncio.run(run(args))
    rows = result["rows"]
    checks = verdict(rows)
    text = table(rows)
    print(text)
    trap = {r["router"]: r for r in rows if r["env"] == "trap chain"}
    arms = {r["router"]: r for r in rows if r["env"] == "drifting arms"}
    retry = trap["step-by-step + retries"]
    summary = (f"trap chain: lookahead success {trap['lookahead']['success']:.2f} in "
               f"{trap['lookahead']['turns_per_task']:.1f} turns/task vs step-by-step + retries "
               f"{retry['success']:.2f} in {retry['turns_per_task']:.1f}"
               f" (best static {checks['best_static']}: {trap[checks['best_static']]['success']:.2f}); drifting arms: "
               f"bandit {arms['bandit linucb']['success']:.2f} vs best fixed {checks['best_fixed_reward']:.2f}, late "
               f"{arms['bandit linucb']['late_before_change']:.2f}/{arms['bandit linucb']['late_after_change']:.2f}")
    met = bool(checks["lookahead"] and checks["bandit"])
    print(summary, "| goal met:", met)
    OUT.write_text(json.dumps({
        "goal": GOAL, "met": met, "checks": checks, "summary": summary, "quick": args.quick, "table": text,
        "rows": rows, "seconds": time.perf_counter() - started,
        "environment": {"cpu": cpu_name(), "threads": os.cpu_count(), "python": platform.python_version(),
                        "versions": versions("baobab", "torch", "numpy")}}, indent=2) + "\n")


if __name__ == "__main__":
    main()
