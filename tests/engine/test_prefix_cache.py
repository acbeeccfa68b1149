"""The radix-tree prefix cache: longest-prefix reuse, splits, LRU eviction within its bound; and on the real
model, reuse that changes speed but not output."""

from typing import Any

import torch

from baobab.engine.model import KVCache
from baobab.engine.prefix_cache import PrefixCache
from baobab.engine.weights import LlamaConfig

CONFIG = LlamaConfig(vocab_size=100, dim=8, n_layers=2, n_heads=2, n_kv_heads=1, hidden_dim=16, head_dim=4)


def kv_with(tokens: list[int], slot: int = 0, slots: int = 3) -> KVCache:
    """A cache whose slot holds, at each position, the token id as its key and value (easy to check)."""
    kv = KVCache(CONFIG, slots=slots, max_len=64, dtype=torch.float32, device=torch.device("cpu"))
    for position, token in enumerate(tokens):
        kv.k[:, slot, :, position] = float(token)
        kv.v[:, slot, :, position] = -float(token)
    return kv


def held(kv: KVCache, slot: int, length: int) -> list[int]:
    return [int(x) for x in kv.k[0, slot, 0, :length, 0]]


def test_longest_prefix_is_copied_into_the_slot() -> None:
    cache = PrefixCache(capacity=100)
    source = kv_with([1, 2, 3, 4, 5])
    cache.insert([1, 2, 3, 4, 5], source, slot=0)
    target = kv_with([], slot=1)
    assert cache.load([1, 2, 3, 9, 9], target, slot=1) == 3
    assert held(target, 1, 3) == [1, 2, 3] and int(target.v[1, 1, 0, 2, 3]) == -3
    assert cache.load([7, 1, 2], target, slot=1) == 0


def test_a_diverging_insert_splits_the_edge_and_both_branches_load() -> None:
    cache = PrefixCache(capacity=100)
    cache.insert([1, 2, 3, 4], kv_with([1, 2, 3, 4]), slot=0)
    cache.insert([1, 2, 8, 9, 10], kv_with([1, 2, 8, 9, 10]), slot=0)
    assert cache.size == 7  # 1 2 shared, then 3 4 and 8 9 10
    target = kv_with([], slot=2)
    assert cache.load([1, 2, 3, 4, 5], target, slot=2) == 4 and held(target, 2, 4) == [1, 2, 3, 4]
    assert cache.load([1, 2, 8, 9, 10, 11], target, slot=2) == 5 and held(target, 2, 5) == [1, 2, 8, 9, 10]
    cache.insert([1, 2, 3, 4], kv_with([1, 2, 3, 4]), slot=0)
    assert cache.size == 7  # nothing new


def test_least_recently_used_leaves_go_first_and_size_stays_bounded() -> None:
    cache = PrefixCache(capacity=6)
    cache.insert([1, 2, 3], kv_with([1, 2, 3]), slot=0)
    cache.insert([4, 5, 6], kv_with([4, 5, 6]), slot=0)
    cache.load([1, 2, 3], kv_with([]), slot=1)  # [1 2 3] is now the recent one
    cache.insert([7, 8], kv_with([7, 8]), slot=0)
    assert cache.size <= 6
    assert cache.load([4, 5, 6], kv_with([]), slot=1) == 0
    assert cache.load([1, 2, 3], kv_with([]), slot=1) == 3
    cache.insert(list(range(10, 20)), kv_with(list(range(10, 20))), slot=0)  # bigger than the whole cache
    assert cache.size <= 6


def test_real_model_reuses_history_and_answers_the_same(local_llm: Any) -> None:
    doc = " ".join(f"Item {i} costs {i * 3} coins." for i in range(40))
    messages = [{"role": "user", "content": doc + "\nWhat does item 5 cost?"}]
    cold = local_llm.complete_sync(messages=messages, max_tokens=16, temperature=0)
    warm = local_llm.complete_sync(messages=messages, max_tokens=16, temperature=0)
    assert warm.text == cold.text and warm.usage.cached_tokens == warm.usage.prompt_tokens - 1
    assert warm.usage.time_to_first_token < cold.usage.time_to_first_token
    follow = [*messages, {"role": "assistant", "content": cold.text}, {"role": "user", "content": "And item 6?"}]
    turn = local_llm.complete_sync(messages=follow, max_tokens=16, temperature=0)
    assert turn.usage.cached_tokens >= cold.usage.prompt_tokens  # the answer was kept too
    prompt = local_llm.prompt_ids(local_llm_request(follow))
    ids = torch.tensor([prompt])
    from baobab.engine.model import Row

    logits = local_llm.scheduler.run_on_engine(lambda: local_llm.model(ids, [Row(7, 0)]))  # no cache: recompute
    assert int(logits[0].argmax()) == (turn.choices[0].token_ids or [-1])[0]


def local_llm_request(messages: list[dict[str, str]]) -> Any:
    from baobab.engine import Request

    return Request.model_validate({"messages": messages})
