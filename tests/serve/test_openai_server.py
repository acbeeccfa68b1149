"""`baobab serve` started for real on loopback, driven through the openai client and litellm; and the
remote path against a fault-injecting server (429, 500, timeouts, malformed JSON)."""

import json
import os
import subprocess
import time
from typing import Any

import httpx
import openai
import pytest
from fault_server import FaultServer
from starlette.requests import ClientDisconnect

from baobab.aio import run_sync
from baobab.engine import Choice, RequestError, ScriptedLLM, load_llm
from baobab.engine.llm import completion_of
from baobab.engine.remote import RemoteError, RemoteLLM
from baobab.serve.openai_server import create_app

MODEL = "local:smollm2-135m"


def test_openai_client_chat_and_stream(server: str, server_key: str) -> None:
    client = openai.OpenAI(base_url=server, api_key=server_key)
    assert [m.id for m in client.models.list().data] == [MODEL, "gpt-4o-mini"]  # --alias
    messages: Any = [{"role": "user", "content": "What is the capital of France?"}]
    reply = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=20, temperature=0)
    assert "Paris" in (reply.choices[0].message.content or "") and reply.usage is not None
    assert reply.usage.prompt_tokens > 10 and reply.usage.completion_tokens > 0
    pieces = client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=20, temperature=0,
                                            stream=True)
    text = "".join(p.choices[0].delta.content or "" for p in pieces if p.choices)
    assert text == reply.choices[0].message.content
    with pytest.raises(openai.NotFoundError, match="The model 'gpt-5' does not exist") as missing:
        client.chat.completions.create(model="gpt-5", messages=messages, max_tokens=5)
    assert missing.value.code == "model_not_found"


def test_openai_client_n_stop_json_schema_tools_and_completions(server: str, server_key: str) -> None:
    client = openai.OpenAI(base_url=server, api_key=server_key)
    many = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Say a word."}],
                                          max_tokens=8, temperature=1.0, n=3, seed=1)
    assert [c.index for c in many.choices] == [0, 1, 2]
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"],
              "additionalProperties": False}
    structured = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Name a city."}], max_tokens=30, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}})
    assert set(json.loads(structured.choices[0].message.content or "")) == {"city"}
    tools: Any = [{"type": "function", "function": {"name": "add", "description": "Add numbers.", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"], "additionalProperties": False}}}]
    called = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Add 2 and 3."}],
                                            tools=tools, tool_choice="required", max_tokens=40, temperature=0)
    call = called.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert called.choices[0].finish_reason == "tool_calls" and call.function.name == "add"  # type: ignore[union-attr]
    assert set(json.loads(call.function.arguments)) == {"a", "b"}  # type: ignore[union-attr]
    plain = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=10, temperature=0,
                                      stop=["."])
    assert plain.choices[0].text == " Paris" and plain.choices[0].finish_reason == "stop"
    cut = client.chat.completions.create(  # JSON cut short by max_tokens: "length", as the engine says
        model=MODEL, messages=[{"role": "user", "content": "Name a city."}], max_tokens=3, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}})
    assert cut.choices[0].finish_reason == "length"


def test_litellm_path_to_the_server(server: str, server_key: str) -> None:
    llm = load_llm(server, api_key=server_key)
    reply = llm.complete_sync(messages=[{"role": "user", "content": "What is the capital of France?"}],
                              max_tokens=20, temperature=0)
    assert "Paris" in reply.text and reply.usage.completion_tokens > 0
    streamed = "".join(c.text for c in llm.stream_sync(
        messages=[{"role": "user", "content": "What is the capital of France?"}], max_tokens=20, temperature=0))
    assert streamed == reply.text


def test_api_key_and_openai_shaped_400s(server: str, server_key: str) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    assert httpx.post(f"{server}/chat/completions", json=body).status_code == 401
    wrong = httpx.post(f"{server}/chat/completions", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "authentication_error"
    auth = {"Authorization": f"Bearer {server_key}"}
    cases = [
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": 5}, "temperature"),
        ({"messages": [{"role": "user", "content": "hi"}], "temprature": 0}, "temprature"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]}, "tools.0.function"),
    ]
    for payload, param in cases:
        response = httpx.post(f"{server}/chat/completions", json=payload, headers=auth)
        error = response.json()["error"]
        assert response.status_code == 400 and error["type"] == "invalid_request_error", payload
        assert error["param"] == param and error["message"].startswith(param), error
    broken = httpx.post(f"{server}/chat/completions", content=b"{not json", headers=auth)
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]["message"]


# ---- the remote path against a server that fails on purpose ------------------------------------------------

def ask(llm: RemoteLLM) -> str:
    return llm.complete_sync(messages=[{"role": "user", "content": "hi"}], max_tokens=5).text


def test_429_waits_for_retry_after_then_succeeds(faulty: FaultServer) -> None:
    llm = faulty.remote("rate", ["429", "ok"])
    started = time.monotonic()
    assert ask(llm) == "fine"
    assert llm.attempts == 2 and time.monotonic() - started >= 1.0


def test_500s_are_retried_with_backoff(faulty: FaultServer) -> None:
    llm = faulty.remote("flaky", ["500", "503", "ok"])
    assert ask(llm) == "fine" and llm.attempts == 3


def test_a_timeout_is_retried(faulty: FaultServer) -> None:
    llm = faulty.remote("slow", ["hang", "ok"], timeout=1.0)
    assert ask(llm) == "fine" and llm.attempts == 2


def test_giving_up_says_how_often_it_tried(faulty: FaultServer) -> None:
    llm = faulty.remote("down", ["503"], retries=2, max_wait=0.2)
    with pytest.raises(RemoteError, match="still failing after 3 attempts"):
        ask(llm)
    assert llm.attempts == 3


def test_malformed_json_is_retried_like_a_5xx_then_named(faulty: FaultServer) -> None:
    garbage = faulty.remote("garbage", ["garbage"], retries=1, max_wait=0.2)
    with pytest.raises(RemoteError, match=r"openai/fake: still failing after 2 attempts: .*Expecting property name"):
        ask(garbage)  # litellm reports an unparsable body as a server error, so it is retried once here
    assert garbage.attempts == 2
    fixed = faulty.remote("garbage-once", ["garbage", "ok"], max_wait=0.2)
    assert ask(fixed) == "fine" and fixed.attempts == 2


@pytest.mark.parametrize(("path", "asked"), [("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}),
                                           ("/v1/responses", {"input": "x"})])
def test_a_stream_whose_client_left_before_its_first_byte_gives_its_place_back(path: str,
                                                                               asked: dict[str, Any]) -> None:
    app = create_app(load_llm("scripted:hi"), max_pending=1)
    body = json.dumps({"model": "scripted", "stream": True, **asked}).encode()
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "headers": [(b"content-type", b"application/json")],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        raise OSError("the client is gone")  # before the response's first byte

    async def scenario() -> int:
        with pytest.raises(ClientDisconnect):
            await app(scope, receive, send)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            again = await http.post(path, json=asked)
        return again.status_code

    assert run_sync(scenario()) == 200  # not 503: the one place was given back


def test_a_streamed_tool_call_arrives_whole_with_its_finish(faulty: FaultServer) -> None:
    llm = faulty.remote("tool-stream", ["tool"])
    request: dict[str, Any] = {"messages": [{"role": "user", "content": "count"}], "tools": [{"name": "count"}]}
    chunks = list(llm.stream_sync(**request))
    finished = [c for c in chunks if c.finish_reason]
    assert [c.finish_reason for c in finished] == ["tool_calls"]
    assert all(not c.tool_calls for c in chunks if not c.finish_reason)  # a call is sent once whole
    assert finished[0].tool_calls == llm.complete_sync(**request).choices[0].tool_calls
    assert [(c.id, c.name, json.loads(c.arguments)) for c in finished[0].tool_calls] == [("call_1", "count", {"n": 1})]


def test_remote_json_cut_off_by_max_tokens_is_flagged(faulty: FaultServer) -> None:
    llm = faulty.remote("json-length", ["json-length"])
    asked = llm.complete_sync(messages=[{"role": "user", "content": "n?"}], response_format={"type": "json_object"})
    assert asked.choices[0].finish_reason == "length" and asked.choices[0].incomplete_json
    plain = llm.complete_sync(messages=[{"role": "user", "content": "n?"}])  # no JSON asked: only "length"
    assert plain.choices[0].finish_reason == "length" and not plain.choices[0].incomplete_json
    streamed = completion_of(llm.stream_sync(messages=[{"role": "user", "content": "n?"}],
                                             response_format={"type": "json_object"}), llm.name)
    assert streamed.choices[0].text == '{"n": 1' and streamed.choices[0].incomplete_json  # as complete's


def test_a_bad_request_fails_at_once(faulty: FaultServer) -> None:
    refused = faulty.remote("refused", ["400"])
    with pytest.raises(RequestError, match="refused the request"):
        ask(refused)
    assert refused.attempts == 1


def test_baobab_chat_streams_answers_in_the_terminal(tmp_path: Any) -> None:
    """`baobab chat` as a person uses it: type a question, read the streamed answer, quit with /exit."""
    script = "What is the capital of France?\n/exit\n"
    out = subprocess.run(["baobab", "chat", "--model", "local:smollm2-135m", "--temperature", "0",
                          "--max-tokens", "20"], input=script, capture_output=True, text=True, timeout=180,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    assert "you>" in out.stdout and "model>" in out.stdout and "Paris" in out.stdout


# ---- which model names the server answers to (a scripted model behind it) ---------------------------------

def serve(app: Any, calls: list[tuple[str, str, dict[str, Any] | None]]) -> list[httpx.Response]:
    """Each (method, path, body) sent to `app` in turn, without a socket."""
    async def scenario() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
            return [await http.request(method, path, json=body) for method, path, body in calls]

    return run_sync(scenario())


CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def test_an_unknown_model_gets_openai_shaped_404s() -> None:
    app = create_app(load_llm("scripted:hi"))
    responses = serve(app, [("POST", "/v1/chat/completions", {"model": "gpt-4o-mini", **CHAT}),
                            ("POST", "/v1/completions", {"model": "gpt-4o-mini", "prompt": "x"}),
                            ("POST", "/v1/responses", {"model": "gpt-4o-mini", "input": "x"})])
    for response in responses:
        assert response.status_code == 404 and response.json() == {"error": {
            "message": "The model 'gpt-4o-mini' does not exist", "type": "invalid_request_error", "param": "model",
            "code": "model_not_found"}}


def test_the_model_its_aliases_and_no_model_at_all_are_served() -> None:
    app = create_app(load_llm("scripted:hi"), aliases=["gpt-4o-mini", "scripted"])
    listed, *answered = serve(app, [("GET", "/v1/models", None),
                                    ("POST", "/v1/chat/completions", {"model": "scripted", **CHAT}),
                                    ("POST", "/v1/chat/completions", {"model": "gpt-4o-mini", **CHAT}),
                                    ("POST", "/v1/chat/completions", CHAT),
                                    ("POST", "/v1/completions", {"model": "gpt-4o-mini", "prompt": "x"})])
    assert [m["id"] for m in listed.json()["data"]] == ["scripted", "gpt-4o-mini"]  # once each, the model first
    assert [r.status_code for r in answered] == [200] * 4
    assert {r.json()["model"] for r in answered} == {"scripted"}  # answered as the model it is


def test_a_completion_cut_short_says_length() -> None:
    app = create_app(ScriptedLLM([Choice(text='{"n": 12', finish_reason="length", incomplete_json=True)], cycle=True))
    chat, plain = serve(app, [("POST", "/v1/chat/completions", CHAT), ("POST", "/v1/completions", {"prompt": "x"})])
    assert chat.json()["choices"][0]["finish_reason"] == "length" == plain.json()["choices"][0]["finish_reason"]
