"""A small local model server so the real Claude Code and Codex CLIs do real turns offline.

It speaks the two wire protocols the CLIs use, streaming canned replies:

- the Anthropic Messages API as Claude Code calls it (``POST /v1/messages?beta=true``, SSE
  ``message_start`` ... ``message_stop``), reached through ``ANTHROPIC_BASE_URL``;
- the OpenAI Responses API as Codex calls it (``POST /v1/responses``, SSE ``response.created`` ...
  ``response.completed``), reached through a ``model_provider`` whose ``base_url`` ends in ``/v1``.

The reply is chosen by the last user message (the *prompt*):

- a prompt holding ``RUN: <command>`` asks to run ``<command>`` with the CLI's own shell tool
  (Claude Code's ``Bash``, Codex's shell tool), so the CLI shows its permission prompt; once the
  tool's result comes back the reply is ``DONE: `` followed by the result's first line;
- a prompt holding ``HOLD`` is answered only once the test calls ``release()`` (a turn that
  stays ``working`` as long as the test wants, without sleeping);
- any other prompt gets ``REPLY: <prompt>``, so a test picks a marker and looks for it on screen.

Every request is recorded (``requests``, thread-safe) with its parsed body, so a test can check
what the CLI sent: the prompt, and that a resumed conversation carries the earlier turns.
Anything else a CLI asks at start (token counts, model lists, HEAD probes) gets a harmless answer.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final, Literal

REPLY: Final = "REPLY: "
RUN: Final = "RUN: "
DONE: Final = "DONE: "
HOLD: Final = "HOLD"
MODEL: Final = "mock-model"
HOLD_LIMIT_S: Final = 120.0  # a held reply is sent anyway after this long: no test can hang on it

Api = Literal["anthropic", "openai", "other"]


@dataclass(frozen=True)
class Recorded:
    """One request as the server received it."""

    method: str
    path: str
    body: Any
    api: Api

    @property
    def prompt(self) -> str | None:
        """The text of the last user message (None for a request without one)."""
        return last_user_text(self)

    @property
    def turn(self) -> bool:
        """A model turn of the CLI's conversation: a streamed request that offers tools.

        Claude Code also asks the model for side jobs (a title, a topic check) with the same
        prompt but no tools; a test counting turns wants only the real ones.
        """
        return isinstance(self.body, dict) and self.api != "other" and bool(self.body.get("tools"))

    def texts(self) -> list[str]:
        """Every text the request's conversation holds (all turns, user and assistant, in order)."""
        return list(_texts(self.body))


def _texts(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("text", "output", "content") and isinstance(value, str):
                yield value
            elif key not in ("tools", "system", "instructions"):
                yield from _texts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _texts(item)


# Claude Code prefixes the prompt with reminders in tags of their own; they are not the user's words.
_REMINDER: Final = re.compile(r"<(system-reminder|command-[a-z-]+|local-command-[a-z-]+)>.*?</\1>", re.DOTALL)


def _user_text(content: Any) -> str | None:
    """The user's own words in one message's content (string or list of blocks), reminders removed."""
    if isinstance(content, str):
        parts = [content]
    elif isinstance(content, list):
        parts = [
            block.get("text", "")
            for block in content
            if isinstance(block, dict) and block.get("type") in ("text", "input_text")
        ]
    else:
        return None
    words = [_REMINDER.sub("", part).strip() for part in parts]
    kept = [word for word in words if word]
    return kept[-1] if kept else None


def last_user_text(request: Recorded) -> str | None:
    """The last user message's own words, for either API; None if there is none."""
    body = request.body
    if not isinstance(body, dict):
        return None
    items = body.get("messages") if request.api == "anthropic" else body.get("input")
    if isinstance(items, str):
        return items
    if not isinstance(items, list):
        return None
    for item in reversed(items):
        if isinstance(item, dict) and item.get("role") == "user":
            text = _user_text(item.get("content"))
            # Codex sends its environment context and instructions as user messages in tags.
            if text is not None and not text.startswith("<"):
                return text
    return None


def _tool_result(request: Recorded) -> str | None:
    """The output of the tool call the conversation ends with, if it ends with one."""
    body = request.body
    if not isinstance(body, dict):
        return None
    if request.api == "anthropic":
        messages = body.get("messages") or []
        last = messages[-1] if messages else {}
        content = last.get("content") if isinstance(last, dict) else None
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                return "\n".join(_texts(block.get("content"))) or str(block.get("content", ""))
        return None
    items = body.get("input") or []
    last = items[-1] if items else {}
    if isinstance(last, dict) and last.get("type") in ("function_call_output", "custom_tool_call_output"):
        output = last.get("output")
        if isinstance(output, dict):  # {"content": ..., "success": ...} in some versions
            output = output.get("content", "")
        return output if isinstance(output, str) else json.dumps(output)
    return None


def _first_output_line(output: str) -> str:
    """The tool output's first non-blank line; Codex puts a header before it ("Chunk ID: ...",
    "Process exited with code 0", ..., "Output:"), which is skipped."""
    _, marker, after = output.partition("Output:\n")
    lines = [line.strip() for line in (after if marker else output).splitlines() if line.strip()]
    return lines[0] if lines else ""


def _schema_text(schema: Any) -> str:
    """A JSON text matching a simple object ``schema`` (the side jobs that ask for a title)."""
    properties = schema.get("properties", {}) if isinstance(schema, dict) else {}
    return json.dumps(dict.fromkeys(properties, "Mock title"))


def _output_schema(request: Recorded) -> Any:
    """The JSON schema the request wants its answer in (Claude ``output_config.format``, Codex
    ``text.format``), or None."""
    body = request.body if isinstance(request.body, dict) else {}
    holder = body.get("output_config") if request.api == "anthropic" else body.get("text")
    form = holder.get("format") if isinstance(holder, dict) else None
    return form.get("schema") if isinstance(form, dict) and form.get("type") == "json_schema" else None


@dataclass(frozen=True)
class Reply:
    """What the model answers: text, or a request to run ``command`` with the shell tool."""

    text: str = ""
    command: str | None = None


def choose_reply(request: Recorded) -> Reply:
    """The canned reply for a request (see the module docstring)."""
    schema = _output_schema(request)
    if schema is not None:
        return Reply(text=_schema_text(schema))
    result = _tool_result(request)
    if result is not None:
        return Reply(text=DONE + _first_output_line(result))
    prompt = request.prompt or ""
    if RUN in prompt and request.turn:
        return Reply(command=prompt.split(RUN, 1)[1].strip())
    return Reply(text=REPLY + prompt)


# --------------------------------------------------------------------------- the two wire formats


def _sse(events: list[tuple[str, dict[str, Any]]]) -> bytes:
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events).encode()


_ids = itertools.count(1)


def anthropic_events(reply: Reply, *, tool: str = "Bash") -> list[tuple[str, dict[str, Any]]]:
    """The Messages API stream of ``reply``: a text block, or a ``tool``-use block with stop_reason tool_use."""
    number = next(_ids)
    usage = {"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    start = {
        "type": "message_start",
        "message": {
            "id": f"msg_mock{number}",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        },
    }
    if reply.command is None:
        block: dict[str, Any] = {"type": "text", "text": ""}
        delta: dict[str, Any] = {"type": "text_delta", "text": reply.text}
        stop = "end_turn"
    else:
        block = {"type": "tool_use", "id": f"toolu_mock{number}", "name": tool, "input": {}}
        arguments = {"command": reply.command, "description": f"Run {reply.command}"}
        delta = {"type": "input_json_delta", "partial_json": json.dumps(arguments)}
        stop = "tool_use"
    return [
        ("message_start", start),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": 5},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


def anthropic_message(reply: Reply) -> dict[str, Any]:
    """The same reply as one JSON message (for a request that did not ask for a stream)."""
    content: list[dict[str, Any]] = (
        [{"type": "text", "text": reply.text}]
        if reply.command is None
        else [
            {"type": "tool_use", "id": f"toolu_mock{next(_ids)}", "name": "Bash", "input": {"command": reply.command}}
        ]
    )
    return {
        "id": f"msg_mock{next(_ids)}",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": content,
        "stop_reason": "end_turn" if reply.command is None else "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }


def codex_shell_call(tools: Any, command: str) -> tuple[str, str]:
    """The (tool name, JSON arguments) that ask Codex to run ``command`` with the shell tool it offered.

    Codex versions name and shape the tool differently: ``exec_command`` (0.171) takes a ``cmd``
    string, ``shell_command`` a command string, ``shell`` an argv list. The call asks to run
    outside the sandbox, with a justification: under the default approval policy
    (``on-request``) that is what makes Codex ask the user first.
    """
    offered = {tool.get("name") for tool in tools if isinstance(tool, dict)} if isinstance(tools, list) else set()
    justification = f"Run {command}?"
    if "exec_command" in offered:
        arguments: dict[str, Any] = {
            "cmd": command,
            "sandbox_permissions": "require_escalated",
            "justification": justification,
        }
        return "exec_command", json.dumps(arguments)
    escalate = {"sandbox_permissions": "require_escalated", "with_escalated_permissions": True}
    if "shell_command" in offered:
        return "shell_command", json.dumps({"command": command, **escalate, "justification": justification})
    return "shell", json.dumps({"command": ["bash", "-lc", command], **escalate, "justification": justification})


def openai_events(reply: Reply, tools: Any = None) -> list[tuple[str, dict[str, Any]]]:
    """The Responses API stream of ``reply``: a message, or a ``function_call`` of Codex's shell tool."""
    number = next(_ids)
    response_id = f"resp_mock{number}"
    if reply.command is None:
        added: dict[str, Any] = {
            "type": "message",
            "id": f"msg_mock{number}",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        }
        done = {
            **added,
            "status": "completed",
            "content": [{"type": "output_text", "text": reply.text, "annotations": []}],
        }
        middle: list[tuple[str, dict[str, Any]]] = [
            (
                "response.output_text.delta",
                {
                    "type": "response.output_text.delta",
                    "item_id": added["id"],
                    "output_index": 0,
                    "content_index": 0,
                    "delta": reply.text,
                },
            )
        ]
    else:
        name, arguments = codex_shell_call(tools, reply.command)
        added = {
            "type": "function_call",
            "id": f"fc_mock{number}",
            "call_id": f"call_mock{number}",
            "name": name,
            "arguments": "",
            "status": "in_progress",
        }
        done = {**added, "arguments": arguments, "status": "completed"}
        middle = []
    usage = {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 15,
    }
    response = {"id": response_id, "object": "response", "model": MODEL, "status": "in_progress", "output": []}
    return [
        ("response.created", {"type": "response.created", "response": response}),
        ("response.output_item.added", {"type": "response.output_item.added", "output_index": 0, "item": added}),
        *middle,
        ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": done}),
        (
            "response.completed",
            {
                "type": "response.completed",
                "response": {**response, "status": "completed", "output": [done], "usage": usage},
            },
        ),
    ]


# --------------------------------------------------------------------------- the server


class ModelServer:
    """The server on 127.0.0.1 (a free port), serving from a daemon thread until ``close()``.

    ``url`` is the base for Claude Code's ``ANTHROPIC_BASE_URL``; Codex's provider wants
    ``url + "/v1"``. Use as a context manager, or call ``close()``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[Recorded] = []
        self._released = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="model-server", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> list[Recorded]:
        """A copy of every request so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def turns(self, api: Api | None = None) -> list[Recorded]:
        """The conversation turns so far (see ``Recorded.turn``), of one API if given."""
        return [r for r in self.requests if r.turn and (api is None or r.api == api)]

    def prompts(self) -> list[str]:
        """The prompts of the turns so far, in order."""
        return [r.prompt for r in self.turns() if r.prompt is not None]

    def record(self, request: Recorded) -> None:
        with self._lock:
            self._requests.append(request)

    def release(self) -> None:
        """Let every held reply (a ``HOLD`` prompt) go, now and from now on until ``hold()``."""
        self._released.set()

    def hold(self) -> None:
        """Hold ``HOLD`` replies again until the next ``release()``."""
        self._released.clear()

    def wait_released(self) -> None:
        self._released.wait(HOLD_LIMIT_S)

    def close(self) -> None:
        self._released.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> ModelServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _handler_for(server: ModelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive; every answer has a Content-Length

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the recorded requests are the log

        def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if content_type == "text/event-stream":
                self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            self.wfile.flush()

        def _json(self, data: Any, status: int = 200) -> None:
            self._send(status, json.dumps(data).encode())

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                return json.loads(raw) if raw else None
            except ValueError:
                return raw.decode(errors="replace")

        def do_HEAD(self) -> None:
            server.record(Recorded("HEAD", self.path, None, "other"))
            self._send(200, b"")

        def do_GET(self) -> None:
            server.record(Recorded("GET", self.path, None, "other"))
            path = self.path.split("?", 1)[0].rstrip("/")
            if path.endswith("/models"):
                self._json(
                    {"object": "list", "data": [{"id": MODEL, "object": "model", "type": "model"}], "models": []}
                )
            else:
                self._json({})

        def do_POST(self) -> None:
            body = self._body()
            path = self.path.split("?", 1)[0].rstrip("/")
            api: Api = (
                "anthropic" if path.endswith("/messages") else "openai" if path.endswith("/responses") else "other"
            )
            request = Recorded("POST", self.path, body, api)
            server.record(request)
            if api == "other":
                # count_tokens and anything else: a harmless answer of the right kind.
                self._json({"input_tokens": 10} if path.endswith("/count_tokens") else {})
                return
            reply = choose_reply(request)
            if HOLD in (request.prompt or "") and request.turn and reply.command is None:
                server.wait_released()
            stream = isinstance(body, dict) and body.get("stream")
            if api == "anthropic":
                if stream:
                    self._send(200, _sse(anthropic_events(reply)), "text/event-stream")
                else:
                    self._json(anthropic_message(reply))
            else:
                self._send(
                    200,
                    _sse(openai_events(reply, body.get("tools") if isinstance(body, dict) else None)),
                    "text/event-stream",
                )

    return Handler


@contextlib.contextmanager
def running() -> Iterator[ModelServer]:
    """A ``ModelServer`` for the ``with`` block."""
    server = ModelServer()
    try:
        yield server
    finally:
        server.close()
