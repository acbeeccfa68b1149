"""What goes to a model and what comes back: requests, completions, stream chunks and usage (OpenAI-shaped)."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class ToolCall(BaseModel):
    """A call the model asks for: the tool's name and its arguments as JSON text."""

    id: str
    name: str
    arguments: str = "{}"


class Message(BaseModel):
    """One chat message.

    >>> Message(role="user", content="hi")
    Message(role='user', content='hi', name=None, tool_calls=None, tool_call_id=None)
    """

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class ToolSpec(BaseModel):
    """A function the model may call: its name, what it does, and a JSON schema of its arguments."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class Request(BaseModel):
    """A completion request: chat `messages` or a raw `prompt`, with sampling and output controls.

    >>> Request(messages=[Message(role="user", content="hi")], max_tokens=8, temperature=0).n
    1
    """

    model_config = ConfigDict(extra="forbid")

    messages: list[Message] | None = None
    prompt: str | None = None
    max_tokens: int = Field(default=256, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=10.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=0)
    seed: int | None = None
    n: int = Field(default=1, ge=1, le=64)
    stop: list[str] = Field(default_factory=list)
    # {"type": "text" | "json_object"} or {"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}
    response_format: dict[str, Any] | None = None
    tools: list[ToolSpec] | None = None
    tool_choice: Literal["auto", "none", "required"] | str = "auto"

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else [] if value is None else value

    @model_validator(mode="after")
    def _messages_or_prompt(self) -> "Request":
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give exactly one of messages or prompt")
        if self.response_format is not None:
            kind = self.response_format.get("type")
            if kind not in ("text", "json_object", "json_schema"):
                raise ValueError(f"response_format.type must be text, json_object or json_schema, got {kind!r}")
            if kind == "json_schema" and not isinstance(self.json_schema, dict):
                raise ValueError("response_format json_schema needs json_schema.schema (an object)")
        return self

    @property
    def json_schema(self) -> dict[str, Any] | None:
        """The JSON schema the output must follow, if any."""
        if not self.response_format or self.response_format.get("type") != "json_schema":
            return None
        spec = self.response_format.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return schema if isinstance(schema, dict) else None


FinishReason = Literal["stop", "length", "tool_calls", "cancelled"]


class Choice(BaseModel):
    """One sampled output."""

    index: int = 0
    text: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    finish_reason: FinishReason = "stop"
    token_ids: list[int] | None = None  # what a local model generated, when it can tell
    # the request asked for JSON (a response_format schema or object, or tools) and the output stopped before the
    # JSON was complete (finish_reason "length": max_tokens or the context ran out): `text` is a cut-off fragment
    incomplete_json: bool = False


class Usage(BaseModel):
    """What a request cost: tokens (with reuse and speculation) and time in seconds."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    drafted_tokens: int = 0
    accepted_tokens: int = 0
    steps: int = 0  # decode forwards after the first token (speculation makes each yield 1 + accepted tokens)
    time_to_first_token: float = 0.0
    total_time: float = 0.0
    cost: float = 0.0  # US dollars, where the provider's prices are known (litellm's cost map); local is free

    def __add__(self, other: "Usage") -> "Usage":
        """Usage of two requests together (times add up: they are spent one after the other)."""
        return Usage(**{name: getattr(self, name) + getattr(other, name) for name in Usage.model_fields})

    @property
    def accepted_per_step(self) -> float:
        """Mean drafted tokens accepted per decode forward."""
        return self.accepted_tokens / self.steps if self.steps else 0.0


class Completion(BaseModel):
    """A model's answer: one choice per sample, and usage."""

    id: str
    model: str
    choices: list[Choice]
    usage: Usage = Field(default_factory=Usage)

    @property
    def text(self) -> str:
        """The first choice's text."""
        return self.choices[0].text if self.choices else ""


class Chunk(BaseModel):
    """A piece of a streamed answer: new text for choice `index`; the last chunk carries usage."""

    index: int = 0
    text: str = ""
    finish_reason: FinishReason | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    token_ids: list[int] | None = None  # on a local model's last chunk of a choice: all its tokens
    incomplete_json: bool = False  # on a choice's last chunk: as `Choice.incomplete_json`
    usage: Usage | None = None
