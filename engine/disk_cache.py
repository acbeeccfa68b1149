"""What every start of the local engine would otherwise redo: a model's converted weights and this machine's
forward costs, kept under $BAOBAB_CACHE (else $XDG_CACHE_HOME/baobab or ~/.cache/baobab).

Each entry is one file named by a hash of everything its content depends on, so a changed model file, dtype,
thread count or torch version finds no entry and makes a new one. A file that cannot be read is ignored with a
warning and made again; writes go to a temporary file renamed into place, so readers never see half of one.
"""

import hashlib
import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from baobab.engine import weights
from baobab.engine.weights import LlamaConfig, WeightFiles

log = logging.getLogger(__name__)
STALE_AFTER_S = 7 * 24 * 3600  # measured costs older than this are measured again (a busier machine, a new kernel)
NARROW = ("_proj.weight", "lm_head.weight")  # the projections `Linear` stores in the weights' type
KEEP_WEIGHTS = 4  # weights files kept, the most recently used: each is a model's size, and upgrades make new ones


def directory() -> Path:
    """Where cached files go."""
    if os.environ.get("BAOBAB_CACHE"):
        return Path(os.environ["BAOBAB_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "baobab"


def entry(kind: str, suffix: str, **parts: Any) -> Path:
    """The file of one entry: `kind-HASH.suffix`, the hash of `parts` (JSON-able, or shown with str).

    >>> entry("costs", "json", threads=2) != entry("costs", "json", threads=4)
    True
    """
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]
    return directory() / f"{kind}-{digest}.{suffix}"


def model_identity(path: Path) -> list[tuple[str, int, int]]:
    """A model file's (or a model directory's files') path, size and modification time."""
    files = sorted(f for f in path.iterdir() if f.is_file()) if path.is_dir() else [path]
    return [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]


def machine() -> dict[str, str]:
    """What a forward's speed depends on beyond the model: the CPU and torch."""
    cpu = platform.processor()
    try:
        names = [line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")]
        cpu = names[0].partition(":")[2].strip() if names else cpu
    except OSError:
        pass
    return {"cpu": cpu, "torch": torch.__version__}


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Make `path` with `write(temporary path)` and rename it into place; a failure only logs a warning."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        os.close(fd)
        try:
            write(Path(temporary))
            os.replace(temporary, path)
        finally:
            Path(temporary).unlink(missing_ok=True)
    except OSError as exc:  # a read-only or full disk: the engine runs on, uncached
        log.warning("could not write the cache file %s: %s", path, exc)


def prune(kind: str, keep: int) -> None:
    """Delete all but the `keep` most recently used entries of `kind` (use sets a file's modification time)."""
    dated = []
    for file in directory().glob(f"{kind}-*"):
        try:
            dated.append((file.stat().st_mtime, file))
        except FileNotFoundError:  # pruned meanwhile by another process
            continue
    for _, file in sorted(dated, reverse=True)[keep:]:
        try:
            file.unlink(missing_ok=True)  # a process that maps it keeps its pages
        except OSError as exc:
            log.warning("could not delete the old cache file %s: %s", file, exc)


def read_json(path: Path, max_age_s: float | None = None) -> dict[str, Any] | None:
    """A JSON entry written by `write_json`, or None when absent, older than `max_age_s` or unreadable."""
    try:
        data = json.loads(path.read_text())
        if max_age_s is not None and time.time() - float(data["written"]) > max_age_s:
            return None
        value: dict[str, Any] = data["value"]
        return value
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring the unreadable cache file %s: %s", path, exc)
        return None


def write_json(path: Path, value: dict[str, Any]) -> None:
    """Store `value` with the time it was written."""
    write_atomic(path, lambda temporary: temporary.write_text(json.dumps({"written": time.time(), "value": value})))


def load_weights(path: Path, dtype: torch.dtype, storage: torch.dtype | str) -> WeightFiles:
    """`weights.load(path, dtype)` with the projections already in `storage`'s type (a float type: what `Linear`
    would convert them to), from a memory-mapped safetensors file after the first time: reading a GGUF file
    means parsing its vocabulary and dequantizing every tensor, seconds that a mapped file does not cost."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    file = entry("weights", "safetensors", model=model_identity(path), dtype=dtype, store=storage,
                 torch=torch.__version__, code=hashlib.sha256(Path(weights.__file__).read_bytes()).hexdigest())
    if file.exists():
        try:
            with safe_open(str(file), "pt") as f:
                data = json.loads(f.metadata()["checkpoint"])
            # the file stays mapped, and resident, while any of its tensors lives: those the model may keep as
            # they are (in the activations' type) are copied out, so the projections' pages go once converted
            tensors = {name: t if t.dtype == storage else t.clone() for name, t in load_file(str(file)).items()}
            os.utime(file)  # used: the last file `prune` deletes
            return WeightFiles(LlamaConfig(**data["config"]), tensors, data["tokenizer"], data["chat_template"],
                              data["source"])
        except Exception as exc:  # a truncated or foreign file: load the model itself and write it anew
            log.warning("ignoring the unreadable cache file %s: %s", file, exc)
    loaded = weights.load(path, dtype)
    if isinstance(storage, torch.dtype):
        loaded.tensors = {name: t.to(storage) if name.endswith(NARROW) else t for name, t in loaded.tensors.items()}
    meta = {"checkpoint": json.dumps({"config": loaded.config.__dict__, "tokenizer": loaded.tokenizer,
                                      "chat_template": loaded.chat_template, "source": loaded.source})}
    write_atomic(file, lambda temporary: save_file(loaded.tensors, str(temporary), metadata=meta))
    prune("weights", KEEP_WEIGHTS)
    return loaded
