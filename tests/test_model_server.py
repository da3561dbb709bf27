"""The local model server speaks both wire protocols as the real CLIs read them (checked here
with plain HTTP; tests/test_real_agents.py checks them with the CLIs themselves)."""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from tests.model_server import DONE, REPLY, ModelServer, running


@pytest.fixture(scope="module")
def server() -> Iterator[ModelServer]:
    with running() as started:
        yield started


def ask(server: ModelServer, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, str, str]:
    """One request; (status, content type, response text)."""
    connection = http.client.HTTPConnection(urllib.parse.urlsplit(server.url).netloc, timeout=30)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        connection.request(method, path, body=payload, headers={"Content-Type": "application/json"})
        answer = connection.getresponse()
        return answer.status, answer.headers["Content-Type"], answer.read().decode()
    finally:
        connection.close()


def post(server: ModelServer, path: str, body: dict[str, Any]) -> tuple[str, str]:
    """POST ``body``; (content type, response text)."""
    status, kind, text = ask(server, "POST", path, body)
    assert status == 200, text
    return kind, text


def events(stream: str) -> list[tuple[str, dict[str, Any]]]:
    """An SSE body as (event, data) pairs."""
    found = []
    for chunk in stream.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in chunk.splitlines())
        found.append((fields["event"], json.loads(fields["data"])))
    return found


def data(stream: list[tuple[str, dict[str, Any]]], name: str) -> dict[str, Any]:
    """The data of the one ``name`` event in ``stream``."""
    (found,) = [payload for event, payload in stream if event == name]
    return found


TOOLS = [{"name": "Bash"}]


def claude_body(*messages: dict[str, Any], tools: list[dict[str, Any]] = TOOLS) -> dict[str, Any]:
    return {"model": "m", "stream": True, "tools": tools, "messages": list(messages)}


def test_a_claude_turn_streams_the_prompt_back_and_is_recorded(server: ModelServer) -> None:
    reminder = {"type": "text", "text": "<system-reminder>\nctx\n</system-reminder>\n"}
    body = claude_body({"role": "user", "content": [reminder, {"type": "text", "text": "hello M1"}]})
    kind, text = post(server, "/v1/messages?beta=true", body)
    assert kind == "text/event-stream"
    stream = events(text)
    assert [name for name, _ in stream] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert stream[2][1]["delta"] == {"type": "text_delta", "text": REPLY + "hello M1"}
    assert stream[4][1]["delta"]["stop_reason"] == "end_turn"
    assert server.requests[-1].prompt == "hello M1"
    assert "hello M1" in server.prompts()


def test_a_claude_run_prompt_asks_for_bash_then_reports_its_output(server: ModelServer) -> None:
    ask = {"role": "user", "content": "please RUN: touch x"}
    stream = events(post(server, "/v1/messages", claude_body(ask))[1])
    block = stream[1][1]["content_block"]
    assert (block["type"], block["name"]) == ("tool_use", "Bash")
    assert json.loads(stream[2][1]["delta"]["partial_json"])["command"] == "touch x"
    assert stream[4][1]["delta"]["stop_reason"] == "tool_use"
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block["id"], "content": "made\n"}]}
    used = {"role": "assistant", "content": [block]}
    final = events(post(server, "/v1/messages", claude_body(ask, used, result))[1])
    assert final[2][1]["delta"]["text"] == DONE + "made"


def test_a_side_job_without_tools_is_answered_in_the_schema_it_asks_for(server: ModelServer) -> None:
    schema = {"type": "object", "properties": {"title": {"type": "string"}}}
    body = {**claude_body({"role": "user", "content": "RUN: x"}, tools=[])}
    body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    stream = events(post(server, "/v1/messages", body)[1])
    assert json.loads(stream[2][1]["delta"]["text"]) == {"title": "Mock title"}
    assert not server.requests[-1].turn


def codex_body(*items: dict[str, Any]) -> dict[str, Any]:
    return {"model": "m", "stream": True, "tools": [{"type": "function", "name": "exec_command"}], "input": list(items)}


def test_a_codex_turn_and_a_codex_run_prompt(server: ModelServer) -> None:
    context = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<environment_context/>"}]}
    hello = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello C1"}]}
    stream = events(post(server, "/v1/responses", codex_body(context, hello))[1])
    assert [name for name, _ in stream] == [
        "response.created",
        "response.output_item.added",
        "response.output_text.delta",
        "response.output_item.done",
        "response.completed",
    ]
    assert stream[2][1]["delta"] == REPLY + "hello C1"
    assert stream[-1][1]["response"]["usage"]["total_tokens"] > 0

    run = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "RUN: touch y"}]}
    call = data(events(post(server, "/v1/responses", codex_body(hello, run))[1]), "response.output_item.done")["item"]
    assert (call["type"], call["name"]) == ("function_call", "exec_command")
    arguments = json.loads(call["arguments"])
    assert arguments["cmd"] == "touch y"
    assert arguments["sandbox_permissions"] == "require_escalated"
    output = {"type": "function_call_output", "call_id": call["call_id"], "output": "Exit: 0\nOutput:\nran-y\n"}
    final = events(post(server, "/v1/responses", codex_body(hello, run, call, output))[1])
    assert final[2][1]["delta"] == DONE + "ran-y"
    assert server.turns("openai")[-1].texts()[-1].endswith("ran-y\n")  # the whole conversation is kept


def test_a_held_reply_waits_for_release(server: ModelServer) -> None:
    answers: list[str] = []
    body = codex_body({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "HOLD h1"}]})
    worker = threading.Thread(target=lambda: answers.append(post(server, "/v1/responses", body)[1]))
    worker.start()
    try:
        worker.join(timeout=1.0)
        assert worker.is_alive()  # held: no answer while not released
        assert not answers
    finally:
        server.release()
        worker.join(timeout=30)
        server.hold()
    assert REPLY + "HOLD h1" in answers[0]


def test_other_requests_get_harmless_answers(server: ModelServer) -> None:
    assert json.loads(post(server, "/v1/messages/count_tokens", {"messages": []})[1]) == {"input_tokens": 10}
    status, _, models = ask(server, "GET", "/v1/models")
    assert (status, json.loads(models)["data"][0]["id"]) == (200, "mock-model")
    assert ask(server, "HEAD", "/")[0] == 200
