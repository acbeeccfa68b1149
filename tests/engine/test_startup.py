"""Starting the local engine: a second start takes its weights and forward costs from the disk cache, a broken
cache file is ignored, and Ctrl-C while loading ends the process cleanly (no C++ abort from a thread in torch)."""

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from baobab.engine import disk_cache, weights

START = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
from baobab.engine.local import LocalLLM
llm = LocalLLM(slots=2, context=512, progress=lambda step: print(step, flush=True))
answer = llm.complete_sync(prompt="The capital of France is", max_tokens=3, temperature=0).text
print("measured before the answer:", llm.scheduler.costs_measured.is_set())
assert llm.scheduler.costs_measured.wait(600)  # measured while idle, after the answer
print(answer)
"""


def start(cache: Path, code: str = START) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BAOBAB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_a_second_start_reads_the_cache_and_times_nothing(tmp_path: Path) -> None:
    first = start(tmp_path)
    assert first.returncode == 0, first.stderr
    assert "forward costs measured" in first.stderr
    assert "measured before the answer: False" in first.stdout  # the request did not wait for the measurement
    assert sorted(p.name.split("-")[0] for p in tmp_path.iterdir()) == ["costs", "weights"]
    second = start(tmp_path)
    assert second.returncode == 0, second.stderr
    assert "forward costs from" in second.stderr and "forward costs measured" not in second.stderr
    assert "measured before the answer: True" in second.stdout
    assert second.stdout.splitlines()[-1] == first.stdout.splitlines()[-1]  # the same answer from mapped weights


def interrupted(command: list[str], cache: Path, loading: str) -> subprocess.CompletedProcess[str]:
    """`command` run with an empty cache and sent SIGINT once a line of its output says it is `loading`."""
    env = {**os.environ, "BAOBAB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if loading in line:
            break
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(command, proc.returncode, "".join(lines) + rest)


def test_ctrl_c_while_a_script_loads_the_model_raises_keyboard_interrupt(tmp_path: Path) -> None:
    code = "from baobab.engine.local import LocalLLM; LocalLLM(progress=lambda step: print(step, flush=True))"
    result = interrupted([sys.executable, "-c", code], tmp_path, "reading weights")
    assert "terminate called" not in result.stdout
    assert result.returncode in (130, -signal.SIGINT), result.stdout  # python's own exit for KeyboardInterrupt
    assert result.stdout.rstrip().endswith("KeyboardInterrupt"), result.stdout


def test_ctrl_c_while_the_cli_loads_the_model_exits_130(tmp_path: Path) -> None:
    result = interrupted(["baobab", "serve", "--port", "0"], tmp_path, "loading smollm2-135m: reading weights")
    assert "terminate called" not in result.stdout
    assert result.returncode == 130, result.stdout
    assert result.stdout.splitlines()[-1] == "interrupted while loading local:smollm2-135m"


def test_an_unreadable_cost_table_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("BAOBAB_CACHE", str(tmp_path))
    file = disk_cache.entry("costs", "json", threads=2)
    disk_cache.write_json(file, {"verify_ms": {"1": 2.0}})
    assert disk_cache.read_json(file) == {"verify_ms": {"1": 2.0}}
    assert disk_cache.read_json(file, max_age_s=-1) is None  # stale: measured again
    file.write_text('{"written": 1, "val')
    with caplog.at_level(logging.WARNING):
        assert disk_cache.read_json(file) is None
    assert "ignoring the unreadable cache file" in caplog.text


def test_the_cost_table_is_keyed_by_threads_and_machine() -> None:
    assert disk_cache.entry("costs", "json", threads=2) != disk_cache.entry("costs", "json", threads=4)
    assert disk_cache.machine()["cpu"]
    assert disk_cache.machine()["torch"] == torch.__version__


def test_an_unreadable_weights_file_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("BAOBAB_CACHE", str(tmp_path))
    path = weights.resolve(weights.DEFAULT_MODEL)
    loaded = disk_cache.load_weights(path, torch.float32, torch.bfloat16)
    [file] = tmp_path.iterdir()
    file.write_bytes(file.read_bytes()[:1000])  # a copy cut short
    with caplog.at_level(logging.WARNING):
        again = disk_cache.load_weights(path, torch.float32, torch.bfloat16)
    assert "ignoring the unreadable cache file" in caplog.text
    mapped = disk_cache.load_weights(path, torch.float32, torch.bfloat16)
    assert mapped.config == loaded.config and mapped.tokenizer == loaded.tokenizer
    assert mapped.chat_template == loaded.chat_template and mapped.source == loaded.source
    for name, tensor in loaded.tensors.items():
        assert torch.equal(mapped.tensors[name], tensor) and torch.equal(again.tensors[name], tensor), name
    assert mapped.tensors["model.layers.0.mlp.up_proj.weight"].dtype == torch.bfloat16  # stored as `Linear` keeps it
    assert mapped.tensors["model.embed_tokens.codes"].dtype == torch.int8  # the GGUF's 8-bit table, as it is


def test_old_weights_files_are_deleted_the_most_recently_used_kept(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Each upgrade or dtype makes a new weights file of a model's size: only the last `KEEP_WEIGHTS` used stay."""
    monkeypatch.setenv("BAOBAB_CACHE", str(tmp_path))
    for age in range(6):
        file = tmp_path / f"weights-{age}.safetensors"
        file.write_bytes(b"x")
        os.utime(file, (1000 - age, 1000 - age))
    (tmp_path / "costs-0.json").write_text("{}")
    os.utime(tmp_path / "weights-5.safetensors")  # the oldest file, used just now
    disk_cache.prune("weights", 4)
    assert sorted(f.name for f in tmp_path.iterdir()) == [
        "costs-0.json", "weights-0.safetensors", "weights-1.safetensors", "weights-2.safetensors",
        "weights-5.safetensors"]
