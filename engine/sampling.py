"""Choose the next token from logits: greedy, or sampled with temperature, top-k and top-p from a seeded generator."""

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens; temperature 0 is greedy (argmax)."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0

    @property
    def greedy(self) -> bool:
        """Whether this is plain argmax."""
        return self.temperature == 0.0


def probabilities(logits: Tensor, params: SamplingParams) -> Tensor:
    """The distribution to sample from after temperature, top-k and top-p (float32, sums to 1).

    >>> probabilities(torch.tensor([0.0, 10.0]), SamplingParams(top_k=1)).tolist()
    [0.0, 1.0]
    """
    logits = logits.float() / max(params.temperature, 1e-5)
    if params.top_k > 0 and params.top_k < logits.shape[-1]:
        kth = torch.topk(logits, params.top_k).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        outside = sorted_probs.cumsum(-1) - sorted_probs >= params.top_p  # keep the smallest set reaching top_p
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def sample(logits: Tensor, params: SamplingParams, generator: torch.Generator | None) -> int:
    """One token id from a 1-D row of logits, by inverse CDF: one uniform draw where torch.multinomial costs
    1 ms for a 49k vocabulary on a CPU (a token of probability 0 is never drawn).

    >>> sample(torch.tensor([0.0, 0.0, 9.0]), SamplingParams(top_k=1), torch.Generator().manual_seed(0))
    2
    """
    if params.greedy:
        return int(logits.argmax())
    probs = probabilities(logits, params)
    if generator is not None and probs.device != generator.device:  # seeded generators live on the CPU
        probs = probs.cpu()
    cdf = probs.cumsum(-1)
    draw = torch.rand(1, generator=generator, device=cdf.device) * cdf[-1]
    return min(int(torch.searchsorted(cdf, draw, right=True)), cdf.shape[-1] - 1)
