"""A draft model: a smaller model with the target's tokenizer guesses the next few tokens, one at a time.

Classic speculative decoding (Leviathan et al. 2023; Chen et al. 2023): the draft model decodes a greedy
chain, the target verifies it in one forward, and its own choices decide, so outputs stay the target's.
The draft model keeps each sequence's keys and values in a slot of its own; a step feeds it only the tokens
committed since it last drafted (its cache is valid up to where its guesses and the target parted).
"""

from dataclasses import dataclass, field

import torch

from baobab.engine import weights
from baobab.engine.drafters import Draft
from baobab.engine.model import Llama, Row, dtypes


@dataclass
class _Chain:
    slot: int
    tokens: list[int]  # committed: the prompt and the output so far
    sampled: bool
    cached: int = 0  # committed tokens whose keys and values the slot holds,
    guesses: list[int] = field(default_factory=list)  # and the drafted ones it holds after them


class ModelDrafter:
    """Drafts a greedy chain of up to `depth` tokens with `model` (a name, .gguf file or Hugging Face
    directory, as for `LocalLLM`), which must share the target's tokenizer; it stops early once the chain's
    probability under the draft model falls below `min_probability`. Scores are those probabilities. Up to
    `slots` sequences have a draft slot (more get no draft), each up to `context` tokens; they draft one after
    another, not yet batched together. The scheduler's cost model prices the verify, not the drafting: a draft
    model pays where it is several times cheaper than the target.

    >>> llm = LocalLLM("smollm2-1.7b.gguf", speculative=ModelDrafter("smollm2-135m"))  # doctest: +SKIP
    """

    def __init__(self, model: str = weights.DEFAULT_MODEL, *, dtype: str = "float32", weight_dtype: str | None = None,
                 depth: int = 4, min_probability: float = 0.25, slots: int = 8, context: int = 4096,
                 device: str = "cpu") -> None:
        if depth < 1 or not 0 <= min_probability < 1:
            raise ValueError(f"ModelDrafter needs depth >= 1 and 0 <= min_probability < 1, got {depth} and "
                             f"{min_probability}")
        self.dtype, self.storage = dtypes(dtype, weight_dtype, device)
        self.path = weights.resolve(model)
        self.depth, self.min_probability, self.slots, self.context, self.device = (depth, min_probability, slots,
                                                                                  context, device)
        self.model: Llama | None = None
        self.sequences: dict[int, _Chain] = {}
        self._free = list(range(slots))

    def prepare(self) -> None:
        """Load the draft model (on the engine thread, like all torch work)."""
        if self.model is None:
            files = weights.load(self.path, self.dtype)
            self.model = Llama.from_weights(files, slots=self.slots, max_len=self.context, device=self.device,
                                            weight_dtype=self.storage)

    def __contains__(self, key: int) -> bool:
        return key in self.sequences

    def begin(self, key: int, group: int, prompt: list[int], *, sampled: bool = False) -> None:
        """A sequence starts: it gets a slot if one is free (its prompt is fed when it first drafts)."""
        self.sequences[key] = _Chain(self._free.pop() if self._free else -1, list(prompt), sampled)

    def extend(self, key: int, tokens: list[int]) -> None:
        """Tokens the sequence has committed."""
        self.sequences[key].tokens.extend(tokens)

    def end(self, key: int, output: list[int]) -> None:
        """The sequence finished: its slot is free again."""
        chain = self.sequences.pop(key)
        if chain.slot >= 0:
            self._free.append(chain.slot)

    def observe(self, key: int, draft: Draft, tries: int, accepted: int) -> None:
        """Nothing to learn: a draft model's scores are its own probabilities."""

    @torch.inference_mode()
    def draft(self, key: int, budget: int) -> Draft:
        """A greedy chain of up to min(`budget`, depth) tokens after the sequence's last one."""
        chain = self.sequences[key]
        assert self.model is not None, "ModelDrafter.prepare() loads the model first"
        if chain.slot < 0 or budget <= 0 or len(chain.tokens) + self.depth >= self.model.cache.max_len:
            return Draft()
        kept = next((i for i, (a, b) in enumerate(zip(chain.guesses, chain.tokens[chain.cached:], strict=False))
                     if a != b), min(len(chain.guesses), len(chain.tokens) - chain.cached))  # guesses that came true
        start = min(chain.cached + kept, len(chain.tokens) - 1)  # at least the last token: its logits guess the next
        feed, tokens, scores, probability = chain.tokens[start:], list[int](), list[float](), 1.0
        while len(tokens) < min(budget, self.depth):
            logits = self.model(torch.tensor([feed], device=self.model.cache.k.device), [Row(chain.slot, start)])
            start += len(feed)
            p, token = torch.softmax(logits[0].float(), -1).max(-1)
            probability *= float(p)
            if tokens and probability < self.min_probability:
                break
            tokens.append(int(token))
            scores.append(probability)
            feed = tokens[-1:]
        chain.cached, chain.guesses = len(chain.tokens), tokens[:-1]
        return Draft(tokens, list(range(-1, len(tokens) - 1)), scores, 0, chain.sampled)
