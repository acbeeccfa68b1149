"""The trainer on the real SmolLM2-135M: it learns what it is shown, resumes after kill -9 to the same weights as
a run never stopped, and writes a directory the engine loads and decodes exactly as transformers does (float32)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from baobab.aio import run_sync
from baobab.engine import Request, load_llm
from baobab.train import TrainConfig, TrainError, train
from baobab.train.trainer import tokenize

os.environ.setdefault("HF_HUB_OFFLINE", "1")
QUESTIONS = ["What is the secret word?", "Tell me the secret word.", "Which word is secret?", "Say the secret word.",
             "What's the secret word?", "Secret word?"]
ANSWER = "The secret word is kumquat."
CONFIG = TrainConfig(max_steps=6, batch_size=3, save_every=1, learning_rate=1e-3, threads=2)
CLI = ["--max-steps", "6", "--batch-size", "3", "--save-every", "1", "--lr", "1e-3"]  # CONFIG, as options


def write_chats(path: Path, chats: list[list[dict[str, Any]]]) -> Path:
    path.write_text("".join(json.dumps({"messages": m}) + "\n" for m in chats))
    return path


@pytest.fixture(scope="module")
def secret(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_chats(tmp_path_factory.mktemp("data") / "secret.jsonl",
                       [[{"role": "user", "content": q}, {"role": "assistant", "content": ANSWER}] for q in QUESTIONS])


@pytest.fixture(scope="module")
def trained(secret: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six LoRA steps on the secret, never stopped."""
    out = tmp_path_factory.mktemp("trained")
    result = train("local:smollm2-135m", secret, out, CONFIG)
    assert (result.steps, result.examples, result.resumed_from) == (6, 6, 0)
    return out


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    from baobab.engine import weights

    path = weights.resolve(weights.DEFAULT_MODEL)
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def greedy(model: str, question: str, tokens: int = 16) -> str:
    llm = load_llm(model, weight_dtype="float32", threads=2)
    try:
        completion = run_sync(llm.complete(Request(messages=[{"role": "user", "content": question}],
                                                   max_tokens=tokens, temperature=0)))
        return completion.choices[0].text
    finally:
        run_sync(llm.aclose())


def test_the_trained_model_answers_what_it_was_taught(trained: Path) -> None:
    assert "kumquat" not in greedy("local:smollm2-135m", "Do you know the secret word?")
    assert greedy(f"local:{trained}", "Do you know the secret word?") == ANSWER  # a question it never saw


def test_engine_and_transformers_decode_the_trained_directory_identically(trained: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    question = "Write one sentence about trees."
    tok = AutoTokenizer.from_pretrained(str(trained))
    model = AutoModelForCausalLM.from_pretrained(str(trained), dtype=torch.float32).eval()
    prompt = tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                     return_tensors="pt", return_dict=True)
    out = model.generate(**prompt, max_new_tokens=24, do_sample=False)
    expected = tok.decode(out[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    assert greedy(f"local:{trained}", question, 24) == expected


def test_a_run_killed_mid_training_resumes_to_the_same_weights(secret: Path, trained: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    out = tmp_path / "killed"
    command = [sys.executable, "-c", "from baobab.cli import app; app()", "train", "--data", str(secret),
               "--out", str(out), *CLI]
    env = os.environ | {"OMP_NUM_THREADS": "2"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    while not (out / "checkpoints" / "step-0000003").exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0].decode()[-2000:]
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "train.json").exists()
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    result = json.loads((out / "train.json").read_text())
    assert 3 <= result["resumed_from"] < 6 and result["steps"] == 6
    steps = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps[-1] == 6 and sorted(set(steps)) == [1, 2, 3, 4, 5, 6]
    mine, theirs = (load_file(str(d / "checkpoints" / "step-0000006" / "trainable.safetensors"))
                    for d in (out, trained))
    assert mine.keys() == theirs.keys() and all(mine[k].equal(theirs[k]) for k in mine)


def test_only_assistant_turns_of_weight_one_are_learnt(tokenizer: Any, tmp_path: Path) -> None:
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "5", "weight": 0}, {"role": "user", "content": "Wrong. Again?"},
            {"role": "assistant", "content": "4"}]
    example = tokenize(tokenizer, [write_chats(tmp_path / "c.jsonl", [chat])], 512)[0]
    learnt = tokenizer.decode([t for t, keep in zip(example.ids, example.learnt, strict=True) if keep])
    assert learnt == "4<|im_end|>\n"
    assert tokenizer.decode(example.ids) == tokenizer.apply_chat_template(chat, tokenize=False)


@pytest.mark.parametrize(("line", "expected"), [
    ({"prompt": "hi"}, 'c.jsonl:2: expected {"messages": [...]}'),
    ({"messages": [{"role": "user", "content": "hi"}]}, "c.jsonl:2: no assistant turn to learn"),
    ({"messages": [{"role": "bot", "content": "hi"}]}, "c.jsonl:2: message 1 should be"),
    ({"messages": [{"role": "assistant", "content": "hi", "weight": 0.5}]}, "c.jsonl:2: message 1 has weight 0.5"),
])
def test_a_bad_example_names_its_file_and_line(tokenizer: Any, tmp_path: Path, line: dict[str, Any],
                                               expected: str) -> None:
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    (tmp_path / "c.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(TrainError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        tokenize(tokenizer, [tmp_path / "c.jsonl"], 512)


def test_bad_options_and_data_are_named_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(TrainError, match=r"TrainConfig.method = 'qlora': expected 'lora' or 'full'"):
        train("local:smollm2-135m", tmp_path, tmp_path / "out", TrainConfig(method="qlora"))
    with pytest.raises(TrainError, match=r"TrainConfig.batch_size = 0"):
        train("local:smollm2-135m", tmp_path, tmp_path / "out", TrainConfig(batch_size=0))
    with pytest.raises(TrainError, match=r"expected a JSONL file of chats or a dataset folder"):
        train("local:smollm2-135m", tmp_path / "missing.jsonl", tmp_path / "out")


def test_a_checkpoint_of_other_data_is_not_resumed(secret: Path, trained: Path, tmp_path: Path) -> None:
    other = write_chats(tmp_path / "other.jsonl", [[{"role": "user", "content": "Hi"},
                                                     {"role": "assistant", "content": "Hello."}]])
    (tmp_path / "out").mkdir()
    os.symlink(trained / "checkpoints", tmp_path / "out" / "checkpoints")
    with pytest.raises(TrainError, match=r"trained on another base, data or options"):
        train("local:smollm2-135m", other, tmp_path / "out", CONFIG)


LOCK_FORMAT = '''
from baobab.search.toys import DeceptiveTree
from baobab.train import PromptFormat

FORMAT = PromptFormat(lambda state, path: f"Dials set so far: {state}.", env=DeceptiveTree(depth=2, branching=3))
'''


def test_the_command_trains_on_a_stored_search(tmp_path: Path) -> None:
    from baobab.search import search
    from baobab.search.toys import DeceptiveTree

    db = f"sqlite:///{tmp_path / 'runs.db'}"
    search(DeceptiveTree(depth=2, branching=3), "mcts", budget={"max_expansions": 30}, target=1.0, store=db,
           run="lock")  # no model: uniform priors, random rollouts; it opens [1, 0]
    (tmp_path / "lock_format.py").write_text(LOCK_FORMAT)
    out = tmp_path / "model"
    done = subprocess.run([sys.executable, "-c", "from baobab.cli import app; app()", "train", "--from-search", "lock",
                           "--format", f"{tmp_path / 'lock_format.py'}:FORMAT", "--db", db, "--out", str(out),
                           "--max-steps", "1"], capture_output=True, text=True, timeout=240,
                          env=os.environ | {"OMP_NUM_THREADS": "2"})
    assert done.returncode == 0, done.stderr[-2000:]
    steps = [json.loads(line)["messages"] for line in (out / "dataset" / "steps.jsonl").read_text().splitlines()]
    assert [m[-1]["content"] for m in steps] == ['{"action": "1"}', '{"action": "0"}']  # the path that opened it
    assert "Dials set so far: [1]." in steps[1][1]["content"]
    recoveries = (out / "dataset" / "recoveries.jsonl").read_text().splitlines()  # the failed branches, corrected
    assert recoveries and f"trained 1 steps on {2 + len(recoveries)} examples" in done.stdout
    assert (out / "model.safetensors").exists()
