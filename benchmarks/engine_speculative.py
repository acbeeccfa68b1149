"""Speculative decoding on agentic and general workloads: Baobab's drafters vs plain decoding vs the peers'
prompt lookup (Hugging Face transformers `prompt_lookup_num_tokens`, llama.cpp's prompt-lookup drafter).

    pip install -e '.[test,bench]' && python benchmarks/engine_speculative.py [--quick]
    python benchmarks/engine_speculative.py --device cuda --replay   # on a GPU, the committed workload

Workloads, replayed request by request through every engine (each in its own process):
- agentic: recorded here from Baobab's own loops on the embedded model: a tool-using agent that resends its
  growing history, a self-refinement loop that rewrites its own draft, best-of-4 samples of one prompt, and
  a tree search (MCTS on a development Game of 24 puzzle: sampled picks among the legal moves as a JSON enum,
  and JSON judgements; llama.cpp gets the same JSON schemas as grammars, HF transformers has none);
- swe-agent: real SWE-agent turns (../shared/data/agent_traces, development split: demo__ trajectories),
  each prompt's last 1,500 tokens;
- spec-bench: Spec-Bench first turns, the same number from each group.
Greedy, except best-of-n and the tree search's picks (seeded sampling). Decode tokens/s = tokens after the
first / time after the first. The retrieval ceiling replays plain decoding's outputs through the default drafter:
the speedup if every token it offered next were drafted and accepted, at a plain step's cost (see the goals).
Writes benchmarks/results/engine_speculative.json (engine_speculative_cuda.json with --device cuda, where
llama.cpp has no row: the GPU machine has no CUDA build of llama-cpp-python).
"""

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from environment import cpu_name, versions  # benchmarks/environment.py

from baobab.engine import LLM, Completion, Request, weights
from baobab.engine.drafters import SuffixDrafter
from baobab.engine.local import LocalLLM

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = Path(os.environ.get("BENCH_OUT", Path(__file__).parent / "results"))
GOAL = ("on a 2-core CPU with SmolLM2-135M: >=3x Baobab's plain decoding on the agentic workload, >=2x on the "
        "SWE-agent turns, >=1.5x on Spec-Bench overall and never slower on a Spec-Bench group; ahead of every peer "
        "on every workload")
BAOBAB = {"Baobab plain": None,
          "Baobab prompt lookup": lambda: SuffixDrafter(("request",), tree=False),
          "Baobab suffix: request": lambda: SuffixDrafter(("request",)),
          "Baobab suffix: request+siblings": lambda: SuffixDrafter(("request", "siblings")),
          "Baobab suffix: all (default)": lambda: SuffixDrafter()}
PEERS = ["HF transformers prompt lookup", "llama.cpp prompt lookup"]


def record_agentic(new: int, rounds: int) -> list[dict[str, Any]]:
    """Run Baobab's loops on the embedded model and return every request they sent."""
    llm = LocalLLM(slots=4, context=4096, threads=2, prefix_cache_mb=0, speculative=False)
    requests: list[dict[str, Any]] = []

    def send(messages: list[dict[str, str]], **options: Any) -> str:
        request = {"workload": "agentic", "group": options.pop("group"), "messages": messages, "max_tokens": new,
                   "temperature": 0.0, **options}
        requests.append(request)
        return llm.complete_sync(**{k: v for k, v in request.items() if k not in ("workload", "group")}).text

    try:
        for task in ["Plan a three-day trip to Rome using the search tool.", "Find and fix the bug in parse_date()."]:
            history = [{"role": "system", "content": "You are an agent. Reply with a JSON tool call "
                        '{"name": ..., "arguments": {...}} or a final answer.'}, {"role": "user", "content": task}]
            for step in range(rounds):
                answer = send(list(history), group="tool loop")
                history += [{"role": "assistant", "content": answer},
                            {"role": "user", "content": f"Tool result {step}: ok, 3 items found: a.py, b.py, c.py."}]
        for topic in ["why tests matter", "how a hash map works"]:
            draft = send([{"role": "user", "content": f"Write a paragraph about {topic}."}], group="refinement")
            for _ in range(rounds - 1):
                draft = send([{"role": "user", "content": f"Here is a draft:\n{draft}\n\nImprove it and write the "
                               "whole improved paragraph."}], group="refinement")
        for i, question in enumerate(["Write a Python function that checks if a number is prime.",
                                      "Explain recursion with an example."]):
            send([{"role": "user", "content": question}], group="best-of-4", n=4, temperature=0.7, seed=i)
        requests += asyncio.run(record_search(llm, calls=4 * rounds))
    finally:
        asyncio.run(llm.aclose())
    return requests


class Recording(LLM):
    """`llm`, keeping every request it is sent as a workload entry of `group`."""

    def __init__(self, llm: LLM, group: str) -> None:
        self.llm, self.name, self.group = llm, llm.name, group
        self.requests: list[dict[str, Any]] = []

    async def _complete(self, request: Request) -> Completion:
        fields = request.model_dump(mode="json", exclude_none=True, include={
            "messages", "n", "temperature", "seed", "max_tokens", "response_format"})
        fields["messages"] = [{"role": m["role"], "content": m["content"]} for m in fields["messages"]]
        self.requests.append({"workload": "agentic", "group": self.group, **fields})
        return await self.llm.complete(request)


async def record_search(llm: LLM, calls: int) -> list[dict[str, Any]]:
    """The requests of MCTS with the model as proposer and judge, as benchmarks/search_game24.py runs it."""
    from search_game24 import ANYTIME, CRITIQUE, Game24, describe, proposer  # benchmarks/search_game24.py

    from baobab.search import asearch, llm_judge

    recording, env = Recording(llm, "tree search"), Game24("4 9 10 13")  # rank 2: a development puzzle
    await asearch(env, "mcts", budget={"max_model_calls": calls}, proposer=proposer(recording, env, "mcts"),
                  evaluator=llm_judge(recording, describe, critique_chars=CRITIQUE), **ANYTIME["mcts"][1])
    return recording.requests


def swe_turns(count: int, tokens: int) -> list[dict[str, Any]]:
    """Development-split SWE-agent turns, in trajectory order, prompts cut to their last `tokens` tokens."""
    from baobab.engine.tokenizer import ChatTokenizer

    tokenizer = ChatTokenizer(weights.load(weights.resolve(weights.DEFAULT_MODEL)))
    path = DATA / "agent_traces" / "swe_agent" / "swe_agent_prompt_response.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows = [r for r in rows if r["trajectory"].startswith("demo__")][:count]
    out = []
    for r in rows:
        ids = tokenizer.encode(r["prompt"])[-tokens:]
        out.append({"workload": "swe-agent", "group": r["trajectory"][:40], "prompt": tokenizer.decode(ids)})
    return out


def spec_bench(per_group: int) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (DATA / "spec_bench" / "question.jsonl").read_text().splitlines()]
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        group = r["category"] if r["category"] in ("translation", "summarization", "qa", "math_reasoning",
                                                   "rag") else "mt-bench"
        if len(groups[group]) < per_group:
            groups[group].append({"workload": "spec-bench", "group": group,
                                  "messages": [{"role": "user", "content": r["turns"][0]}]})
    return [r for g in groups.values() for r in g]


def replay(engine: str, workload: list[dict[str, Any]], new: int, device: str) -> list[dict[str, Any]]:
    """Every request through one engine: completion tokens, decode seconds, outputs."""
    results = []
    if engine in BAOBAB:
        factory = BAOBAB[engine]
        llm = LocalLLM(slots=4, context=4096, threads=2, prefix_cache_mb=0, device=device,
                       speculative=factory() if factory else False)
        try:
            for r in workload:
                options = {k: r[k] for k in ("messages", "prompt", "n", "temperature", "seed", "max_tokens",
                                             "response_format") if k in r}
                request = {"max_tokens": new, "temperature": 0.0, **options}
                done = llm.complete_sync(**request)
                u = done.usage
                results.append({"tokens": u.completion_tokens, "steps": u.steps, "accepted": u.accepted_tokens,
                                "decode_s": u.total_time - u.time_to_first_token,
                                "outputs": [c.token_ids for c in done.choices],
                                **({"prompt": llm.prompt_ids(Request(**request))} if factory is None else {})})
        finally:
            asyncio.run(llm.aclose())
        return results
    path = weights.resolve(weights.DEFAULT_MODEL)
    from baobab.engine.tokenizer import ChatTokenizer

    tokenizer = ChatTokenizer(weights.load(path))
    if engine.startswith("HF"):
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                     dtype=torch.float32).to(device).eval()
    else:
        from llama_cpp import Llama, LlamaGrammar
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

        cpp = Llama(model_path=str(path), n_ctx=4096, n_threads=2, verbose=False, logits_all=True,
                    draft_model=LlamaPromptLookupDecoding(num_pred_tokens=10))
    for r in workload:
        text = r["prompt"] if "prompt" in r else tokenizer.render(r["messages"])
        ids = tokenizer.encode(text)
        tokens, decode_s, outputs, most = 0, 0.0, [], r.get("max_tokens", new)
        schema = r.get("response_format", {}).get("json_schema", {}).get("schema")
        grammar = (LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
                   if schema and not engine.startswith("HF") else None)  # built once a request, off the clock
        for sample in range(r.get("n", 1)):
            temperature = r.get("temperature", 0.0)
            if engine.startswith("HF"):
                torch.manual_seed(r.get("seed", 0) * 100 + sample)
                with torch.no_grad():
                    start = time.perf_counter()
                    model.generate(torch.tensor([ids], device=device), max_new_tokens=1, do_sample=False)
                    first = time.perf_counter() - start
                    start = time.perf_counter()
                    out = model.generate(torch.tensor([ids], device=device), max_new_tokens=most,
                                         prompt_lookup_num_tokens=10,
                                         do_sample=temperature > 0, temperature=temperature or None, top_p=None,
                                         top_k=None)
                    total = time.perf_counter() - start
                made = out[0, len(ids):].tolist()
            else:
                start = time.perf_counter()
                made, first = [], 0.0
                for token in cpp.generate(ids, temp=temperature, top_k=0 if temperature else 1, reset=True,
                                          grammar=grammar):
                    if not made:
                        first = time.perf_counter() - start
                    if token == cpp.token_eos() or len(made) >= most:
                        break
                    made.append(token)
                total = time.perf_counter() - start
            tokens, decode_s = tokens + len(made), decode_s + max(total - first, 1e-9)
            outputs.append(made)
        results.append({"tokens": tokens, "steps": 0, "accepted": 0, "decode_s": decode_s, "outputs": outputs})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and tokens")
    parser.add_argument("--engine", help="replay the workload file through one engine here and print its JSON")
    parser.add_argument("--workload", type=Path, default=OUT / "engine_speculative_workload.json")
    parser.add_argument("--replay", action="store_true", help="replay the workload file instead of recording one")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    new = 32 if args.quick else 64
    if args.engine:
        workload = json.loads(args.workload.read_text())
        print("RESULT " + json.dumps(replay(args.engine, workload, new, args.device)))
        return
    if args.replay:
        workload = json.loads(args.workload.read_text())
    else:
        rounds, swe, per_group = (2, 3, 1) if args.quick else (3, 6, 2)
        workload = record_agentic(new, rounds) + swe_turns(swe, 1500) + spec_bench(per_group)
        args.workload.write_text(json.dumps(workload) + "\n")
    figures: dict[str, list[dict[str, Any]]] = {}
    peers = [p for p in PEERS if args.device == "cpu" or not p.startswith("llama.cpp")]
    for engine in [*BAOBAB, *peers]:
        command = [sys.executable, __file__, "--engine", engine, "--workload", str(args.workload),
                   "--device", args.device, *(["--quick"] if args.quick else [])]
        out = subprocess.run(command, capture_output=True, text=True)
        lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
        if out.returncode != 0 or not lines:
            raise SystemExit(f"{engine} failed:\n{out.stderr[-3000:]}")
        figures[engine] = json.loads(lines[-1].removeprefix("RESULT "))
        print(f"measured {engine}", flush=True)
    table, checks = _table(workload, figures), {}
    plain = {row["workload"]: row["tok_s"] for row in table if row["engine"] == "Baobab plain"}
    ours = {row["workload"]: row for row in table if row["engine"] == "Baobab suffix: all (default)"}
    best_peer: dict[str, float] = defaultdict(float)
    for row in table:
        if not row["engine"].startswith("Baobab"):
            best_peer[row["workload"]] = max(best_peer[row["workload"]], row["tok_s"])
    checks["agentic >= 3x"] = ours["agentic"]["speedup"] >= 3
    checks["swe-agent >= 2x"] = ours["swe-agent"]["speedup"] >= 2
    checks["spec-bench >= 1.5x"] = ours["spec-bench"]["speedup"] >= 1.5
    checks["no spec-bench group slower"] = all(r["speedup"] >= 1.0 for w, r in ours.items()
                                               if w.startswith("spec-bench/"))
    checks["ahead of every peer"] = all(r["tok_s"] > best_peer[w] for w, r in ours.items()
                                        if not w.startswith("agentic/"))  # workloads and Spec-Bench groups
    print(f"{'engine':<34} {'workload':<26} {'tok/s':>7} {'speedup':>8} {'acc/step':>9} {'identical':>10}")
    for r in table:
        print(f"{r['engine']:<34} {r['workload']:<26} {r['tok_s']:>7} {r['speedup']:>8} "
              f"{r['accepted_per_step'] if r['accepted_per_step'] is not None else '':>9} {r['identical']:>10}")
    ceiling = retrieval_ceiling(workload, figures["Baobab plain"])
    print("retrieval ceiling (each token the default drafter offered next, accepted; a verify at a plain step's "
          "cost):", ", ".join(f"{w} {x}x" for w, x in ceiling.items()))
    summary = ", ".join(f"{w} {ours[w]['speedup']}x ({ours[w]['tok_s']} vs plain {plain[w]} tok/s, retrieval "
                        f"ceiling {ceiling[w]}x)" for w in ("agentic", "swe-agent", "spec-bench"))
    met = all(checks.values())
    print("Baobab suffix (default):", summary, "| checks:", checks)
    result = {"goal": GOAL, "met": met, "checks": checks, "summary": summary, "table": table,
              "retrieval_ceiling": ceiling, "quick": args.quick,
              "new_tokens": new, "requests": len(workload), "environment": {
                  "device": args.device, "cpu": cpu_name(), "threads": 2, "python": platform.python_version(),
                  "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
                  "versions": versions("baobab", "torch", "transformers", "llama_cpp_python")}}
    name = "engine_speculative" if args.device == "cpu" else "engine_speculative_cuda"
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")


def retrieval_ceiling(workload: list[dict[str, Any]], plain: list[dict[str, Any]]) -> dict[str, float]:
    """Per workload and group, the speedup over plain decoding if the default drafter had drafted, and the model
    accepted, every output token that its tree's first level offered (the next token after one of its matches),
    and a verify cost what a plain step does: the most that retrieval can give here. Plain decoding's outputs
    replayed through the drafter, siblings in step; tokens a grammar forces are not counted.

    >>> retrieval_ceiling(workload, figures["Baobab plain"])["agentic"]  # doctest: +SKIP
    2.7
    """
    drafter, keys, seconds = SuffixDrafter(), _keys(workload), defaultdict(lambda: [0.0, 0.0])
    for number, (request, got, names) in enumerate(zip(workload, plain, keys, strict=True)):
        outputs, sampled = got["outputs"], request.get("temperature", 0) > 0
        rows = [number * 64 + i for i in range(len(outputs))]  # a request has at most 64 samples
        for row in rows:
            drafter.begin(row, number, got["prompt"], sampled=sampled)
        misses = [0] * len(outputs)
        for at in range(max(map(len, outputs), default=0)):
            for i, (row, output) in enumerate(zip(rows, outputs, strict=True)):
                if at < len(output):
                    draft = drafter.draft(row, drafter.max_nodes)
                    offered = {t for t, parent in zip(draft.tokens, draft.parents, strict=True) if parent == -1}
                    misses[i] += at > 0 and output[at] not in offered  # the first token comes from the prefill
                    drafter.extend(row, [output[at]])
        for row, output in zip(rows, outputs, strict=True):
            drafter.end(row, output)
        steps = max(map(len, outputs), default=1) - 1  # plain decoding's steps: one per token of the longest row
        for key in filter(None, names):
            seconds[key][0] += got["decode_s"]
            seconds[key][1] += got["decode_s"] * max(*misses, 1) / steps if steps > 0 else 0.0  # a step at least
    return {key: round(plain_s / best_s, 2) for key, (plain_s, best_s) in seconds.items() if best_s > 0}


def _keys(workload: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    """Each request's workload and, for the agentic and Spec-Bench ones, its group."""
    return [(r["workload"], f"{r['workload']}/{r['group']}" if r["workload"] in ("spec-bench", "agentic") else None)
            for r in workload]


def _table(workload: list[dict[str, Any]], figures: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Rows per engine and workload (and agentic or Spec-Bench group): decode tok/s, speedup over Baobab plain, mean
    accepted tokens per step, and how many requests gave plain decoding's greedy tokens."""
    keys, rows = _keys(workload), []
    for engine, results in figures.items():
        sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
        for (name, group), got, base, request in zip(keys, results, figures["Baobab plain"], workload, strict=True):
            same = float(got["outputs"] == base["outputs"]) if request.get("temperature", 0) == 0 else 0.0
            for key in (name, group):
                if key:
                    s = sums[key]
                    s[0] += got["tokens"] - len(got["outputs"])
                    s[1] += got["decode_s"]
                    s[2] += got["accepted"]
                    s[3] += got["steps"]
                    s[4] += same
                    s[5] += request.get("temperature", 0) == 0
        for key, (tokens, seconds, accepted, steps, same, greedy) in sums.items():
            rows.append({"engine": engine, "workload": key, "tok_s": round(tokens / seconds, 1),
                         "accepted_per_step": round(accepted / steps, 2) if steps else None,
                         "identical": f"{int(same)}/{int(greedy)}" if engine.startswith("Baobab") else "n/a"})
    base = {r["workload"]: r["tok_s"] for r in rows if r["engine"] == "Baobab plain"}
    for r in rows:
        r["speedup"] = round(r["tok_s"] / base[r["workload"]], 2)
    return rows


if __name__ == "__main__":
    main()
