"""Records of verified agent runs: a scripted run's calls become the exact token sequences the engine sent and the
replies it showed later calls; a run not verified gives no record."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from baobab.agents import Agent, Example, ExampleCall, ModelCalled, listen
from baobab.aio import run_sync
from baobab.engine import Choice, Request, ScriptedLLM, ToolCall
from baobab.tools import tool
from baobab.train import verified_records, write_jsonl
from baobab.train.trainer import tokenize


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def run(answer: str) -> tuple[list[tuple[Request, Choice]], str]:
    """A two-call run of a calculator with a worked example: a tool call, then `answer`; its calls and reply."""
    llm = ScriptedLLM([Choice(tool_calls=[ToolCall(id="c1", name="multiply", arguments='{"a": 31, "b": 47}')]),
                       answer])
    agent = Agent("calc", role="a calculator", instructions="Multiply with the tool.", model=llm, tools=[multiply],
                  examples=[Example(task="What is 12 * 12?", answer="144",
                                    calls=[ExampleCall(tool="multiply", arguments={"a": 12, "b": 12}, result="144")])])
    calls: list[tuple[Request, Choice]] = []
    with listen(lambda e: calls.append((e.request, e.choice)) if isinstance(e, ModelCalled) else None):
        reply = agent.run("What is 31 * 47?").text
    return calls, reply


def test_only_verified_runs_give_records_and_only_the_reply_is_learnt() -> None:
    right, wrong = run("1457"), run("1456")
    records = verified_records([(calls, reply == "1457") for calls, reply in (right, wrong)])
    assert len(records) == 2  # the right run's tool call and answer
    call, answer = (r["messages"] for r in records)
    assert call[-1] == {"role": "assistant", "content": '{"name": "multiply", "arguments": {"a": 31, "b": 47}}'}
    assert answer[-1] == {"role": "assistant", "content": '{"content": "1457"}'}  # tools offered: answers as JSON
    assert all(m.get("weight") == 0 for m in answer[:-1] if m["role"] == "assistant")  # example and earlier call
    assert answer[:len(call)] == [{**m, "weight": 0} if m["role"] == "assistant" else m for m in call]


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    """The default model's engine, small (only its prompts are used)."""
    from baobab.engine.local import LocalLLM

    llm = LocalLLM(slots=1, context=1024, threads=1, prefix_cache_mb=0, speculative=False)
    yield llm
    run_sync(llm.aclose())


def test_a_record_trains_on_the_tokens_the_engine_sent_and_showed(engine: Any, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from baobab.engine import weights

    path = weights.resolve(weights.DEFAULT_MODEL)
    trainer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)  # the trainer's, not the engine's
    calls, reply = run("1457")
    write_jsonl(tmp_path / "runs.jsonl", verified_records([(calls, reply == "1457")]))
    examples = tokenize(trainer, [tmp_path / "runs.jsonl"], 1024)
    sent = [engine.prompt_ids(request) for request, _ in calls]
    for example, prompt in zip(examples, sent, strict=True):
        start = example.learnt.index(1)
        assert example.ids[:start] == prompt and all(example.learnt[start:])  # the prompt, then the reply learnt
    assert sent[1][:len(examples[0].ids)] == examples[0].ids  # the first call's reply as the second call showed it
    answer = examples[1].ids[examples[1].learnt.index(1):]
    assert engine.decode(answer) == '{"content": "1457"}<|im_end|>\n'
