"""An OpenAI-compatible server whose answers are scripted per scenario, for the remote path's fault tests.

Each request to /SCENARIO/v1/chat/completions takes the next step of that scenario's plan (the last
one repeats): "ok", "429" (Retry-After: 1), "500"/"503"/"400", "hang" (5 s before answering),
"garbage" (a body that is not JSON), "stall" (a stream that sends two chunks and then nothing),
"stall-first" (a stream that sends its headers and then nothing),
"stream-reset" (two chunks, then the connection is reset), "stream-garbage" (a chunk, then one that is not
JSON), "tool" (a tool call), "tool-truncated" (a tool call whose arguments are cut off), "json-length" (JSON
cut off by max_tokens: finish_reason "length"). "ok", "tool" and "json-length" stream when asked to ("tool" as
OpenAI does: its arguments in fragments).
/SCENARIO/v1/models names the model "fake", so `load_llm(f"{base}/SCENARIO/v1")` works too.
"""

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from baobab.engine.remote import RemoteLLM

USAGE = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}


def answer(message: dict[str, object], finish: str = "stop") -> dict[str, object]:
    return {"id": "x", "object": "chat.completion", "created": 0, "model": "fake", "usage": USAGE,
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}]}


def tool_call(arguments: str) -> dict[str, object]:
    return answer({"content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
        "name": "count", "arguments": arguments}}]}, "tool_calls")


class FaultServer:
    """The server, started on a loopback port in a thread; `remote(scenario, steps)` is a client for it."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.plans: dict[str, list[str]] = {}
        self.arrivals: dict[str, list[float]] = {}  # when each request came (time.monotonic), per scenario
        app = Starlette(routes=[Route("/{scenario}/v1/chat/completions", self._chat, methods=["POST"]),
                                Route("/{scenario}/v1/models", self._models)])
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                                                    timeout_graceful_shutdown=1))  # "hang" answers are not awaited
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def start(self) -> "FaultServer":
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, "the fault server did not start"
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def plan(self, scenario: str, steps: list[str]) -> str:
        """Script the answers to `scenario`'s requests; returns its /v1 URL."""
        self.plans[scenario], self.arrivals[scenario] = list(steps), []
        return f"{self.base}/{scenario}/v1"

    def remote(self, scenario: str, steps: list[str], **options: object) -> RemoteLLM:
        """A RemoteLLM whose requests get `steps`, in order."""
        return RemoteLLM("openai/fake", api_base=self.plan(scenario, steps), api_key="k", **options)  # type: ignore[arg-type]

    async def _models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "test"}]})

    async def _chat(self, request: Request) -> Response:
        scenario = request.path_params["scenario"]
        self.arrivals[scenario].append(time.monotonic())
        steps = self.plans[scenario]
        step = steps.pop(0) if len(steps) > 1 else steps[0]
        if step == "429":
            return JSONResponse({"error": {"message": "slow down"}}, status_code=429, headers={"Retry-After": "1"})
        if step in ("500", "503", "400"):
            return JSONResponse({"error": {"message": f"fault {step}"}}, status_code=int(step))
        if step == "hang":
            await asyncio.sleep(5)
        if step == "garbage":
            return PlainTextResponse("{this is not json", media_type="application/json")
        if step == "stall":
            return StreamingResponse(self._stall(), media_type="text/event-stream")
        if step == "stall-first":
            return StreamingResponse(self._silence(), media_type="text/event-stream")
        if step == "stream-reset":
            return StreamingResponse(self._reset(), media_type="text/event-stream")
        if step == "stream-garbage":
            return StreamingResponse(self._garbage(), media_type="text/event-stream")
        if step == "ok" and (await request.json()).get("stream"):
            return StreamingResponse(self._words(["fi", "ne"], end=True), media_type="text/event-stream")
        if step == "tool" and (await request.json()).get("stream"):
            return StreamingResponse(self._tool_pieces(), media_type="text/event-stream")
        if step == "tool":
            return JSONResponse(tool_call('{"n": 1}'))
        if step == "tool-truncated":
            return JSONResponse(tool_call('{"n": 1'))
        if step == "json-length" and (await request.json()).get("stream"):
            return StreamingResponse(self._words(['{"n"', ": 1"], end=True, finish="length"),
                                     media_type="text/event-stream")
        if step == "json-length":
            return JSONResponse(answer({"content": '{"n": 1'}, "length"))
        return JSONResponse(answer({"content": "fine"}))

    async def _stall(self) -> AsyncIterator[str]:
        async for event in self._words(["a", "b"], end=False):
            yield event
        await asyncio.sleep(30)  # and then nothing: the client must not wait forever

    async def _silence(self) -> AsyncIterator[str]:
        await asyncio.sleep(30)  # the headers went out (200), no chunk follows
        yield "data: [DONE]\n\n"

    async def _reset(self) -> AsyncIterator[str]:
        async for event in self._words(["a", "b"], end=False):
            yield event
        raise ConnectionResetError("the fault server drops the stream")  # uvicorn resets the connection

    async def _garbage(self) -> AsyncIterator[str]:
        async for event in self._words(["a"], end=False):
            yield event
        yield "data: {this is not json\n\n"
        async for event in self._words(["b"], end=True):
            yield event

    async def _tool_pieces(self) -> AsyncIterator[str]:
        """The "tool" answer as OpenAI streams it: id and name first, the arguments in fragments."""
        pieces = [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "count", "arguments": ""}},
                  {"index": 0, "function": {"arguments": '{"n"'}}, {"index": 0, "function": {"arguments": ": 1}"}}]
        deltas = [({"role": "assistant", "tool_calls": [piece]}, None) for piece in pieces] + [({}, "tool_calls")]
        for delta, finish in deltas:
            chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "fake",
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            yield f"data: {json.dumps(chunk)}\n\n"
        yield "data: [DONE]\n\n"

    async def _words(self, words: list[str], *, end: bool, finish: str = "stop") -> AsyncIterator[str]:
        """Server-sent events, one chunk per word; with `end`, a chunk that finishes (`finish`), usage and [DONE]."""
        deltas = [({"content": word}, None) for word in words] + [({}, finish)] * end
        for delta, finish in deltas:
            chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "fake",
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            yield f"data: {json.dumps(chunk)}\n\n"
        if end:
            usage = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "fake", "choices": [],
                     "usage": USAGE}
            yield f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n"
