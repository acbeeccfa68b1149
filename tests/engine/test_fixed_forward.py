"""Fixed-shape steps (what CUDA graphs replay): the same logits and tokens as the row-by-row forward."""

from typing import Any

import pytest
import torch

from baobab.aio import run_sync
from baobab.engine import weights
from baobab.engine.fixed_forward import FixedForward
from baobab.engine.local import LocalLLM
from baobab.engine.model import Llama, Row

PROMPTS = [[{"role": "user", "content": text}] for text in (
    "List three colours.", "Write a Python function that adds two numbers.",
    "Copy this line twice: id=7, name=ada, score=3", "What is the capital of France?")]


def _model(device: str) -> Llama:
    files = weights.load(weights.resolve(weights.DEFAULT_MODEL), torch.float32)
    return Llama.from_weights(files, slots=4, max_len=512, device=device, spare_slots=1)


def _steps_agree(model: Llama, forward: FixedForward) -> None:
    """A batch of two rows, padded to a bucket, gives the row path's logits; and a one-token
    decode step after it too (the keys and values it wrote are the right ones, in the right places)."""
    device = model.inv_freq.device
    prompts = [list(range(10, 40)), list(range(50, 67))]
    for slot, prompt in enumerate(prompts):
        model(torch.tensor([prompt], device=device), [Row(slot, 0)])
    rows = [Row(0, len(prompts[0])), Row(1, len(prompts[1]))]
    tokens = [[5, 6, 7, 8], [9, 10, 11, 12]]
    expected = model(torch.tensor(tokens, device=device), rows, all_logits=True)
    for slot, prompt in enumerate(prompts):  # the same cached prompts, written again
        model(torch.tensor([prompt], device=device), [Row(slot, 0)])
    got = forward(tokens, rows)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    expected_next = model(torch.tensor([[3]], device=device), [Row(0, len(prompts[0]) + 4)], all_logits=True)
    got_next = forward([[3]], [Row(0, len(prompts[0]) + 4)])
    torch.testing.assert_close(got_next, expected_next, rtol=1e-4, atol=1e-4)


def test_padded_step_matches_the_row_path_on_the_cpu() -> None:
    model = _model("cpu")
    _steps_agree(model, FixedForward(model, graphs=False))


def test_every_step_shape_is_listed_ahead() -> None:
    """`shapes` names every padded shape a step of up to 32 tokens per row can take: a GPU captures them all
    at start-up."""
    forward = FixedForward(_model("cpu"), graphs=False)
    listed = set(forward.shapes(32))
    seen = {forward.shape(rows, length, start + length) for rows in range(1, 5) for length in range(1, 33)
            for start in range(0, 512 - length + 1)}
    assert seen == listed
    assert {length for _, length, _ in listed} == {1, 2, 4, 8, 16, 32}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU (run on the device machine)")
def test_cuda_graph_step_matches_the_row_path() -> None:
    model = _model("cuda")
    forward = FixedForward(model, graphs=True)
    _steps_agree(model, forward)
    _steps_agree(model, forward)  # the second time replays the captured graphs
    assert forward._captured


@pytest.mark.timeout(600)
def test_fixed_steps_decode_the_same_tokens(local_llm: Any) -> None:
    """Greedy output with padded steps equals the row path's, with and without speculation (float32)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    options: dict[str, Any] = {"slots": 4, "context": 512, "threads": 2, "prefix_cache_mb": 0,
                               "weight_dtype": "float32", "fixed_steps": True, "device": device}
    fixed_plain, fixed_spec = LocalLLM(speculative=False, **options), LocalLLM(**options)
    spec = fixed_spec.scheduler  # flat costs: draft whatever is found (the graphs' table on a GPU)
    spec.fix_costs({1: 1.0, 32: 1.0}, {}, (0.0, 0.0))
    spec.fixed_ms = dict.fromkeys(spec.fixed_ms, 1.0)
    captured = len(spec._fixed._captured) if spec._fixed is not None else 0
    try:
        for messages in PROMPTS:
            want = local_llm.complete_sync(messages=messages, max_tokens=24, temperature=0).choices[0].token_ids
            assert fixed_plain.complete_sync(messages=messages, max_tokens=24, temperature=0).choices[0].token_ids \
                == want
            for _ in range(2):  # the second time its own earlier output drafts
                got = fixed_spec.complete_sync(messages=messages, max_tokens=24, temperature=0)
                assert got.choices[0].token_ids == want
        assert got.usage.accepted_tokens > 0
        if device == "cuda":  # every shape was captured at start-up, none mid-request
            assert captured == len(spec.fixed_ms) and spec._fixed is not None
            assert len(spec._fixed._captured) == captured
    finally:
        run_sync(fixed_plain.aclose())
        run_sync(fixed_spec.aclose())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU (run on the device machine)")
def test_a_prefix_hit_replays_a_graph_for_the_rest_of_its_prompt() -> None:
    """The one new token of a repeated prompt goes through a captured graph (not an eager forward of hundreds
    of kernel launches), and the answer is the same."""
    llm = LocalLLM(slots=2, context=512, threads=2, prefix_cache_mb=64, device="cuda", weight_dtype="float32",
                   speculative=False)
    scheduler, replays = llm.scheduler, []
    forward = scheduler._forward

    def counted(tokens: list[list[int]], rows: list[Row]) -> Any:
        replays.append(len(tokens[0]))
        return forward(tokens, rows)

    scheduler._forward = counted  # type: ignore[method-assign]
    try:
        first = llm.complete_sync(messages=PROMPTS[2], max_tokens=16, temperature=0)
        cold = len(replays)
        again = llm.complete_sync(messages=PROMPTS[2], max_tokens=16, temperature=0)
        assert again.usage.cached_tokens == again.usage.prompt_tokens - 1
        assert again.choices[0].token_ids == first.choices[0].token_ids
        assert len(replays) == 2 * cold + 1  # the same decode steps, and the first token's forward replayed too
    finally:
        run_sync(llm.aclose())


def test_a_gpu_kv_cache_that_cannot_fit_is_refused_saying_what_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU the cache is allocated whole at start: one too big for the memory left beside the weights is
    refused before allocating, naming how many slots of that context fit."""
    from baobab.engine.model import KVCache, _check_fits

    config = weights.load(weights.resolve(weights.DEFAULT_MODEL)).config  # 30 layers x 3 heads x 64: 46 KB a token
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (4 * 10**9, 80 * 10**9))
    per_slot = 2 * config.n_layers * config.n_kv_heads * 4096 * config.head_dim * 4
    with pytest.raises(ValueError, match=r"64 slots x 4,096 tokens needs 12\.3 GB.*use at most 12 slots") as error:
        KVCache(config, 64, 4096, torch.float32, torch.device("cuda"), spare=1, weight_bytes=10**9)
    assert per_slot == 188_743_680 and "2.6 GB of cuda are left" in str(error.value)
    _check_fits(12 * per_slot + per_slot, 10**9, 12, 1, 4096, torch.device("cuda"))  # 12 slots and the spare fit
    with pytest.raises(ValueError, match="at most 12 slots"):
        _check_fits(13 * per_slot + per_slot, 10**9, 13, 1, 4096, torch.device("cuda"))
