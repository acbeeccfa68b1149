"""Speculative decoding: drafters, chain verification, and outputs unchanged from plain decoding."""

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from stats import chi2_critical

from baobab.aio import run_sync
from baobab.engine.drafters import Draft, SuffixDrafter
from baobab.engine.local import LocalLLM
from baobab.engine.model_drafter import ModelDrafter
from baobab.engine.token_index import TokenIndex
from baobab.engine.types import Request

SPEC_BENCH = Path(__file__).parents[1] / "data" / "spec_bench" / "excerpt.jsonl"


def agentic_prompts() -> list[list[dict[str, str]]]:
    """Requests shaped like an agent's: a growing tool-loop history, rewrites of a draft, repeated records."""
    conversations = []
    for i in range(12):
        history = [{"role": "system", "content": "You are an agent. Call tools with JSON."},
                   {"role": "user", "content": f"Find the weather in city {i} and then in city {i + 1}."}]
        for step in range(i % 4):
            history += [{"role": "assistant", "content": json.dumps({"name": "weather", "arguments": {"city": step}})},
                        {"role": "user", "content": f"Tool result: city {step} is {10 + step} degrees and sunny."}]
        conversations.append(history)
    for i in range(12):
        draft = f"def total_{i}(items):\n    result = 0\n    for item in items:\n        result += item.price * {i}\n"
        conversations.append([{"role": "user", "content": f"Improve this code and repeat it in full:\n{draft}"}])
    for i in range(12):
        rows = "\n".join(f"id={j}, name=user{j}, score={(j * 7 + i) % 10}" for j in range(6))
        conversations.append([{"role": "user", "content": f"Copy these records, then add one more:\n{rows}"}])
    return conversations


def all_prompts() -> list[list[dict[str, str]]]:
    bench = [json.loads(line) for line in SPEC_BENCH.read_text().splitlines()]
    return [[{"role": "user", "content": row["turns"][0]}] for row in bench] + agentic_prompts()


MOVES = ["4 + 9 = 13", "13 - 9 = 4", "10 * 4 = 40", "10 - 4 = 6", "9 * 10 = 90", "13 + 10 = 23"]


def _schema(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}


def structured_requests() -> list[dict[str, Any]]:
    """A search's requests: sampled picks among legal moves (a JSON enum) and greedy judgements (JSON)."""
    judge = {"type": "object", "required": ["critique", "score"], "properties": {
        "critique": {"type": "string", "maxLength": 60}, "score": {"type": "number", "minimum": 0, "maximum": 10}}}
    requests = []
    for i in range(3):
        moves = MOVES[i:] + MOVES[:i]
        pick = {"type": "object", "properties": {"action": {"type": "string", "enum": moves}}, "required": ["action"]}
        legal = f"Make 24 from 4 9 10 13. Legal moves: {', '.join(moves)}"
        requests.append({"messages": [{"role": "user", "content": legal}],
                         "n": 4, "temperature": 1.0, "seed": i, "max_tokens": 40,
                         "response_format": _schema("pick", pick)})
        requests.append({"messages": [{"role": "user", "content": f"Judge the state: numbers left {i + 2} 9 10 13."}],
                         "temperature": 0.0, "max_tokens": 100, "response_format": _schema("judge", judge)})
    return requests


async def _answers(llm: LocalLLM, prompts: list[list[dict[str, str]]], **options: Any) -> list[Any]:
    return list(await asyncio.gather(*(llm.complete(messages=m, **options) for m in prompts)))


@pytest.fixture(scope="module")
def pair() -> Any:
    plain = LocalLLM(slots=8, context=2048, threads=2, prefix_cache_mb=0, speculative=False)
    spec = LocalLLM(slots=8, context=2048, threads=2, prefix_cache_mb=0)
    yield plain, spec
    run_sync(plain.aclose())
    run_sync(spec.aclose())


@pytest.mark.timeout(900)
def test_speculation_gives_the_plain_tokens_in_float32() -> None:
    """With float32 weights, agentic prompts and Spec-Bench ones, twice (the second time the global history
    drafts too): token for token the plain output, greedy and sampled with the same seed; and so for structured
    output, whose drafts the grammar prunes and extends with the tokens it forces."""
    prompts = all_prompts()[::4]
    plain = LocalLLM(slots=8, context=1024, threads=2, prefix_cache_mb=0, weight_dtype="float32", speculative=False)
    spec = LocalLLM(slots=8, context=1024, threads=2, prefix_cache_mb=0, weight_dtype="float32")
    spec.scheduler.fix_costs({1: 1.0, 32: 1.0}, {}, (0.0, 0.0))  # unpacked float32: k tokens cost ~k: draft all
    try:
        expected = run_sync(_answers(plain, prompts, max_tokens=32, temperature=0))
        for _ in range(2):
            got = run_sync(_answers(spec, prompts, max_tokens=32, temperature=0))
            assert [c.choices[0].token_ids for c in got] == [c.choices[0].token_ids for c in expected]
        assert sum(c.usage.accepted_tokens for c in got) > 0.2 * sum(c.usage.completion_tokens for c in got)
        sampled = {"max_tokens": 24, "temperature": 0.8, "top_p": 0.95, "n": 4}
        for seed, messages in enumerate(prompts[-4:]):
            want = plain.complete_sync(messages=messages, seed=seed, **sampled)
            for _ in range(2):
                got_sample = spec.complete_sync(messages=messages, seed=seed, **sampled)
                assert [c.token_ids for c in got_sample.choices] == [c.token_ids for c in want.choices]
        structured = structured_requests()
        expected = [plain.complete_sync(**r) for r in structured]
        got = [spec.complete_sync(**r) for r in structured]
        assert [[c.token_ids for c in a.choices] for a in got] == [[c.token_ids for c in a.choices] for a in expected]
        assert all(json.loads(c.text) for a in got for c in a.choices)
        assert sum(c.usage.accepted_tokens for c in got) > 0.4 * sum(c.usage.completion_tokens for c in got)
    finally:
        run_sync(plain.aclose())
        run_sync(spec.aclose())


@pytest.mark.timeout(900)
def test_a_draft_model_drafts_and_the_outputs_stay_the_targets() -> None:
    """A ModelDrafter whose draft model is the target itself (float32): nearly every greedy guess is accepted,
    so its cache follows each sequence through partial acceptances; outputs are the plain ones token for
    token, greedy and sampled with a seed, also with more samples than the drafter has slots."""
    prompts = agentic_prompts()[:3]
    plain = LocalLLM(slots=4, context=1024, threads=2, prefix_cache_mb=0, weight_dtype="float32", speculative=False)
    drafter = ModelDrafter(weight_dtype="float32", depth=4, slots=2, context=1024)
    spec = LocalLLM(slots=4, context=1024, threads=2, prefix_cache_mb=0, weight_dtype="float32", speculative=drafter)
    spec.scheduler.fix_costs({1: 1.0, 32: 1.0}, {}, (0.0, 0.0))  # unpacked float32: k tokens cost ~k: draft all
    try:
        for messages in prompts:
            want = plain.complete_sync(messages=messages, max_tokens=32, temperature=0)
            got = spec.complete_sync(messages=messages, max_tokens=32, temperature=0)
            assert got.choices[0].token_ids == want.choices[0].token_ids
            u = got.usage
            # every guess but the last step's (it may run past the end) and a rare float32 near-tie is accepted
            assert u.drafted_tokens > 0.3 * u.completion_tokens and u.accepted_tokens >= u.drafted_tokens - 5
            assert u.accepted_per_step > 0.5
        sampled = {"max_tokens": 24, "temperature": 0.8, "top_p": 0.95, "n": 4, "seed": 3}  # 4 samples, 2 slots
        want = plain.complete_sync(messages=prompts[0], **sampled)
        got = spec.complete_sync(messages=prompts[0], **sampled)
        assert [c.token_ids for c in got.choices] == [c.token_ids for c in want.choices]
        # read on the engine thread, after the step that finished the samples has released them
        left, free = spec.scheduler.run_on_engine(lambda: (dict(drafter.sequences), sorted(drafter._free)))
        assert got.usage.drafted_tokens > 0 and not left and free == [0, 1]
    finally:
        run_sync(plain.aclose())
        run_sync(spec.aclose())


def test_a_draft_model_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="depth >= 1"):
        ModelDrafter(depth=0)
    with pytest.raises(ValueError, match="weight_dtype must be one of"):
        ModelDrafter(weight_dtype="int8")


def test_same_seed_same_samples_and_the_same_distribution(pair: Any) -> None:
    """Lossless sampling in the default bfloat16 weights: every seed gives the very plain sample (a verify
    forward's logits are bit for bit a one-token forward's), and pooled second tokens match by chi-square."""
    plain = pair[0]
    spec = LocalLLM(slots=8, context=2048, threads=2, prefix_cache_mb=0)
    spec.scheduler.fix_costs({1: 1.0, 32: 1.0}, {}, (0.0, 0.0))  # drafts however loaded the machine: k cost one
    prompt = [{"role": "user", "content": "Say yes or no, then repeat it: yes yes no yes no no yes."}]
    options: dict[str, Any] = {"max_tokens": 12, "temperature": 1.0, "top_k": 8, "n": 8}
    want, got = [], []
    try:
        for seed in range(16):
            want += plain.complete_sync(messages=prompt, seed=seed, **options).choices
            got += spec.complete_sync(messages=prompt, seed=seed, **options).choices
        assert [c.token_ids for c in got] == [c.token_ids for c in want]
        assert spec.complete_sync(messages=prompt, seed=0, **options).usage.accepted_tokens > 0
    finally:
        run_sync(spec.aclose())
    a, b = (Counter(tuple(c.token_ids[1:2]) for c in samples) for samples in (want, got))  # (): ended at one
    statistic = sum((a[k] - b[k]) ** 2 / (a[k] + b[k]) for k in set(a) | set(b))
    assert statistic < chi2_critical(len(set(a) | set(b)) - 1)


def test_usage_reports_speculation_and_it_can_be_turned_off(pair: Any) -> None:
    plain, spec = pair
    text = "alpha beta gamma delta epsilon zeta eta theta iota kappa"
    request = {"messages": [{"role": "user", "content": f"Repeat exactly: {text}"}], "max_tokens": 24,
               "temperature": 0}
    on, off = spec.complete_sync(**request).usage, plain.complete_sync(**request).usage
    assert on.drafted_tokens >= on.accepted_tokens > 0 and 0 < on.steps < on.completion_tokens - 1
    assert on.accepted_per_step > 0.5
    assert off.drafted_tokens == off.accepted_tokens == 0 and off.steps == off.completion_tokens - 1
    scheduler = spec.scheduler  # the cost model knows that a long context makes a big tree dear
    assert scheduler.costs_measured.wait(600)  # measured while the engine was idle
    context_cost = [scheduler._cost(tokens, [1500]) - scheduler._cost(tokens, [0]) for tokens in (32, 1)]
    assert context_cost[0] > context_cost[1] >= 0
    assert scheduler._cost(8, [0] * 4) > scheduler._cost(8, [0])  # rows share a forward, not its price


def test_suffix_drafter_sources_and_trees() -> None:
    drafter = SuffixDrafter()
    drafter.begin(key=1, group=7, prompt=[1, 2, 3, 4, 5])
    drafter.begin(key=2, group=7, prompt=[1, 2, 3, 4, 5])
    drafter.extend(1, [9, 8, 7, 6, 9, 8])
    assert drafter.draft(1, budget=3).tokens == [7, 6, 9]  # its own output
    drafter.extend(2, [9])
    assert drafter.draft(2, budget=3).tokens[:3] == [8, 7, 6]  # its sibling's output
    drafter.end(1, [9, 8, 7, 6, 9, 8])
    drafter.end(2, [9])
    drafter.begin(key=3, group=8, prompt=[0, 9, 8])
    assert drafter.draft(3, budget=2).tokens == [7, 6]  # the global history
    lookup = SuffixDrafter(("request",), tree=False, chain_length=2)
    lookup.begin(key=1, group=1, prompt=[4, 5, 6, 4])
    assert lookup.draft(1, budget=10).tokens == [5, 6]


def test_acceptance_is_learnt_per_match_length() -> None:
    drafter = SuffixDrafter(("request",))
    drafter.begin(key=1, group=1, prompt=[1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1])
    long_draft = drafter.draft(1, budget=4)  # the context ends 9, 1: matched at length 2 (tokens 9, 1)
    drafter.begin(key=2, group=2, prompt=[5, 1, 7, 7, 7, 7, 5])
    short_draft = drafter.draft(2, budget=4)  # ends 7, 5 then 5: matched at length 1
    assert short_draft.match == 1 and long_draft.match > 1 and long_draft.tokens[:2] == [2, 3]
    before = short_draft.scores[0]
    for _ in range(10):  # the short matches' guesses keep failing
        drafter.observe(2, short_draft, tries=16, accepted=0)
    assert drafter.draft(2, budget=4).scores[0] < before / 4  # so they are scored low: the scheduler drafts less
    assert drafter.draft(1, budget=4).scores[0] == pytest.approx(long_draft.scores[0], rel=0.2)  # not the long ones


def test_sampled_sequences_learn_their_own_acceptance() -> None:
    drafter = SuffixDrafter(("request",))
    prompt = [1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1]
    drafter.begin(key=1, group=1, prompt=prompt, sampled=True)
    drafter.begin(key=2, group=2, prompt=prompt)
    sampled, greedy = drafter.draft(1, budget=4), drafter.draft(2, budget=4)
    assert sampled.sampled and not greedy.sampled and sampled.scores == greedy.scores
    for _ in range(10):  # samples keep leaving the repeated text
        drafter.observe(1, sampled, tries=16, accepted=0)
    assert drafter.draft(1, budget=4).scores[0] < sampled.scores[0] / 4
    assert drafter.draft(2, budget=4).scores[0] == pytest.approx(greedy.scores[0])  # greedy guesses still trusted


def test_each_sequence_scales_its_class_acceptance_by_how_its_own_drafts_fared() -> None:
    drafter = SuffixDrafter(("request",))
    prompt = [1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1]
    for key in (1, 2, 3):
        drafter.begin(key=key, group=key, prompt=prompt)
    first = drafter.draft(1, budget=4)
    assert drafter.draft(2, budget=4).scores == drafter.draft(3, budget=4).scores == first.scores
    for _ in range(4):  # sequence 1's guesses are all accepted, sequence 3's all fail (the class moves both ways)
        drafter.observe(1, first, tries=4, accepted=4)
        drafter.observe(3, first, tries=4, accepted=0)
    trusted, neutral, doubted = (drafter.draft(key, budget=4).scores[0] for key in (1, 2, 3))
    assert trusted > 1.5 * neutral and doubted < neutral / 2
    assert max(drafter.draft(1, budget=4).scores) <= 0.95  # never certain


def test_drafts_stay_trees_when_cut_and_verify_their_best_path() -> None:
    draft = Draft([1, 2, 3, 4], [-1, 0, -1, 2], [0.9, 0.5, 0.6, 0.1])
    best = draft.best(3)
    assert best.tokens == [1, 2, 3] and best.parents == [-1, 0, -1]
    assert draft.best(1).tokens == [1]
    chain = draft.chain()
    assert chain.tokens == [1, 2] and chain.parents == [-1, 0] and chain.scores == [0.9, 0.5]
    assert Draft().chain().tokens == []


def test_the_grammar_prunes_drafts_and_drafts_what_it_forces(pair: Any) -> None:
    _, spec = pair
    pick = {"type": "object", "properties": {"action": {"type": "string", "enum": MOVES}}, "required": ["action"]}
    constraint = spec.grammars.for_request(Request(prompt="x", response_format=_schema("pick", pick)))
    encode = spec.tokenizer.encode
    opening, fine, wrong = encode('{"action": "'), encode('{"action": "13 - 9'), encode('{"action": "7 + 1')
    assert fine[:len(opening)] == opening and wrong[:len(opening)] == opening
    retrieved = Draft(fine, list(range(-1, len(fine) - 1)), [0.5] * len(fine))
    branch = wrong[len(opening):]  # branches off after the opening
    tokens = fine + branch
    parents = retrieved.parents + [len(opening) - 1] + [len(fine) + i for i in range(len(branch) - 1)]
    draft = constraint.restrict(Draft(tokens, parents, [0.5] * len(tokens)), budget=16)
    assert draft.tokens == fine  # the enum has no move starting with 7
    assert 0 < draft.forced < len(opening) and draft.scores[:draft.forced] == [1.0] * draft.forced
    assert draft.tokens[:draft.forced] == opening[:draft.forced]  # '{"action":' is forced, then a choice
    assert constraint.restrict(Draft(), budget=2).tokens == opening[:2]  # no retrieval: the forced tokens, cut
    assert constraint.restrict(Draft(), budget=0).tokens == []
    constraint.accept(opening[0])  # the grammar itself is where it was: restrict rolled every token back
    assert constraint.restrict(Draft(), budget=1).tokens == opening[1:2]


def test_history_stays_within_its_bound() -> None:
    index = TokenIndex(capacity=500)
    for doc in range(200):
        index.extend(doc, [doc % 50 + t for t in range(20)])
        assert index.size <= 500
    assert index.size <= 500 and len(index.docs) == 25
    assert all(doc in index.docs for doc, _ in (p for places in index.grams.values() for p in places))
