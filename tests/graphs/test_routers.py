"""Bandit and lookahead routers on graphs whose best route is known: regret, recovery, traps, budgets."""

import random
from collections import Counter

import pytest
from pydantic import BaseModel

from baobab.graphs import END, START, Graph, Routed
from baobab.graphs.bandit import BanditRouter
from baobab.graphs.lookahead import LookaheadRouter
from baobab.store.trace import tracer_for


class Round(BaseModel):
    episode: int = 0
    context: int = 0  # 0 or 1: which arm is best may depend on it
    reward: float = 0.0


def arm_graph(router: BanditRouter, payoff: dict[str, object]) -> Graph:
    """START -> draw -> (bandit) -> one arm -> END; an arm pays 1 with probability payoff[arm](state)."""
    graph = Graph(Round).node("draw", lambda s: {})
    for arm, chance in payoff.items():
        def pay(s: Round, chance: object = chance, arm: str = arm) -> dict[str, float]:
            rng = random.Random(f"{s.episode}:{arm}")
            return {"reward": float(rng.random() < chance(s))}  # type: ignore[operator]
        graph.node(arm, pay).edge(arm, END)
    return graph.edge(START, "draw").route("draw", router, list(payoff))


def play(router: BanditRouter, payoff: dict[str, object], episodes: range, store: str | None = None,
         context: object = lambda e: 0) -> list[tuple[str, float]]:
    """Run one graph run per episode; each run's (chosen arm, expected regret)."""
    app = arm_graph(router, payoff).compile(checkpointer=store)
    out = []
    for e in episodes:
        state = Round(episode=e, context=context(e))  # type: ignore[operator]
        events = list(app.stream(state))
        chosen = next(ev.choice[0] for ev in events if isinstance(ev, Routed))
        means = {arm: chance(state) for arm, chance in payoff.items()}  # type: ignore[operator]
        out.append((chosen, max(means.values()) - means[chosen]))
    return out


def switching(episode_of_change: int) -> dict[str, object]:
    """a is best until the change, then c; b is always middling."""
    return {"a": lambda s: 0.8 if s.episode < episode_of_change else 0.2,
            "b": lambda s: 0.5,
            "c": lambda s: 0.2 if s.episode < episode_of_change else 0.9}


@pytest.mark.parametrize("method", ["linucb", "thompson"])
def test_the_bandits_regret_grows_sublinearly(method: str) -> None:
    router = BanditRouter("arms", reward=lambda s: s.reward, method=method, decay=1.0)
    regret = [r for _, r in play(router, {"a": lambda s: 0.8, "b": lambda s: 0.5, "c": lambda s: 0.2}, range(400))]
    early, late = sum(regret[:50]) / 50, sum(regret[200:]) / 200
    assert early > 0 and late < 0.25 * early, (early, late)  # the regret per run falls: the total is sublinear


@pytest.mark.parametrize("method", ["linucb", "thompson"])
def test_a_forgetting_bandit_recovers_after_the_best_arm_changes(method: str) -> None:
    router = BanditRouter("arms", reward=lambda s: s.reward, method=method)  # forgets: decay 0.99
    played = play(router, switching(300), range(600))
    settled, late = Counter(a for a, _ in played[200:300]), Counter(a for a, _ in played[500:])
    assert settled["a"] >= 75 and late["c"] >= 75, (settled, late)  # the best arm before, the new best after
    regret = [r for _, r in played]
    assert sum(regret[500:]) < 0.5 * sum(regret[300:400])  # recovered: the regret flattens again


def test_a_contextual_bandit_learns_which_arm_suits_which_state() -> None:
    payoff = {"a": lambda s: 0.9 if s.context else 0.1, "b": lambda s: 0.1 if s.context else 0.9}
    router = BanditRouter("ctx", reward=lambda s: s.reward, features=lambda s: [float(s.context)], alpha=0.5,
                          decay=1.0)
    played = play(router, payoff, range(300), context=lambda e: random.Random(e).randrange(2))
    late = [arm == ("a" if random.Random(e).randrange(2) else "b") for e, (arm, _) in zip(range(300), played,
                                                                                             strict=True)][200:]
    assert sum(late) >= 85, sum(late)


def test_what_a_bandit_learned_is_kept_in_the_store_and_used_by_the_next_process(store_url: str) -> None:
    url = store_url
    payoff = {"a": lambda s: 0.2, "b": lambda s: 0.8}
    play(BanditRouter("kept", reward=lambda s: s.reward, decay=1.0), payoff, range(80), url)
    fresh = BanditRouter("kept", reward=lambda s: s.reward, decay=1.0, store=url)
    means = fresh.means(Round(), ["a", "b"])
    assert fresh.observations == 80 and means["b"] > means["a"] + 0.3, means
    chosen = [arm for arm, _ in play(fresh, payoff, range(80, 100), url)]
    assert chosen.count("b") >= 17  # no exploring from scratch
    other = BanditRouter("other", reward=lambda s: s.reward, store=url)
    assert other.means(Round(), ["a"]) == {"a": 0.0} and other.observations == 0  # names keep routers apart


def test_a_bandit_refuses_features_that_change_length() -> None:
    router = BanditRouter("len", reward=lambda s: s.reward, features=lambda s: [1.0] * (s.episode + 1))
    with pytest.raises(ValueError, match="features gave 2 values, earlier ones 1"):
        play(router, {"a": lambda s: 0.5}, range(2))


# ---- lookahead --------------------------------------------------------------------------------------------


class Walk(BaseModel):
    path: list[str] = []
    score: float = 0.0
    solved: bool = False


def trap(calls: Counter[str]) -> Graph:
    """`bait` looks best after one step and fails two steps later; `safe` looks worse, then solves."""
    steps = {"bait": 0.9, "bait2": 0.6, "bait3": 0.0, "safe": 0.3, "safe2": 0.6, "safe3": 1.0}
    graph = Graph(Walk).node("start", lambda s: {"path": [*s.path, "start"]})
    for name, score in steps.items():
        def step(s: Walk, name: str = name, score: float = score) -> dict[str, object]:
            calls[name] += 1
            return {"path": [*s.path, name], "score": score, "solved": name == "safe3"}
        graph.node(name, step)
    graph.edge(START, "start").edge("bait", "bait2").edge("bait2", "bait3").edge("bait3", END)
    return graph.edge("safe", "safe2").edge("safe2", "safe3").edge("safe3", END)


def test_lookahead_escapes_the_trap_a_step_by_step_router_falls_into(store_url: str) -> None:
    url = store_url
    calls: Counter[str] = Counter()
    step_by_step = trap(calls).route("start", LookaheadRouter(lambda s: s.score, depth=1), ["bait", "safe"])
    assert not step_by_step.compile().run().state.solved  # one step ahead, the bait looks best

    calls.clear()
    router = LookaheadRouter(lambda s: s.score, depth=3)
    app = trap(calls).route("start", router, ["bait", "safe"]).compile(checkpointer=url)
    events = list(app.stream(thread="main"))
    result = events[-1]
    assert result.state.solved and result.state.path == ["start", "safe", "safe2", "safe3"]  # type: ignore[union-attr]
    routed = [e for e in events if isinstance(e, Routed)]
    assert [r.choice for r in routed] == [("safe",)] and routed[0].scores == {"bait": 0.0, "safe": 1.0}
    assert set(calls.values()) == {1}  # each node ran once, in its branch: the chosen branch was adopted
    assert app.state("main") == result.state  # type: ignore[union-attr]

    branches = {t.name.split(".")[1]: t for t in app.checkpointer.threads() if t.name.startswith("main~")}  # type: ignore[union-attr]
    assert branches["safe"].status == "adopted" and branches["bait"].status == "done"
    assert app.state(branches["bait"].name).path == ["start", "bait", "bait2", "bait3"]  # type: ignore[attr-defined]


def test_a_branch_cut_short_is_left_paused_and_can_be_resumed(store_url: str) -> None:
    calls: Counter[str] = Counter()
    app = trap(calls).route("start", LookaheadRouter(lambda s: -s.score, depth=1), ["bait", "safe"]) \
        .compile(checkpointer=store_url)
    assert app.run(thread="main").state.path == ["start", "safe", "safe2", "safe3"]  # lower score wins here
    paused = next(t for t in app.checkpointer.threads() if ".bait." in t.name)  # type: ignore[union-attr]
    assert paused.status == "interrupted" and app.state(paused.name).path == ["start", "bait"]  # type: ignore[attr-defined]
    assert app.resume(paused.name).state.path == ["start", "bait", "bait2", "bait3"]  # type: ignore[attr-defined]


def test_lookahead_budgets_hold() -> None:
    calls: Counter[str] = Counter()
    router = LookaheadRouter(lambda s: s.score, depth=3, budget=4)  # 2 branches: 2 steps each, not 3
    trap(calls).route("start", router, ["bait", "safe"]).compile().run()
    assert router.spent == 4 and calls["safe2"] == 1 and calls["safe3"] == 0  # 0.6 each: the bait wins the tie
    assert calls["bait3"] == 1  # run by the run itself, after it adopted the bait's branch
    tight = LookaheadRouter(lambda s: s.score, depth=3, budget=1)  # not even a step each: the policy decides
    calls.clear()
    assert trap(calls).route("start", tight, ["bait", "safe"]).compile().run().state.path[1] == "bait"
    assert tight.spent == 0
    sampled = LookaheadRouter(lambda s: s.score, depth=3, sample=1)
    calls.clear()
    trap(calls).route("start", sampled, ["bait", "safe"]).compile().run()
    assert sampled.spent == 3 and (calls["bait"] == 0 or calls["safe"] == 0)  # one branch explored


def test_routing_decisions_are_recorded_as_spans_for_the_viewer(store_url: str) -> None:
    url = store_url
    app = trap(Counter()).route("start", LookaheadRouter(lambda s: s.score, depth=3), ["bait", "safe"]) \
        .compile(checkpointer=url)
    app.run(thread="seen")
    store = app.checkpointer.store  # type: ignore[union-attr]
    tracer_for(store).flush()
    with store.transaction() as conn:
        rows = conn.exec_driver_sql("SELECT name, attrs FROM spans WHERE kind = 'route' AND run = 'thread:seen'").all()
    assert len(rows) == 1 and rows[0][0] == "start"
    assert '"choice":["safe"]' in rows[0][1] and '"scores":{"bait":0.0,"safe":1.0}' in rows[0][1]
