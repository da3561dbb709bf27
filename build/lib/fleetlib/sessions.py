"""Conversations that survive a restart: each agent's session id, kept in the run dir.

An agent whose roster entry resumes (``resume``, default on for claude, codex and gemini)
keeps the id of its conversation in ``<run dir>/<name>.session``; every later start of the
agent (``fleet restart``, a crash restart by its supervisor, a restart by systemd) resumes
that conversation instead of starting a new one. How the id gets there differs:

* **Claude Code** lets the caller choose: the supervisor pins a new UUID
  (``claude --session-id UUID``) and records it before the first start.
* **Codex** and **Gemini CLI** choose their own: their hooks report it (Codex's ``notify``
  ``thread-id``, Gemini's ``session_id``; recorded with :func:`record_session`), and for
  Codex :func:`learn_codex_sessions` reads it from the rollout file the running process
  holds open (``$CODEX_HOME/sessions/YYYY/MM/DD/rollout-<time>-<uuid>.jsonl``), which the
  engine does before it stops or restarts a Codex agent.

The argv a window runs carries one marker word (:data:`RESUME_MARKER` + the runtime,
right after the command, before the roster's ``args``); the pane supervisor
(:mod:`fleetlib.pane`) replaces it on every start by what that start needs:
``--resume ID`` / ``--session-id UUID`` (claude), ``resume ID`` (codex),
``--resume ID`` (gemini), or nothing. A resumed run that exits with an error within
:data:`RESUME_QUICK_S` seconds (the session is gone) is started once more at once without
it: one line on the pane (so in the transcript), the same line in
``<run dir>/<name>.session-note`` (shown by ``fleet status``), and the id is dropped, so
there is never a loop of failing resumes. ``fleet restart --fresh`` drops the id before
the start: a new conversation.

The files are untrusted on read (the run dir is private, but anything could have written
there): read capped, never through a symlink, and an id is used only when it is made of
:data:`SESSION_ID_PATTERN`'s characters (it ends up as a word of a command line).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

from fleetlib.atomic import atomic_write_text
from fleetlib.errors import FleetError
from fleetlib.rundir import read_capped

SESSION_SUFFIX: Final = ".session"
NOTE_SUFFIX: Final = ".session-note"
# UUIDs (all three CLIs use them) and the like; never an option (no leading "-"), never
# anything a shell or tmux would read specially.
SESSION_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# The word in an agent's argv the supervisor replaces by the resume words of each start.
RESUME_MARKER: Final = "--fleet-resume="
# Runtimes that can resume a conversation, and the default of roster key `resume` for them.
RESUMABLE: Final = ("claude", "codex", "gemini")
# A resumed run that fails faster than this is taken for a session that is gone.
RESUME_QUICK_S: Final = 20
_READ_CAP: Final = 256
_NOTE_CAP: Final = 512
# .../sessions/2026/12/04/rollout-2026-12-04T23-50-01-<uuid>.jsonl, as Codex names them.
_CODEX_ROLLOUT: Final = re.compile(
    r"/sessions/\d{4}/\d{2}/\d{2}/rollout-[0-9T:-]+-"
    r"([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\.jsonl\Z"
)


def session_path(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}{SESSION_SUFFIX}"


def note_path(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}{NOTE_SUFFIX}"


def valid_session_id(session_id: str) -> bool:
    """Whether ``session_id`` may be passed to an agent's command line."""
    return SESSION_ID_PATTERN.fullmatch(session_id) is not None


def record_session(run_dir: Path, name: str, session_id: str) -> bool:
    """Keep ``session_id`` as agent ``name``'s conversation; its next start resumes it.

    Atomic (a reader sees the old id or the new one) and private (0600). An id that is not
    :func:`valid_session_id` (it comes from a hook's payload: untrusted) is not recorded
    and changes nothing: returns False. A failed write raises ``OSError``, the old file
    left as it was."""
    if not valid_session_id(session_id):
        return False
    if read_session(run_dir, name) != session_id:  # hooks report the same id every turn
        atomic_write_text(session_path(run_dir, name), session_id + "\n", mode=0o600)
    return True


def read_session(run_dir: Path, name: str) -> str | None:
    """Agent ``name``'s recorded session id; None when there is none, or what is there is
    not a valid id (or not a regular file: never followed, never a hang)."""
    return _read_line(session_path(run_dir, name), _READ_CAP, valid_session_id)


def read_note(run_dir: Path, name: str) -> str | None:
    """The supervisor's line about the agent's last failed resume, if any."""
    return _read_line(note_path(run_dir, name), _NOTE_CAP, lambda line: line.isprintable())


def _read_line(path: Path, cap: int, valid: Callable[[str], bool]) -> str | None:
    try:
        raw = read_capped(path, cap, what="session file")
    except FleetError:
        return None
    if raw is None:
        return None
    line = raw.decode("utf-8", "replace").strip()
    return line if line and valid(line) else None


def forget_session(run_dir: Path, name: str) -> None:
    """Drop agent ``name``'s session id and note: its next start is a new conversation."""
    for path in (session_path(run_dir, name), note_path(run_dir, name)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def codex_session_of(pids: Iterable[int]) -> str | None:
    """The Codex thread id whose rollout file one of ``pids`` holds open; None if none does
    (the processes are gone, or Codex wrote no rollout yet: no turn was taken)."""
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            found = _CODEX_ROLLOUT.search(target)
            if found:
                return found.group(1).lower()
    return None


def learn_codex_sessions(run_dir: Path, pids_by_name: dict[str, list[int]]) -> None:
    """Record the thread id each named Codex agent's processes have open (see
    :func:`codex_session_of`); agents with none keep what they had."""
    for name, pids in pids_by_name.items():
        found = codex_session_of(pids)
        if found is not None:
            with contextlib.suppress(OSError):  # a full disk must not stop a restart
                record_session(run_dir, name, found)


def marker_word(runtime: str) -> str:
    """The argv word the supervisor replaces by ``runtime``'s resume words."""
    return f"{RESUME_MARKER}{runtime}"
