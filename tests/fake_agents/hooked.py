"""A fake runtime that reports its turns through the hooks the fleet wires in, as the real CLIs do.

It finds its hooks the way each CLI does: Claude Code's ``--settings FILE`` (each hook a
command run by ``/bin/sh -c`` with the JSON on stdin; ``Notification`` hooks filtered by their
matcher against the notification type), Codex's ``-c notify=[...]`` (an argv, the JSON appended
as its last argument), Gemini CLI's settings file named by ``GEMINI_CLI_SYSTEM_DEFAULTS_PATH``
(like Claude's, and its stdout must be JSON). With ``FAKE_HOOKS=off`` it never runs them (an
old CLI, or trust not granted).

Its screen never shows a question or a busy line of its own unless told to, so what the fleet
reports comes from the hooks. Lines it reads (one per Enter):

``prompt``  fires UserPromptSubmit / BeforeAgent and shows Claude's ``❯`` input line
``perm``    fires Notification (permission_prompt) and clears the screen for plain text
``busy``    shows a spinner line with ``esc to interrupt`` (the prompt was answered)
``stop``    fires Stop / AfterAgent / Codex's agent-turn-complete with the last message
``quit``    fires SessionEnd and exits 0
"""

# ruff: noqa: RUF001, RUF002

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from typing import Any

SESSION = "11111111-2222-3333-4444-555555555555"


def _hooks() -> tuple[str, Any]:
    argv = sys.argv[1:]
    if "--settings" in argv:
        with open(argv[argv.index("--settings") + 1], encoding="utf-8") as handle:
            return "claude", json.load(handle)["hooks"]
    for index, word in enumerate(argv):
        if word == "-c" and argv[index + 1].startswith("notify="):
            return "codex", tomllib.loads(argv[index + 1])["notify"]
    path = os.environ.get("GEMINI_CLI_SYSTEM_DEFAULTS_PATH")
    if path:
        with open(path, encoding="utf-8") as handle:
            return "gemini", json.load(handle)["hooks"]
    return "none", None


def _fire(kind: str, hooks: Any, event: str, payload: dict[str, Any], matcher: str = "") -> None:
    if hooks is None or os.environ.get("FAKE_HOOKS") == "off":
        return
    if kind == "codex":
        if event == "Stop":
            subprocess.run([*hooks, json.dumps(payload)], check=False, stdin=subprocess.DEVNULL)
        return
    names = {"UserPromptSubmit": "BeforeAgent", "Stop": "AfterAgent"} if kind == "gemini" else {}
    for group in hooks.get(names.get(event, event), []):
        if kind == "claude" and group.get("matcher") and group["matcher"] != matcher:
            continue
        for hook in group["hooks"]:
            data = json.dumps({"session_id": SESSION, "hook_event_name": event, **payload}).encode()
            out = subprocess.run(["/bin/sh", "-c", hook["command"]], input=data, capture_output=True, check=False)
            if kind == "gemini":
                json.loads(out.stdout)  # Gemini refuses anything but JSON on stdout


def main() -> int:
    kind, hooks = _hooks()
    print(f"hooked fake ({kind})", flush=True)
    _fire(kind, hooks, "SessionStart", {"source": "startup"})
    for line in sys.stdin:
        word = line.strip()
        if word == "prompt":
            _fire(kind, hooks, "UserPromptSubmit", {"prompt": "do it"})
            print("❯ ", flush=True)
        elif word == "perm":
            _fire(kind, hooks, "Notification", {"notification_type": "permission_prompt"}, "permission_prompt")
            print("\x1b[H\x1b[2Jneeds your permission", flush=True)  # the input line is gone
        elif word == "busy":
            print("✶ Baking… (1s · esc to interrupt)", flush=True)
        elif word == "stop":
            message = {"last_assistant_message": "all done", "prompt_response": "all done"}
            if kind == "codex":
                message = {"type": "agent-turn-complete", "thread-id": SESSION, "last-assistant-message": "all done"}
            _fire(kind, hooks, "Stop", message)
            print("finished the turn", flush=True)
        elif word == "quit":
            _fire(kind, hooks, "SessionEnd", {"reason": "exit"})
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
