"""`train(base, data, out)`: fine-tune a local model on chat examples into a directory `local:OUT` loads.

LoRA (Hu et al. 2021, through peft) or full fine-tuning, on the CPU or a GPU, with transformers for the model.
The loss counts the assistant turns only (a turn with "weight": 0 is shown, not learnt: OpenAI's chat format), in
the base model's own chat template, so the model learns to answer the prompts the engine will send it.
Every `save_every` steps a checkpoint is written whole under `OUT/checkpoints/step-N` and then renamed into place:
a run killed at any moment (kill -9 included) resumes from its last checkpoint and ends with the same weights as
a run never stopped (the data order, and everything else, follows from the seed and the step). At the end LoRA is
merged, and `OUT` holds config.json, model.safetensors (float32), the tokenizer and its chat template, the log
(train_log.jsonl) and the result (train.json).

>>> result = train("local:smollm2-135m", "data/g24", "models/g24", TrainConfig(epochs=2))  # doctest: +SKIP
>>> load_llm("local:models/g24")  # doctest: +SKIP
"""

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from baobab.jsonl import read_objects
from baobab.train.errors import TrainError

CHAT_KINDS = ("steps", "recoveries")  # the dataset files a trainer of chat examples reads from a dataset folder
LOG, RESULT, CHECKPOINTS = "train_log.jsonl", "train.json", "checkpoints"
Evaluate = Callable[[Any, Any, int], dict[str, float]]
"""`evaluate(model, tokenizer, step)`: metrics of the model being trained (in eval mode, without gradients)."""


@dataclass(frozen=True)
class TrainConfig:
    """How to train. `learning_rate` None: 2e-4 for LoRA, 2e-5 for full fine-tuning; `max_steps` None: `epochs`.

    >>> TrainConfig(method="full", epochs=3).method
    'full'
    """

    method: str = "lora"  # "lora" or "full"
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 8
    learning_rate: float | None = None
    warmup_steps: int | None = None  # None: a twentieth of the steps
    weight_decay: float = 0.0
    lora_rank: int = 16
    lora_alpha: int = 32
    max_length: int = 2048  # tokens: a longer example is an error naming it
    save_every: int = 50
    keep_checkpoints: int = 2
    eval_every: int | None = None
    seed: int = 0
    device: str = "auto"  # "cuda" if one is there, else "cpu"
    threads: int | None = None  # torch's CPU threads (None: torch's default)

    def check(self) -> None:
        """A TrainError naming the first field out of range."""
        bad = {"method": self.method not in ("lora", "full"), "epochs": self.epochs < 1,
               "max_steps": self.max_steps is not None and self.max_steps < 1, "batch_size": self.batch_size < 1,
               "learning_rate": self.learning_rate is not None and not self.learning_rate > 0,
               "warmup_steps": self.warmup_steps is not None and self.warmup_steps < 0, "lora_rank": self.lora_rank < 1,
               "max_length": self.max_length < 2, "save_every": self.save_every < 1,
               "keep_checkpoints": self.keep_checkpoints < 1,
               "eval_every": self.eval_every is not None and self.eval_every < 1,
               "threads": self.threads is not None and self.threads < 1}
        for name, wrong in bad.items():
            if wrong:
                expected = "'lora' or 'full'" if name == "method" else "a positive number"
                raise TrainError(f"TrainConfig.{name} = {getattr(self, name)!r}: expected {expected}")

    @property
    def lr(self) -> float:
        """The peak learning rate."""
        return self.learning_rate or (2e-4 if self.method == "lora" else 2e-5)


@dataclass
class TrainResult:
    """What a training run did: steps, examples and tokens (all, and trained on), seconds, where, the last losses."""

    out: str
    base: str
    method: str
    device: str
    steps: int
    examples: int
    tokens: int
    trained_tokens: int
    seconds: float
    resumed_from: int = 0
    loss: float | None = None
    eval: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Example:
    """One tokenized chat: its tokens, and 1 where a token is learnt (an assistant turn of weight 1)."""

    where: str
    ids: list[int]
    learnt: list[int]


def train(base: str | Path, data: str | Path | Sequence[str | Path], out: str | Path,
          config: TrainConfig | None = None, *, evaluate: Evaluate | None = None,
          eval_data: str | Path | Sequence[str | Path] | None = None,
          on_log: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """Fine-tune `base` (a GGUF file, a Hugging Face directory or a `local:` name) on the chats in `data` (JSONL
    files of {"messages": [...]}, or dataset folders: their steps.jsonl and recoveries.jsonl) into `out`.

    Reruns with the same arguments resume from `out`'s last checkpoint; a finished `out` is returned as it is.
    `eval_data` adds its mean loss to the log every `eval_every` steps and at the end, beside `evaluate`'s metrics.

    >>> train("local:smollm2-135m", "steps.jsonl", "models/mine", TrainConfig(max_steps=100))  # doctest: +SKIP
    """
    config = config or TrainConfig()
    config.check()
    folder, base_path = Path(out), _base_path(base)
    if (folder / RESULT).exists():
        done = json.loads((folder / RESULT).read_text())
        return TrainResult(**{k: v for k, v in done.items() if k != "config"})
    from transformers import AutoTokenizer

    if config.threads:
        torch.set_num_threads(config.threads)
    files, held_files = _chat_files(data), _chat_files(eval_data) if eval_data is not None else []
    tokenizer = _from_base(AutoTokenizer, base_path)
    examples, held = tokenize(tokenizer, files, config.max_length), tokenize(tokenizer, held_files, config.max_length)
    if not examples:
        raise TrainError(f"{data}: no chat examples to train on")
    fingerprint = _fingerprint(base_path, config, examples)
    device = torch.device("cuda" if config.device == "auto" and torch.cuda.is_available() else
                          "cpu" if config.device == "auto" else config.device)
    model = _model(base_path, config).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    per_epoch = math.ceil(len(examples) / config.batch_size)
    total = config.max_steps or per_epoch * config.epochs
    step = start = _resume(folder / CHECKPOINTS, fingerprint, model, optimizer, total)
    log = _Log(folder / LOG, on_log)
    started = time.perf_counter()
    while step < total:
        batch = _batch(examples, step, per_epoch, config)
        for group in optimizer.param_groups:
            group["lr"] = _schedule(step, total, config)
        model.train()
        loss_t = _loss(model, batch, device)
        torch.autograd.backward(loss_t)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        record: dict[str, Any] = {"step": step, "of": total, "loss": round(loss_t.item(), 5),
                                  "lr": _schedule(step - 1, total, config),
                                  "seconds": round(time.perf_counter() - started, 2)}
        if config.eval_every and (step % config.eval_every == 0 or step == total):
            record["eval"] = _evaluate(model, tokenizer, step, evaluate, held, device, config.batch_size)
        log.write(record)
        if step % config.save_every == 0 or step == total:
            _save_checkpoint(folder / CHECKPOINTS, step, fingerprint, model, optimizer, config.keep_checkpoints)
    metrics = _evaluate(model, tokenizer, step, evaluate, held, device, config.batch_size) \
        if (evaluate or held) and not config.eval_every else log.last_eval
    _save_model(model, tokenizer, folder, config)
    result = TrainResult(str(folder), str(base_path), config.method, str(device), total, len(examples),
                         sum(len(e.ids) for e in examples), sum(sum(e.learnt) for e in examples),
                         round(time.perf_counter() - started, 1), start, log.last_loss, metrics)
    (folder / RESULT).write_text(json.dumps(asdict(result) | {"config": asdict(config)}, indent=2) + "\n")
    return result


def tokenize(tokenizer: Any, files: list[Path], max_length: int) -> list[Example]:
    """The chats of `files` in the tokenizer's chat template; each assistant turn learnt unless its weight is 0.

    A turn's text is what the template adds for it, so the prompt before an assistant turn is exactly the one the
    engine renders when it asks for that turn (a template that rewrites earlier turns is an error).

    >>> tokenize(tokenizer, [Path("steps.jsonl")], 2048)[0].learnt[-3:]  # doctest: +SKIP
    [1, 1, 1]
    """
    examples = []
    for file in files:
        for number, record in enumerate(read_objects(file, TrainError), start=1):
            where = f"{file}:{number}"  # the reader skips blank lines: the number counts records
            messages = _messages(record, where)
            spans, text = [], ""
            for i, message in enumerate(messages):
                before = _render(tokenizer, messages[:i], message["role"] == "assistant") if i else ""
                after = _render(tokenizer, messages[:i + 1], False)
                if not (before.startswith(text) and after.startswith(before)):
                    raise TrainError(f"{where}: the chat template rewrites earlier turns at message {i + 1}; "
                                     "expected a template that only appends")
                if message["role"] == "assistant" and message.get("weight", 1):
                    spans.append((len(before), len(after)))
                text = after
            encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            learnt = [int(any(a <= start < b for a, b in spans)) for start, _ in encoded["offset_mapping"]]
            if not any(learnt):
                raise TrainError(f"{where}: no assistant turn to learn (every one has weight 0, or there is none)")
            if len(learnt) > max_length:
                raise TrainError(f"{where}: {len(learnt)} tokens, more than max_length={max_length}")
            examples.append(Example(where, list(encoded["input_ids"]), learnt))
    return examples


def _render(tokenizer: Any, messages: list[dict[str, Any]], prompt: bool) -> str:
    turns = [{"role": m["role"], "content": m["content"]} for m in messages]
    return str(tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=prompt))


def _messages(record: dict[str, Any], where: str) -> list[dict[str, Any]]:
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        raise TrainError(f"{where}: expected {{\"messages\": [...]}} with at least one message")
    for i, m in enumerate(messages, start=1):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") or \
                not isinstance(m.get("content"), str):
            raise TrainError(f"{where}: message {i} should be {{\"role\": system|user|assistant, \"content\": text}}")
        if m.get("weight", 1) not in (0, 1):
            raise TrainError(f"{where}: message {i} has weight {m['weight']!r}: expected 0 or 1")
    return messages


def _chat_files(data: str | Path | Sequence[str | Path]) -> list[Path]:
    paths = [Path(data)] if isinstance(data, str | Path) else [Path(d) for d in data]
    files = []
    for path in paths:
        found = [path / f"{kind}.jsonl" for kind in CHAT_KINDS if (path / f"{kind}.jsonl").exists()] \
            if path.is_dir() else [path] if path.exists() else []
        if not found:
            raise TrainError(f"{path}: expected a JSONL file of chats or a dataset folder with "
                             f"{' or '.join(k + '.jsonl' for k in CHAT_KINDS)}")
        files += found
    return files


def _base_path(base: str | Path) -> Path:
    """The file or directory of a `local:` model name, or a path as given."""
    name = str(base).removeprefix("local:")
    if name == "smollm2-135m" or not Path(name).exists():
        from baobab.engine.weights import resolve  # only for a name: the engine's other needs stay unimported

        return resolve(name)
    return Path(name)


def _from_base(cls: Any, path: Path, **options: Any) -> Any:
    if path.suffix == ".gguf":
        return cls.from_pretrained(str(path.parent), gguf_file=path.name, **options)
    return cls.from_pretrained(str(path), **options)


def _model(path: Path, config: TrainConfig) -> Any:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(config.seed)  # LoRA's initial A matrices
    model = _from_base(AutoModelForCausalLM, path, dtype=torch.float32)
    if config.method == "full":
        return model
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=0.0,
                      target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def _batch(examples: list[Example], step: int, per_epoch: int, config: TrainConfig) -> list[Example]:
    """The examples of `step`: the epoch's order is a permutation drawn from the seed and the epoch alone."""
    epoch, index = divmod(step, per_epoch)
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(config.seed + epoch)).tolist()
    return [examples[i] for i in order[index * config.batch_size:(index + 1) * config.batch_size]]


def _schedule(step: int, total: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    warmup = max(1, total // 20) if config.warmup_steps is None else config.warmup_steps
    if step < warmup:
        return config.lr * (step + 1) / warmup
    done = (step - warmup) / max(1, total - warmup)
    return config.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, done))))


def _loss(model: Any, batch: list[Example], device: torch.device) -> torch.Tensor:
    """Mean cross-entropy of the learnt tokens; logits are made for those positions only (the vocabulary is big)."""
    width = max(len(e.ids) for e in batch)
    ids = torch.zeros(len(batch), width, dtype=torch.long)
    mask = torch.zeros(len(batch), width, dtype=torch.long)
    learnt = torch.zeros(len(batch), width, dtype=torch.bool)
    for row, e in enumerate(batch):
        ids[row, :len(e.ids)] = torch.tensor(e.ids)
        mask[row, :len(e.ids)] = 1
        learnt[row, :len(e.ids)] = torch.tensor(e.learnt, dtype=torch.bool)
    ids, mask, learnt = ids.to(device), mask.to(device), learnt.to(device)
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        hidden = causal.model(input_ids=ids, attention_mask=mask).last_hidden_state
        targets = learnt[:, 1:]  # position t predicts token t + 1
        logits = causal.lm_head(hidden[:, :-1][targets])
    return torch.nn.functional.cross_entropy(logits.float(), ids[:, 1:][targets])


def _evaluate(model: Any, tokenizer: Any, step: int, evaluate: Evaluate | None, held: list[Example],
              device: torch.device, batch_size: int) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        metrics = {} if evaluate is None else dict(evaluate(model, tokenizer, step))
        if held:
            losses = [float(_loss(model, held[i:i + batch_size], device)) for i in range(0, len(held), batch_size)]
            metrics["eval_loss"] = round(sum(losses) / len(losses), 5)
    return metrics


def _fingerprint(base: Path, config: TrainConfig, examples: list[Example]) -> str:
    """What a checkpoint must have been trained on to be resumed: the base, the options that shape the weights,
    the data. Saving and evaluation options may change between runs."""
    digest = hashlib.sha256(f"{base.name}|{base.stat().st_size if base.is_file() else ''}".encode())  # movable
    shaping = asdict(config) | {"save_every": 0, "keep_checkpoints": 0, "eval_every": 0, "device": "", "threads": 0}
    digest.update(json.dumps(shaping, sort_keys=True).encode())
    for e in examples:
        digest.update(json.dumps([e.ids, e.learnt]).encode())
    return digest.hexdigest()


def _trainable(model: Any) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def _save_checkpoint(folder: Path, step: int, fingerprint: str, model: Any, optimizer: torch.optim.Optimizer,
                     keep: int) -> None:
    """Write the checkpoint beside its place, then rename it in: a checkpoint that exists is whole."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    final, partial = folder / f"step-{step:07d}", folder / f".partial-step-{step:07d}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    save_file(_trainable(model), str(partial / "trainable.safetensors"))
    torch.save(optimizer.state_dict(), partial / "optimizer.pt")
    (partial / "state.json").write_text(json.dumps({"step": step, "fingerprint": fingerprint}))
    os.replace(partial, final)
    for old in sorted(folder.glob("step-*"))[:-keep]:
        shutil.rmtree(old)


def _resume(folder: Path, fingerprint: str, model: Any, optimizer: torch.optim.Optimizer, total: int) -> int:
    """Load the last checkpoint in `folder` into `model` and `optimizer`; its step (0 when there is none).

    The last step's checkpoint needs no optimizer state (nothing is left to train): one trained elsewhere can be
    brought with its weights alone, and this run only writes the model."""
    from safetensors.torch import load_file

    checkpoints = sorted(folder.glob("step-*"))
    if not checkpoints:
        return 0
    last = checkpoints[-1]
    state = json.loads((last / "state.json").read_text())
    if state.get("fingerprint") != fingerprint:
        raise TrainError(f"{last}: this checkpoint was trained on another base, data or options; give a new "
                         f"out directory, or delete {folder} to start over")
    tensors = load_file(str(last / "trainable.safetensors"))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.requires_grad:
                param.copy_(tensors[name])
    step = int(state["step"])
    if (last / "optimizer.pt").exists():
        optimizer.load_state_dict(torch.load(last / "optimizer.pt", weights_only=True))
    elif step < total:
        raise TrainError(f"{last}: no optimizer.pt, so training cannot go on from step {step} of {total}")
    return step


def _save_model(model: Any, tokenizer: Any, folder: Path, config: TrainConfig) -> None:
    """Merged float32 weights, the tokenizer and its chat template: a directory `local:` loads."""
    merged = model.merge_and_unload() if config.method == "lora" else model
    merged.hf_quantizer = None  # a GGUF base is read dequantized: what is saved is plain float32
    if hasattr(merged.config, "quantization_config"):
        del merged.config.quantization_config
    merged.to("cpu", dtype=torch.float32).save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))


class _Log:
    """train_log.jsonl, appended a line a step (a resumed run goes on writing it), and `on_log`."""

    def __init__(self, path: Path, on_log: Callable[[dict[str, Any]], None] | None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.on_log, self.last_eval, self.last_loss = path, on_log, dict[str, float](), None
        for record in read_objects(path, TrainError) if path.exists() else []:  # a resumed run's earlier steps
            self._seen(record)

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        self._seen(record)
        if self.on_log is not None:
            self.on_log(record)

    def _seen(self, record: dict[str, Any]) -> None:
        self.last_eval, self.last_loss = record.get("eval", self.last_eval), record.get("loss", self.last_loss)
