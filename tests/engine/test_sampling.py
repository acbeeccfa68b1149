"""Token sampling: the drawn frequencies follow the distribution, top-k/top-p cut it, a seed repeats it."""

import torch
from stats import chi2_critical

from baobab.engine.sampling import SamplingParams, probabilities, sample


def test_draws_follow_the_distribution_and_never_pick_an_impossible_token() -> None:
    logits = torch.tensor([0.0, 1.0, 2.0, float("-inf"), 0.5, -3.0])
    params = SamplingParams(temperature=0.8)
    generator = torch.Generator().manual_seed(7)
    draws = [sample(logits, params, generator) for _ in range(20_000)]
    counts = torch.bincount(torch.tensor(draws), minlength=len(logits))
    assert counts[3] == 0
    expected = probabilities(logits, params) * len(draws)
    possible = expected > 0
    statistic = float(((counts[possible] - expected[possible]) ** 2 / expected[possible]).sum())
    assert statistic < chi2_critical(int(possible.sum()) - 1)


def test_top_k_and_top_p_leave_only_the_likeliest_tokens() -> None:
    logits = torch.tensor([3.0, 2.9, 0.0, -1.0, 1.0])
    generator = torch.Generator().manual_seed(0)
    assert {sample(logits, SamplingParams(top_k=2), generator) for _ in range(300)} == {0, 1}
    assert {sample(logits, SamplingParams(top_p=0.5), generator) for _ in range(300)} <= {0, 1}


def test_the_same_seed_draws_the_same_tokens() -> None:
    logits = torch.randn(49_152, generator=torch.Generator().manual_seed(1))

    def draws(seed: int) -> list[int]:
        generator = torch.Generator().manual_seed(seed)
        return [sample(logits, SamplingParams(), generator) for _ in range(50)]

    assert draws(3) == draws(3) != draws(4)
