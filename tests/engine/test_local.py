"""The embedded engine on the real SmolLM2-135M: parity with Hugging Face transformers, sampling,
batching, stop conditions, streaming and cancellation."""

import asyncio
from typing import Any

import pytest
import torch

from baobab.engine import RequestError
from baobab.engine.model import Row
from baobab.engine.tokenizer import TextStream

PROMPTS = [
    "What is 2+2?", "Name three primary colors.", "Write a haiku about the sea.", "Explain photosynthesis briefly.",
    "What is the capital of Japan?", "Translate 'good morning' into French.", "List the days of the week.",
    "Who wrote Romeo and Juliet?", "Give me a tip for learning to code.", "What is a prime number?",
    "Describe a cat in one sentence.", "How many legs does a spider have?", "What does CPU stand for?",
    "Write a Python function that adds two numbers.", "Why is the sky blue?", "Suggest a name for a dog.",
    "What is the boiling point of water in Celsius?", "Summarise the plot of Cinderella.",
    "What is 12 times 12?", "Tell me a fun fact about octopuses.",
]


def chat_ids(llm: Any, text: str) -> list[int]:
    return llm.tokenizer.encode(llm.tokenizer.render([{"role": "user", "content": text}]))


def test_logits_match_transformers_in_fp32(local_llm: Any, hf_model: Any) -> None:
    for text in PROMPTS[:4]:
        ids = torch.tensor([chat_ids(local_llm, text)])
        ours = local_llm.scheduler.run_on_engine(lambda i=ids: local_llm.model(i, [Row(7, 0)], all_logits=True))
        with torch.no_grad():
            ref = hf_model(ids).logits
        assert ((ours - ref).abs().max() / ref.abs().max()).item() < 1e-4


def test_tokenizer_and_chat_template_match_transformers(local_llm: Any, hf_tokenizer: Any) -> None:
    texts = ["Hello world", "The year 2024 had 366 days.", "  spaces\n\nand\ttabs", "émoji 🎉 中文",
             "def f(x):\n    return x**2", "<|im_start|>user\nhi<|im_end|>", "don't you'll"]
    for text in texts:
        assert local_llm.tokenizer.encode(text) == hf_tokenizer.encode(text, add_special_tokens=False)
        assert local_llm.tokenizer.decode(local_llm.tokenizer.encode(text)) == text
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    expected = hf_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert local_llm.tokenizer.render(messages) == expected


def test_greedy_tokens_match_transformers_generate(local_llm: Any, hf_model: Any) -> None:
    """20 prompts x 64 new tokens; a divergence must be a near-tie in the reference's own logits."""
    async def ours() -> list[Any]:
        return await asyncio.gather(*(local_llm.complete(messages=[{"role": "user", "content": p}], max_tokens=64,
                                                         temperature=0) for p in PROMPTS))

    completions = asyncio.run(ours())
    for text, completion in zip(PROMPTS, completions, strict=True):
        prompt = chat_ids(local_llm, text)
        with torch.no_grad():
            out = hf_model.generate(torch.tensor([prompt]), max_new_tokens=64, do_sample=False,
                                    output_logits=True, return_dict_in_generate=True)
        ref = out.sequences[0, len(prompt):].tolist()
        got = completion.choices[0].token_ids
        eos = [t for t in ref if t in local_llm.tokenizer.eos_ids]
        ref = ref[:ref.index(eos[0])] if eos else ref
        if got != ref:
            at = next(i for i, (a, b) in enumerate(zip([*(got or []), -1], [*ref, -2], strict=False)) if a != b)
            top2 = torch.topk(out.logits[at][0], 2).values
            assert (top2[0] - top2[1]).item() < 1e-3, f"{text!r} diverged at token {at} without a near-tie"


def test_same_seed_same_sample_and_batching_does_not_change_it(local_llm: Any) -> None:
    request = {"messages": [{"role": "user", "content": "Write a short poem."}], "max_tokens": 24,
               "temperature": 0.9, "top_p": 0.95, "top_k": 50, "seed": 11}
    alone = local_llm.complete_sync(**request).text

    async def crowded() -> list[str]:
        results = await asyncio.gather(
            local_llm.complete(**request),
            *(local_llm.complete(prompt=f"Noise {i}", max_tokens=24, temperature=1.0) for i in range(3)))
        return [r.text for r in results]

    assert asyncio.run(crowded())[0] == alone
    assert local_llm.complete_sync(**{**request, "seed": 12}).text != alone


def test_n_samples_share_the_prompt_and_differ(local_llm: Any) -> None:
    result = local_llm.complete_sync(messages=[{"role": "user", "content": "Name an animal."}], n=4,
                                     max_tokens=12, temperature=1.0, seed=3)
    assert [c.index for c in result.choices] == [0, 1, 2, 3]
    assert len({c.text for c in result.choices}) > 1
    assert result.usage.prompt_tokens == len(chat_ids(local_llm, "Name an animal."))
    assert result.usage.completion_tokens == sum(len(c.token_ids or []) for c in result.choices)


def test_stop_strings_and_max_tokens(local_llm: Any) -> None:
    stopped = local_llm.complete_sync(prompt="The capital of France is", max_tokens=20, temperature=0, stop=["."])
    assert stopped.text == " Paris" and stopped.choices[0].finish_reason == "stop"
    cut = local_llm.complete_sync(prompt="Count: 1, 2, 3,", max_tokens=5, temperature=0)
    assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 5


def test_stream_pieces_add_up_to_the_completion(local_llm: Any) -> None:
    request = {"messages": [{"role": "user", "content": "Describe rain."}], "max_tokens": 30, "temperature": 0}
    chunks = list(local_llm.stream_sync(**request))
    assert len([c for c in chunks if c.text]) > 3
    assert "".join(c.text for c in chunks) == local_llm.complete_sync(**request).text
    assert chunks[-1].finish_reason in ("stop", "length") and chunks[-1].usage is not None
    assert chunks[-1].usage.time_to_first_token > 0


def test_a_stop_string_is_never_streamed_even_in_part(local_llm: Any) -> None:
    request: dict[str, Any] = {"messages": [{"role": "user", "content": "Describe rain."}], "max_tokens": 40,
                               "temperature": 0}
    full = local_llm.complete_sync(**request).text
    words = full.split()
    stop = " ".join(words[4:7])  # several tokens, in the middle of the answer
    chunks = list(local_llm.stream_sync(**request, stop=[stop]))
    assert "".join(c.text for c in chunks) == full[:full.index(stop)]
    assert chunks[-1].finish_reason == "stop"


def test_text_stream_decodes_multibyte_characters_whole(local_llm: Any) -> None:
    text = "Grüße 🌍🚀 — naïve café, 東京."
    ids = local_llm.tokenizer.encode(text)
    stream = TextStream(local_llm.tokenizer.decode)
    pieces = [stream.push(i) for i in ids]
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
    assert len(ids) > len(text.split())  # the emoji take several byte tokens each


def test_a_cancelled_stream_frees_its_slot(local_llm: Any) -> None:
    async def main() -> None:
        stream = local_llm.stream(prompt="Once upon a time", max_tokens=500, temperature=0)
        async for chunk in stream:
            if chunk.text:
                break
        await stream.aclose()
        for _ in range(100):
            if len(local_llm.scheduler._free) == local_llm.scheduler.slots:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the slot was not freed")

    asyncio.run(main())
    assert local_llm.complete_sync(prompt="Hi", max_tokens=3, temperature=0).usage.completion_tokens >= 1


def test_too_long_or_too_many(local_llm: Any) -> None:
    with pytest.raises(RequestError, match="does not fit the context of 2048"):
        local_llm.complete_sync(prompt="word " * 3000, max_tokens=5)
    with pytest.raises(RequestError, match="n=9 samples need more than the engine's 8 slots"):
        local_llm.complete_sync(prompt="hi", n=9, max_tokens=2)
