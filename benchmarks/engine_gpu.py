"""The engine on a GPU at real sizes: Llama-3-shaped 1B and 8B models against transformers, and the default's step.

    python benchmarks/engine_gpu.py [--quick] [--device cuda]   # on a machine with an NVIDIA GPU

Models: the shapes of Llama 3.2 1B and Llama 3.1 8B with random bfloat16 weights made on the device (no
download; the speed of a decode step does not depend on the weights' values). Baobab decodes through its
fixed-shape forward replayed as CUDA graphs (what `LocalLLM(device="cuda")` runs); Hugging Face transformers
through `generate` with a static cache and `torch.compile` (mode reduce-overhead), both greedy, at batch 1 and
32, after a 128-token prompt. Batch-1 decode is compared with the HBM floor: the bytes of weights a step reads
over the bandwidth measured on the device in the same run. Also the default SmolLM2-135M's float32 decode step.
`--device cpu --quick` runs tiny shapes on the CPU (a check of this script, not a measurement).
Writes benchmarks/results/engine_gpu.json.
"""

import argparse
import gc
import os
import platform
import statistics
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from engine_baseline import bandwidth_gbs  # benchmarks/engine_baseline.py
from environment import cpu_name, versions, write_result

from baobab.engine import weights
from baobab.engine.fixed_forward import FixedForward
from baobab.engine.model import Llama, Row
from baobab.engine.weights import LlamaConfig, WeightFiles

GOAL = ("batch-1 decode of Llama-3-shaped 1B and 8B models (bfloat16) within 1.3x of the HBM floor and ahead of "
        "transformers with a static cache and torch.compile; batch-32 throughput reported against transformers; "
        "the default 135M model's decode step under 1 ms")
LLAMA3_ROPE = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}
SHAPES = {  # Llama 3.2 1B and Llama 3.1 8B
    "llama3-1b": {"vocab_size": 128256, "hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32,
                  "num_key_value_heads": 8, "intermediate_size": 8192, "tie_word_embeddings": True},
    "llama3-8b": {"vocab_size": 128256, "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
                  "num_key_value_heads": 8, "intermediate_size": 14336, "tie_word_embeddings": False},
}
TINY = {"tiny": {"vocab_size": 512, "hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                 "num_key_value_heads": 2, "intermediate_size": 256, "tie_word_embeddings": True}}
PROMPT, BATCHES = 128, (1, 32)


def random_weights(shape: dict[str, Any], device: str) -> WeightFiles:
    """A Llama-3-shaped model's weights, random bfloat16 on `device`, by their Hugging Face names."""
    dim, layers, heads, kv = (shape[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                                 "num_key_value_heads"))
    head_dim, hidden, vocab = dim // heads, shape["intermediate_size"], shape["vocab_size"]
    config = LlamaConfig(vocab_size=vocab, dim=dim, n_layers=layers, n_heads=heads, n_kv_heads=kv,
                         hidden_dim=hidden, head_dim=head_dim, rope_theta=500000.0,
                         rope_scaling=dict(LLAMA3_ROPE), max_seq_len=131072,
                         tie_embeddings=shape["tie_word_embeddings"])
    generator = torch.Generator(device).manual_seed(0)

    def rand(*size: int) -> torch.Tensor:
        return (torch.randn(*size, generator=generator, device=device, dtype=torch.bfloat16) * 0.02)

    tensors = {"model.embed_tokens.weight": rand(vocab, dim), "model.norm.weight": torch.ones(
        dim, device=device, dtype=torch.bfloat16)}
    if not config.tie_embeddings:
        tensors["lm_head.weight"] = rand(vocab, dim)
    for i in range(layers):
        p = f"model.layers.{i}."
        tensors |= {p + "self_attn.q_proj.weight": rand(heads * head_dim, dim),
                    p + "self_attn.k_proj.weight": rand(kv * head_dim, dim),
                    p + "self_attn.v_proj.weight": rand(kv * head_dim, dim),
                    p + "self_attn.o_proj.weight": rand(dim, heads * head_dim),
                    p + "mlp.gate_proj.weight": rand(hidden, dim), p + "mlp.up_proj.weight": rand(hidden, dim),
                    p + "mlp.down_proj.weight": rand(dim, hidden),
                    p + "input_layernorm.weight": torch.ones(dim, device=device, dtype=torch.bfloat16),
                    p + "post_attention_layernorm.weight": torch.ones(dim, device=device, dtype=torch.bfloat16)}
    return WeightFiles(config, tensors, {}, None, "random")


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def baobab_decode(model: Llama, batch: int, steps: int, device: str) -> float:
    """Decode tokens/s of `batch` sequences after a PROMPT-token prompt: each step a fixed-shape forward (a CUDA
    graph replayed on a GPU), its greedy tokens brought to the host as the scheduler does."""
    forward = FixedForward(model, graphs=device == "cuda")
    prompt = torch.randint(0, model.config.vocab_size, (batch, PROMPT)).tolist()
    with torch.inference_mode():
        tokens = [row[-1:] for row in prompt]
        model(torch.tensor(prompt, device=device), [Row(slot=b, start=0) for b in range(batch)])  # prefill, eager
        times = []
        for step in range(steps + 3):  # three warm-up steps capture the graphs of the shapes decoding meets
            synchronize(device)
            start = time.perf_counter()
            logits = forward(tokens, [Row(slot=b, start=PROMPT + step) for b in range(batch)])
            tokens = [[t] for t in logits[:, -1].argmax(-1).tolist()]
            times.append(time.perf_counter() - start)
    return batch / statistics.median(times[3:])


def hf_decode(shape: dict[str, Any], batch: int, steps: int, device: str, compiled: bool) -> float:
    """Decode tokens/s of transformers' `generate` on the same shape (its own random weights), greedy, forced to
    `steps` new tokens: the time of `steps` tokens less the time of one (the prefill)."""
    from transformers import LlamaConfig as HFConfig
    from transformers import LlamaForCausalLM

    config = HFConfig(**shape, rope_theta=500000.0, rope_scaling=dict(LLAMA3_ROPE), max_position_embeddings=131072)
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config).eval()
    finally:
        torch.set_default_dtype(torch.float32)
    kwargs: dict[str, Any] = {"do_sample": False, "pad_token_id": 0}
    if compiled:  # generate compiles the forward itself for a static cache (its compile_config)
        model.generation_config.cache_implementation = "static"
    ids = torch.randint(0, shape["vocab_size"], (batch, PROMPT), device=device)

    def run(new: int) -> float:
        synchronize(device)
        start = time.perf_counter()
        model.generate(ids, max_new_tokens=new, min_new_tokens=new, **kwargs)
        synchronize(device)
        return time.perf_counter() - start

    with torch.inference_mode():
        for _ in range(2):  # compiles and captures
            run(steps)
        return batch * (steps - 1) / max(run(steps) - run(1), 1e-9)


def free(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def default_step_ms(model_name: str, device: str, steps: int) -> float:
    """The default SmolLM2-135M's float32 batch-1 decode step, as `LocalLLM(device=...)` runs it."""
    files = weights.load(weights.resolve(model_name))
    model = Llama.from_weights(files, slots=1, max_len=1024, device=device, spare_slots=1)
    rate = baobab_decode(model, 1, steps, device)
    del model
    free(device)
    return 1000 / rate


def measure(name: str, shape: dict[str, Any], args: argparse.Namespace, bandwidth: float) -> dict[str, Any]:
    """One shape's rows: Baobab and transformers at each batch, and the batch-1 HBM floor."""
    files = random_weights(shape, args.device)
    model = Llama.from_weights(files, slots=max(BATCHES), max_len=PROMPT + args.steps + 8, device=args.device,
                               spare_slots=1)
    del files
    read = model.weight_bytes()
    ours = {b: baobab_decode(model, b, args.steps, args.device) for b in BATCHES}
    del model
    free(args.device)
    floor = bandwidth * 1e9 / read  # tokens/s if a step only read its weights once at the measured bandwidth
    row: dict[str, Any] = {"model": name, "weight_gb": round(read / 1e9, 2), "floor_tok_s_batch1": round(floor, 1)}
    for b in BATCHES:
        theirs = hf_decode(shape, b, args.steps, args.device, compiled=args.device == "cuda")
        free(args.device)
        row[f"batch{b}"] = {"baobab_tok_s": round(ours[b], 1), "transformers_tok_s": round(theirs, 1),
                            "ratio": round(ours[b] / theirs, 2)}
        print(f"{name:<10} batch {b:>2}: Baobab {ours[b]:8.1f} tok/s, transformers {theirs:8.1f} tok/s "
              f"({ours[b] / theirs:.2f}x)" + (f", floor {floor:.1f} tok/s ({floor / ours[b]:.2f}x of it)"
                                              if b == 1 else ""), flush=True)
    row["floor_ratio_batch1"] = round(floor / ours[1], 3)  # 1.0: at the floor; the goal is at most 1.3
    return row


def goal_met(row: dict[str, Any]) -> bool:
    """A shape's batch-1 decode within 1.3x of the HBM floor and faster than transformers static+compile."""
    return bool(row["floor_ratio_batch1"] <= 1.3 and row["batch1"]["ratio"] > 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the 1B shape only, fewer steps")
    parser.add_argument("--device", default="cuda", help="cuda (the measurement) or cpu (tiny shapes, a check)")
    parser.add_argument("--steps", type=int, help="decode steps measured (default 64; quick 16)")
    parser.add_argument("--default", default=weights.DEFAULT_MODEL, help="the default model, or its GGUF's path")
    args = parser.parse_args()
    args.steps = args.steps or (16 if args.quick else 64)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("engine_gpu.py measures a GPU and none is visible; `--device cpu --quick` checks the script")
    shapes = TINY if args.device == "cpu" else {k: v for k, v in SHAPES.items() if not args.quick or "1b" in k}
    bandwidth = bandwidth_gbs(args.device)
    print(f"measured read bandwidth: {bandwidth:.0f} GB/s", flush=True)
    rows = [measure(name, shape, args, bandwidth) for name, shape in shapes.items()]
    step_ms = default_step_ms(args.default, args.device, args.steps)
    print(f"SmolLM2-135M float32 decode step: {step_ms:.2f} ms", flush=True)
    real = args.device == "cuda" and not args.quick
    summary = "; ".join(f"{r['model']}: batch 1 {r['batch1']['baobab_tok_s']} tok/s ({r['floor_ratio_batch1']}x "
                        f"the HBM floor, {r['batch1']['ratio']}x transformers static+compile), batch 32 "
                        f"{r['batch32']['baobab_tok_s']} tok/s ({r['batch32']['ratio']}x)" for r in rows)
    summary += f"; SmolLM2-135M step {step_ms:.2f} ms"
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else cpu_name()
    write_result("engine_gpu", {
        "goal": GOAL, "met": real and all(goal_met(r) for r in rows) and step_ms < 1.0, "summary": summary,
        "quick": args.quick, "table": rows, "default_step_ms": round(step_ms, 3), "bandwidth_gbs": round(bandwidth),
        "method": __doc__.split("\n\n", 2)[2].strip(),
        "environment": {"device": device_name, "cpu": cpu_name(), "python": platform.python_version(),
                        "versions": versions("baobab", "torch", "transformers")}})


if __name__ == "__main__":
    main()
