"""An agent's own hooks: the runtime says when a turn starts, ends, or asks the user something.

Claude Code, Codex and Gemini CLI report their turns and prompts to commands they run
(see ``docs/activity.md``). For those runtimes the fleet wires its own hook into every
agent at start, per process, without touching any file of the user's:

* Claude Code: ``--settings <run dir>/<agent>.claude.json`` adds hooks on ``SessionStart``,
  ``UserPromptSubmit``, ``Stop``, ``Notification`` (matchers ``permission_prompt``,
  ``idle_prompt``, ``elicitation_dialog``) and ``SessionEnd`` (JSON on stdin).
* Codex: ``-c notify=[...]`` runs the hook when a turn completes, the JSON as the last
  argument (``agent-turn-complete`` with ``thread-id`` and ``last-assistant-message``).
  Codex's lifecycle hooks (``hooks.json``) run only once the user has reviewed and trusted
  them in ``/hooks``, so the fleet does not rely on them.
* Gemini CLI: ``GEMINI_CLI_SYSTEM_DEFAULTS_PATH=<run dir>/<agent>.gemini.json`` (the
  lowest-precedence settings layer; a copy of the system's own defaults file with the
  fleet's hooks added) with hooks on ``SessionStart``, ``BeforeAgent``, ``AfterAgent``,
  ``Notification`` and ``SessionEnd``.

Every hook runs :data:`SCRIPT` (``/bin/sh <run dir>/hook.sh NAME EVENT [PAYLOAD]``), which
uses builtins only: it appends one line, ``<payload>\\t<event>\\t<uptime>``, to
``<run dir>/<agent>.hooks`` (``O_APPEND``; the payload is the JSON from stdin or from its
third argument, its line breaks removed; the time is ``/proc/uptime``, the boot-time clock,
read without a process). Event and time come last, where a reader finds them first.

What the hooks say is combined with the screen by :func:`decide`: a hook that has spoken
in the agent's current run decides ``working``/``idle``/``waiting``; the screen covers what
the hooks do not report (menus, Codex's approvals, the end of a permission prompt); the
output age stays the fallback for custom runtimes. Readers (:func:`latest`,
:func:`last_message`) treat the file as untrusted input: capped reads, no symlinks.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import stat
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from fleetlib.atomic import atomic_write_text
from fleetlib.rundir import SAFE_OPEN_FLAGS
from fleetlib.runtimes import RUNTIMES

SCRIPT_NAME: Final = "hook.sh"
RECORD_SUFFIX: Final = ".hooks"
ROTATED_SUFFIX: Final = ".hooks.1"
ROTATE_BYTES: Final = 256 * 1024  # the watcher moves a record past this aside (one old file kept)
TAIL_BYTES: Final = 4096  # enough for a usual last line, whole
MESSAGE_CAP: Final = 1024 * 1024  # how far back last_message looks
HOOKED_RUNTIMES: Final = tuple(name for name, runtime in RUNTIMES.items() if runtime.hooks)
SILENT_AFTER_S: Final = 30.0  # a hooked agent up this long without an event runs without hooks
GEMINI_DEFAULTS_ENV: Final = "GEMINI_CLI_SYSTEM_DEFAULTS_PATH"
GEMINI_SYSTEM_DEFAULTS: Final = Path("/etc/gemini-cli/system-defaults.json")
CLOCK_SLACK_S: Final = 0.1  # see current()
ENDED: Final = "ended"  # the session ended: the hooks no longer speak for this run

# $1 agent name, $2 event, $3 the payload (Codex passes it as an argument; others on stdin).
# Builtins only (read, printf, case): a hook runs on every turn of every agent. Gemini parses
# a hook's stdout as JSON, so its events print an empty object.
SCRIPT: Final = """\
# fleet hook recorder (generated; see fleetlib/hooks.py). Usage: sh hook.sh NAME EVENT [PAYLOAD]
f=${0%/*}/$1.hooks e=$2 p= t=0
if [ $# -ge 3 ]; then
  while IFS= read -r l || [ -n "$l" ]; do p=$p$l; done <<EOF
$3
EOF
else
  while IFS= read -r l || [ -n "$l" ]; do p=$p$l; done
fi
{ read -r t _ </proc/uptime; } 2>/dev/null
case $e in gemini.*) echo '{}';; esac
{ printf '%s\\t%s\\t%s\\n' "$p" "$e" "$t" >>"$f"; } 2>/dev/null
exit 0
"""

# Event -> the activity it announces (ENDED: the session is over). Claude's Notification
# is registered once per matcher, the matcher in the event name.
EVENT_STATES: Final[Mapping[str, str]] = {
    "claude.SessionStart": "idle",
    "claude.UserPromptSubmit": "working",
    "claude.Stop": "idle",
    "claude.Notification:permission_prompt": "waiting",
    "claude.Notification:elicitation_dialog": "waiting",
    "claude.Notification:idle_prompt": "idle",
    "claude.SessionEnd": ENDED,
    "gemini.SessionStart": "idle",
    "gemini.BeforeAgent": "working",
    "gemini.AfterAgent": "idle",
    "gemini.Notification": "waiting",
    "gemini.SessionEnd": ENDED,
    "codex.notify": "idle",  # only agent-turn-complete is sent (see event_state)
}
# States whose end the runtime's hooks also announce: these the screen cannot overrule.
# Claude and Gemini say when a turn starts and ends, not when a permission prompt is
# answered; Codex's notify says only that a turn ended.
EXACT: Final[Mapping[str, frozenset[str]]] = {
    "claude": frozenset({"working", "idle"}),
    "gemini": frozenset({"working", "idle"}),
    "codex": frozenset(),
}
_CLAUDE_EVENTS: Final = ("SessionStart", "UserPromptSubmit", "Stop", "SessionEnd")
_CLAUDE_NOTIFICATIONS: Final = ("permission_prompt", "idle_prompt", "elicitation_dialog")
_GEMINI_EVENTS: Final = ("SessionStart", "BeforeAgent", "AfterAgent", "Notification", "SessionEnd")
# How Codex 0.171's thread-title job starts its prompt (its notify payload is compact JSON).
_CODEX_TITLE_JOB: Final = '"input-messages":["Generate a concise, single-line task title'
# Where each runtime's payload carries the session id and the last assistant message.
_SESSION_KEYS: Final = ("session_id", "thread-id")
_MESSAGE_KEYS: Final = ("last_assistant_message", "last-assistant-message", "prompt_response")


def script_path(run_dir: Path) -> Path:
    return run_dir / SCRIPT_NAME


def record_path(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}{RECORD_SUFFIX}"


def settings_path(run_dir: Path, name: str, runtime: str) -> Path:
    return run_dir / f"{name}.{runtime}.json"


def hook_command(run_dir: Path, name: str, event: str) -> list[str]:
    """The argv of one hook (a CLI appends the payload where it passes one as an argument)."""
    return ["/bin/sh", str(script_path(run_dir)), name, event]


def _command_hook(run_dir: Path, name: str, event: str) -> dict[str, Any]:
    """One command hook: Claude Code and Gemini CLI run it through a shell, hence quoted."""
    return {"type": "command", "command": shlex.join(hook_command(run_dir, name, event))}


def claude_settings(run_dir: Path, name: str) -> dict[str, Any]:
    """The ``--settings`` file of a Claude Code agent: only the fleet's hooks (pure)."""
    hooks: dict[str, Any] = {
        event: [{"hooks": [_command_hook(run_dir, name, f"claude.{event}")]}] for event in _CLAUDE_EVENTS
    }
    hooks["Notification"] = [
        {"matcher": kind, "hooks": [_command_hook(run_dir, name, f"claude.Notification:{kind}")]}
        for kind in _CLAUDE_NOTIFICATIONS
    ]
    return {"hooks": hooks}


def gemini_settings(run_dir: Path, name: str, defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The system-defaults file of a Gemini CLI agent: the system's own defaults (when it
    has any) with the fleet's hooks added to whatever hooks they hold (pure)."""
    settings = dict(defaults or {})
    hooks = dict(settings.get("hooks") or {}) if isinstance(settings.get("hooks"), dict) else {}
    for event in _GEMINI_EVENTS:
        ours = {"hooks": [_command_hook(run_dir, name, f"gemini.{event}") | {"name": f"fleet-{event}"}]}
        theirs = hooks.get(event)
        hooks[event] = [*(theirs if isinstance(theirs, list) else []), ours]
    settings["hooks"] = hooks
    return settings


@dataclass(frozen=True)
class Wiring:
    """What starting an agent adds for its hooks: words after its command (before the
    roster's ``args``) and variables (before the roster's ``env``, which wins)."""

    args: tuple[str, ...] = ()
    env: Mapping[str, str] | None = None


def wiring(run_dir: Path, name: str, runtime: str) -> Wiring:
    """How an agent of ``runtime`` gets the fleet's hooks (pure); nothing for other runtimes."""
    if runtime == "claude":
        return Wiring(("--settings", str(settings_path(run_dir, name, runtime))))
    if runtime == "codex":
        notify = "[" + ", ".join(json.dumps(word) for word in hook_command(run_dir, name, "codex.notify")) + "]"
        return Wiring(("-c", f"notify={notify}"))
    if runtime == "gemini":
        return Wiring(env={GEMINI_DEFAULTS_ENV: str(settings_path(run_dir, name, runtime))})
    return Wiring()


def wired_argv(run_dir: Path, name: str, runtime: str, argv: Sequence[str], args: Sequence[str]) -> list[str]:
    """The argv an agent runs: ``argv`` (its roster argv: command then ``args``) with the
    hooks' words between its command and its ``args``."""
    command = list(argv[: len(argv) - len(args)])
    return [*command, *wiring(run_dir, name, runtime).args, *args]


def wired_env(run_dir: Path, name: str, runtime: str, env: Mapping[str, str]) -> dict[str, str]:
    """The agent's environment from the fleet: the hooks' variables, then the roster's ``env``."""
    return {**(wiring(run_dir, name, runtime).env or {}), **env}


def install(run_dir: Path, agents: Iterable[tuple[str, str]]) -> None:
    """Write :data:`SCRIPT` and the settings files of the hooked ``(name, runtime)`` agents
    into the (private, existing) run dir, each only when it differs (atomic: a starting
    agent reads the old or the new file)."""
    _write_if_changed(script_path(run_dir), SCRIPT)
    defaults: Mapping[str, Any] | None = None
    for name, runtime in agents:
        if runtime == "claude":
            settings = claude_settings(run_dir, name)
        elif runtime == "gemini":
            if defaults is None:
                defaults = _system_defaults()
            settings = gemini_settings(run_dir, name, defaults)
        else:
            continue
        _write_if_changed(settings_path(run_dir, name, runtime), json.dumps(settings, indent=1) + "\n")


def _system_defaults() -> Mapping[str, Any]:
    """Gemini's own system defaults (replaced for our agents by a copy with our hooks)."""
    try:
        data = json.loads(GEMINI_SYSTEM_DEFAULTS.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_if_changed(path: Path, text: str) -> None:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        if path.read_text(encoding="utf-8") == text:
            return
    atomic_write_text(path, text, mode=0o600)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class HookEvent:
    """The last event an agent's hooks recorded: its name, when (epoch seconds), its payload
    (raw JSON text, possibly cut at its start when the read was capped)."""

    event: str
    at: float
    payload: str = ""
    uptime: str = ""  # the stamp as written: with the name, tells one event from the next

    @property
    def stamp(self) -> str:
        """``<event> <uptime>``: what the watcher records as the last event it took in."""
        return f"{self.event} {self.uptime}"

    @property
    def state(self) -> str | None:
        """The activity the event announces, :data:`ENDED`, or None (an event that says nothing)."""
        return event_state(self.event, self.payload)

    def data(self) -> dict[str, Any]:
        """The payload as a JSON object; empty when it is not one."""
        try:
            value = json.loads(self.payload)
        except (ValueError, RecursionError):
            return {}
        return value if isinstance(value, dict) else {}

    @property
    def side_job(self) -> bool:
        """An event of the runtime's own side work, not of the agent's conversation: Codex
        names each new thread in an ephemeral thread of its own, whose turn end it also
        sends to ``notify`` (with another thread id)."""
        return self.event == "codex.notify" and _CODEX_TITLE_JOB in self.payload

    @property
    def session_id(self) -> str | None:
        return _text(self.data(), _SESSION_KEYS)

    @property
    def message(self) -> str | None:
        return _text(self.data(), _MESSAGE_KEYS)


def event_state(event: str, payload: str = "") -> str | None:
    """What ``event`` announces: an activity, :data:`ENDED`, or None. Codex's notify is
    taken as a turn's end whatever its payload (``agent-turn-complete`` is the only type it
    sends, and a capped read may have cut the payload's start)."""
    del payload  # the event name says it all, for every runtime today
    return EVENT_STATES.get(event)


def _text(data: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def boot_offset() -> float:
    """Wall clock minus the boot-time clock (what ``/proc/uptime`` counts): turns the
    hook's uptime stamps into epoch seconds."""
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


def parse_line(line: bytes, offset: float) -> HookEvent | None:
    """One record line (without its newline) as an event; None when it is not one."""
    parts = line.rsplit(b"\t", 2)
    if len(parts) != 3:
        return None
    payload, event, stamp = parts
    try:
        uptime = float(stamp)
    except ValueError:
        return None
    if not (0 <= uptime < 1e10) or not event or len(event) > 128 or not event.isascii() or b" " in event:
        return None
    return HookEvent(event.decode(), uptime + offset, payload.decode(errors="replace"), stamp.decode())


def _read_tail(path: str, size: int) -> tuple[bytes, bool] | None:
    """The last ``size`` bytes of the regular file ``path`` and whether that is all of it;
    None when it is missing, empty or not a regular file (never through a symlink)."""
    try:
        fd = os.open(path, os.O_RDONLY | SAFE_OPEN_FLAGS)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
            return None
        start = max(0, st.st_size - size)
        return os.pread(fd, st.st_size - start, start), start == 0
    except OSError:
        return None
    finally:
        os.close(fd)


def _tails(run_dir: Path, name: str, size: int) -> list[tuple[bytes, bool]]:
    """The tail of the record, or of the rotated one when the record is empty or missing
    (the watcher just moved it aside)."""
    # Plain strings: read for every agent on every watcher tick, and pathlib costs more than the read.
    for path in (f"{run_dir}/{name}{RECORD_SUFFIX}", f"{run_dir}/{name}{ROTATED_SUFFIX}"):
        tail = _read_tail(path, size)
        if tail is not None and tail[0].strip():
            return [tail]
    return []


def latest(run_dir: Path, name: str, *, offset: float | None = None, after: float | None = None) -> HookEvent | None:
    """The last event recorded for agent ``name``, whole, side jobs skipped (see
    :attr:`HookEvent.side_job`); None without one, or when it is older than ``after``
    (epoch seconds: the start of the agent's current run, so an earlier run's events never
    count). One capped read of :data:`TAIL_BYTES` for a usual line; a longer one is read
    back to its start, up to :data:`MESSAGE_CAP` bytes."""
    offset = boot_offset() if offset is None else offset
    size = TAIL_BYTES
    while True:
        tails = _tails(run_dir, name, size)
        if not tails:
            return None
        tail, complete = tails[0]
        lines = tail.rstrip(b"\n").split(b"\n")
        for line in reversed(lines if complete else lines[1:]):  # a first line may be cut
            event = parse_line(line, offset)
            if event is not None and not event.side_job:
                return event if after is None or event.at >= after else None
        if complete or size >= MESSAGE_CAP:
            return None
        size *= 8


def last_event_with(run_dir: Path, name: str, key: str) -> HookEvent | None:
    """The most recent event (within :data:`MESSAGE_CAP` bytes) whose payload has ``key``
    (``message`` or ``session_id``), whole."""
    offset = boot_offset()
    for tail, whole in _tails(run_dir, name, MESSAGE_CAP):
        lines = tail.rstrip(b"\n").split(b"\n")
        if not whole:
            lines = lines[1:]  # cut at its start
        for line in reversed(lines):
            event = parse_line(line, offset)
            if event is not None and not event.side_job and getattr(event, key):
                return event
    return None


def last_message(run_dir: Path, name: str) -> str | None:
    """The agent's last assistant message as its hooks reported it (Claude Code's ``Stop``,
    Codex's turn-complete notification, Gemini's ``AfterAgent``); None when none did."""
    event = last_event_with(run_dir, name, "message")
    return event.message if event is not None else None


def run_started(run_dir: Path, name: str) -> float | None:
    """When the agent's current run began: the time its supervisor wrote ``<agent>.exec``
    right before exec'ing it (see :mod:`fleetlib.pane`); None without the record."""
    with contextlib.suppress(OSError):
        return os.lstat(run_dir / f"{name}.exec").st_mtime
    return None


def current(run_dir: Path, name: str, *, offset: float | None = None, started: float | None = None) -> HookEvent | None:
    """The last event of the agent's current run (see :func:`latest`). The stamps count in
    hundredths of a second and the two clocks are compared across processes: an event up to
    :data:`CLOCK_SLACK_S` before the run's record counts (a restart is at least a second
    after the run before it exited). ``started``: the run's start when the caller knows it."""
    started = run_started(run_dir, name) if started is None else started
    return latest(run_dir, name, offset=offset, after=None if started is None else started - CLOCK_SLACK_S)


def rotate(run_dir: Path, name: str, limit: int = ROTATE_BYTES) -> bool:
    """Move the record aside (replacing the older one) once it has grown past ``limit``;
    the next hook starts a new one. A hook that opened the old file a moment before writes
    into the moved one, which readers fall back to while the new one is empty."""
    path = record_path(run_dir, name)
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size <= limit:
            return False
        os.replace(path, run_dir / f"{name}{ROTATED_SUFFIX}")
    except OSError:
        return False
    return True


# --------------------------------------------------------------------------- deciding


@dataclass(frozen=True)
class Reading:
    """An activity and what it was read from: ``hook``, ``screen`` (a pattern matched) or
    ``output`` (no pattern did: the output age decided)."""

    state: str
    source: str


def decide(
    runtime: str,
    hook: HookEvent | None,
    screen: Reading | None,
    screen_at: float | None,
) -> Reading | None:
    """The agent's activity from its last hook event of the current run and its screen
    reading taken at ``screen_at`` (pure).

    * No event, one that says nothing, or the session ended: the screen decides.
    * A screen read after the event that shows a question (a pattern matched) wins: menus
      and approvals the hooks do not report.
    * An event whose end the runtime's hooks do not announce (a permission prompt, Codex's
      turn end) gives way to a screen read after it that shows another state by a pattern
      (the prompt was answered; a new turn runs).
    * Otherwise (and whenever the screen agrees) the hook decides.
    """
    state = hook.state if hook is not None else None
    if hook is None or state is None or state == ENDED:
        return screen
    newer = screen is not None and screen_at is not None and screen_at >= hook.at
    overruled = (
        screen is not None
        and screen.state != state
        and (screen.state == "waiting" or state not in EXACT.get(runtime, frozenset()))
    )
    if newer and screen is not None and screen.source == "screen" and overruled:
        return screen
    return Reading(state, "hook")
