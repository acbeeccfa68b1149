"""Batch-invariant decoding in the default configuration (bfloat16 weights on a CPU, speculation and prefix cache
on): a greedy output is the plain one-request output token for token, whether drafts were verified, the prompt
came from the prefix cache, or the request shared its forwards with others; a seeded sample likewise."""

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from baobab.aio import run_sync
from baobab.engine.local import LocalLLM
from baobab.engine.model import Linear, Row

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))  # engine_speculative.py
from engine_speculative import swe_turns
from test_speculative import agentic_prompts, all_prompts

Messages = list[dict[str, str]]


def fifty_prompts() -> list[Messages]:
    """22 Spec-Bench chat turns, 18 agentic requests, 10 SWE-agent development turns (cut to 400 tokens)."""
    chat = all_prompts()[:-len(agentic_prompts())][::4]
    agentic = agentic_prompts()[::2]
    swe = [[{"role": "user", "content": turn["prompt"]}] for turn in swe_turns(10, 400)]
    return chat + agentic + swe


def _tokens(llm: LocalLLM, prompts: list[Messages], **options: Any) -> list[list[int] | None]:
    async def one(messages: Messages) -> list[int] | None:
        return (await llm.complete(messages=messages, **options)).choices[0].token_ids

    async def together() -> list[list[int] | None]:
        return list(await asyncio.gather(*(one(m) for m in prompts)))

    return run_sync(together())


@pytest.fixture(scope="module")
def engines() -> Any:
    plain = LocalLLM(slots=8, context=2048, threads=2, prefix_cache_mb=0, speculative=False)
    default = LocalLLM(slots=8, context=2048, threads=2)
    yield plain, default
    run_sync(plain.aclose())
    run_sync(default.aclose())


@pytest.mark.timeout(1200)
def test_greedy_outputs_are_the_plain_ones_alone_cached_and_in_batches(engines: Any) -> None:
    plain, default = engines
    prompts = fifty_prompts()
    assert len(prompts) == 50
    greedy = {"max_tokens": 32, "temperature": 0}
    want = [_tokens(plain, [m], **greedy)[0] for m in prompts]  # one request at a time, no drafts, no cache
    alone = [default.complete_sync(messages=m, **greedy) for m in prompts]
    assert [c.choices[0].token_ids for c in alone] == want
    again = [default.complete_sync(messages=m, **greedy) for m in prompts]  # whole prompts cached, history drafts
    assert [c.choices[0].token_ids for c in again] == want
    assert all(c.usage.cached_tokens > 0 for c in again)
    assert sum(c.usage.accepted_tokens for c in again) > 0.3 * sum(c.usage.completion_tokens for c in again)
    sizes, start, batched = [2, 3, 4, 5, 6, 7, 8], 0, []
    while start < len(prompts):  # batches of 2 to 8 requests of every kind, decoded together
        size = sizes[len(batched) % len(sizes)]
        batched.append(_tokens(default, prompts[start:start + size], **greedy))
        start += size
    assert [t for batch in batched for t in batch] == want
    assert [t for t in _tokens(plain, prompts[:8], **greedy)] == want[:8]  # batched without drafts too


def test_seeded_samples_are_the_same_alone_and_in_a_batch(engines: Any) -> None:
    plain, default = engines
    prompts = fifty_prompts()[::7]
    sampled = {"max_tokens": 24, "temperature": 0.8, "top_p": 0.95, "seed": 11}
    want = [_tokens(plain, [m], **sampled)[0] for m in prompts]
    assert [_tokens(default, [m], **sampled)[0] for m in prompts] == want
    assert _tokens(default, prompts, **sampled) == want
    assert len({tuple(t or ()) for t in want}) == len(want)


def test_a_row_gives_the_same_logits_however_it_is_computed(engines: Any) -> None:
    """Bit for bit: one prompt prefilled whole, one token at a time, and as a verify step beside another row."""
    _, default = engines
    model = default.model
    ids = list(range(300, 380))

    def forwards() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        whole = model(torch.tensor([ids]), [Row(0, 0)], all_logits=True)[0]
        single = torch.cat([model(torch.tensor([[t]]), [Row(1, i)]) for i, t in enumerate(ids)])
        model(torch.tensor([ids[:50]]), [Row(2, 0)])
        model(torch.tensor([list(range(7, 70))]), [Row(3, 0)])
        batch = model(torch.tensor([ids[50:], list(range(500, 530))]), [Row(2, 50), Row(3, 63)], all_logits=True)
        return whole, single, batch[0]

    whole, single, verify = default.scheduler.run_on_engine(forwards)
    assert torch.equal(whole, single)
    assert torch.equal(whole[50:], verify)


@pytest.mark.parametrize("outputs, inputs", [(960, 576), (576, 576), (3072, 576), (576, 1536), (4096, 2048)])
def test_a_projection_gives_a_row_alone_what_it_gives_among_others(outputs: int, inputs: int) -> None:
    """SmolLM2's projection shapes (and a larger one) in bfloat16 on a CPU: one row alone, bit for bit, is that row
    among 63 others, whichever kernel oneDNN takes for one row on this CPU (on an AMD EPYC, 1,536 inputs took one
    that rounded differently)."""
    generator = torch.Generator().manual_seed(7)
    linear = Linear(torch.randn(outputs, inputs, generator=generator) / inputs**0.5, None, torch.bfloat16)
    rows = torch.randn(1, 64, inputs, generator=generator)
    together = linear(rows)
    assert all(torch.equal(linear(rows[:, i:i + 1]), together[:, i:i + 1]) for i in range(64))
