"""Text and JSON from fleetlib's result objects, and the live progress line.

Every task renders from data: JSON is the object's ``to_json()``; the text is built from
the same object by the pure ``*_lines`` functions here (one wording for both backends;
dry runs say "would ..."; an operation that changed nothing says "nothing to do"). A
result across hosts (:class:`~fleetlib.results.HostsResult`) is rendered with the same
wording, each line prefixed with its host (``h1: restarted 2 agent(s) ...``).
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, TextIO

if TYPE_CHECKING:
    # Types only: the command line imports no fleetlib module at start-up (``fleet --list``).
    from fleetlib.results import (
        AgentOutcome,
        Bootstrapped,
        Check,
        HostsResult,
        InstallResult,
        OperationResult,
        Progress,
        ProgressHook,
        SendResult,
        StatusReport,
        Trusted,
        WaitReport,
        WorktreeRemoval,
    )
    from fleetlib.roster import Agent
    from fleetlib.status import FleetStatus

NAMES_SHOWN: Final = 10  # agent names listed in a summary line before "and N more"
PROGRESS_MIN_AGENTS: Final = 4  # fewer agents finish too fast for a progress line to help
REDRAW_S: Final = 0.1
TICK_S: Final = 0.2
CLEAR_LINE: Final = "\r\x1b[K"  # carriage return, then erase to the end of the line
PAST: Final = {"start": "started", "stop": "stopped", "restart": "restarted"}


def print_json(data: Any, stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    json.dump(data, out, indent=2)
    out.write("\n")


def visible(text: str) -> str:
    """``text`` on one line with nothing a terminal would act on: a control character
    (a newline, an escape sequence's ESC) shown as its escape (``\\n``, ``\\x1b``)."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() or char == " " else repr(char)[1:-1] for char in text)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns two spaces apart (trailing blanks trimmed); each cell :func:`visible`."""
    rows = [[visible(cell) for cell in row] for row in rows]
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)


def names_phrase(names: Sequence[str]) -> str:
    """``3 agent(s) (a, b, c)``; long lists end in ``, … and N more``."""
    shown = ", ".join(names[:NAMES_SHOWN])
    if len(names) > NAMES_SHOWN:
        shown += f", … and {len(names) - NAMES_SHOWN} more"
    return f"{len(names)} agent(s) ({shown})" if names else "0 agent(s)"


# --------------------------------------------------------------------------- roster


def agent_value(value: Any) -> str:
    """A roster value on one text line: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def roster_written_line(source: str, count: int) -> str:
    return f"wrote starter roster {source} ({count} agents)"


def roster_valid_line(source: str, count: int) -> str:
    return f"ok: {source} is valid ({count} agents)"


def roster_table(agents: Sequence[Agent]) -> list[str]:
    """``roster.list``: one row per agent."""
    rows = [[a.name, a.runtime, shlex.join(a.argv()), a.cwd or "-", a.description] for a in agents]
    return table(["NAME", "RUNTIME", "COMMAND", "CWD", "DESCRIPTION"], rows)


def roster_agent_lines(data: dict[str, Any]) -> list[str]:
    """``roster.show``: ``key: value`` per field of the agent's JSON (``-`` for null)."""
    return [f"{key}: {'-' if value is None else visible(agent_value(value))}" for key, value in data.items()]


def roster_change_lines(verb: str, name: str, source: str, count: int, program: str) -> list[str]:
    return [
        f"{verb} agent {name!r} in {source} ({count} agents)",
        f"run `{program}` so the systemd units match the roster",
    ]


def argv_text(argv: Sequence[str]) -> str:
    return shlex.join(argv)


# --------------------------------------------------------------------------- start / stop / restart


def operation_summary(result: OperationResult) -> str:
    """One line saying what happened, e.g. ``restarted 3 agent(s) (a, b, c) and the
    holder in 1.20 s: all up`` or ``nothing to do: 3 agent(s) (...) already running``."""
    groups: dict[str, list[str]] = {}
    for outcome in result.agents:
        groups.setdefault(outcome.action, []).append(outcome.name)
    holder = result.holder
    clauses: list[str] = []
    holder_said = False
    for action, names in groups.items():
        if action in ("unchanged", "failed"):
            continue
        clause = f"{action} {names_phrase(names)}"
        if holder == action:
            clause += " and the holder"
            holder_said = True
        clauses.append(clause)
    if holder not in (None, "unchanged", "failed") and not holder_said:
        clauses.append(f"{holder} the holder")
    unchanged = groups.get("unchanged", [])
    failed = groups.get("failed", [])
    unchanged_word = "already stopped" if result.operation == "stop" else "already running"
    if not clauses and not failed and holder != "failed":
        return (
            f"{'would do nothing' if result.dry_run else 'nothing to do'}: {names_phrase(unchanged)} {unchanged_word}"
        )
    line = ", ".join(clauses)
    if clauses and not result.dry_run:
        line += f" in {result.seconds:.2f} s"
        if result.ok and holder != "failed" and result.operation != "stop":
            line += ": all up"
    extras = [f"{names_phrase(unchanged)} {unchanged_word}"] if unchanged else []
    if failed or holder == "failed":
        extras.append("failed: " + (names_phrase(failed) if failed else "the holder"))
    return "; ".join(part for part in [line, *extras] if part)


def failure_lines(outcomes: Sequence[AgentOutcome]) -> list[str]:
    """For stderr: each failed agent (with its exit status), why, and the last lines it
    printed (unless the reason already quotes them)."""
    lines: list[str] = []
    for outcome in outcomes:
        status = f" (exit status {outcome.exit_status})" if outcome.exit_status is not None else ""
        error = outcome.error or "failed"
        lines.append(f"{outcome.name}{status}: {error}")
        output = (outcome.output or "").rstrip()
        if output and output not in error:
            lines += [f"    {line}" for line in output.splitlines()]
    return lines


def failure_message(result: OperationResult) -> str:
    """The one ``error:`` line a failed operation exits with."""
    failed = result.failures
    named = "; ".join(f"{o.name}: {o.error or 'failed'}" for o in failed[:NAMES_SHOWN])
    if len(failed) > NAMES_SHOWN:
        named += f"; … and {len(failed) - NAMES_SHOWN} more"
    if not failed:
        return f"{result.operation} failed: the holder did not reach the state"
    return f"{result.operation} failed for {len(failed)} agent(s): {named}"


# --------------------------------------------------------------------------- install / uninstall


def install_lines(result: InstallResult) -> list[str]:
    would = result.dry_run
    stopped = f"{'would stop' if would else 'stopped'} {names_phrase(result.stopped)}: no longer in the roster"
    lines = [stopped] if result.stopped else []
    lines += [f"{'would write' if would else 'wrote'} {path}" for path in result.written]
    lines += [f"{'would remove' if would else 'removed'} {path}" for path in result.removed]
    if result.disabled:
        lines.append(
            f"{'would disable' if would else 'disabled'} {len(result.disabled)} unit(s): {' '.join(result.disabled)}"
        )
    if result.reloaded:
        lines.append("would reload the user manager" if would else "reloaded the user manager")
    if result.enabled:
        lines.append(
            f"{'would enable' if would else 'enabled'} {len(result.enabled)} unit(s): {' '.join(result.enabled)}"
        )
    if not result.changed and result.backend == "systemd":
        if result.operation == "install":
            lines.append("nothing to do: the installed units already match the roster")
        else:
            lines.append("nothing to do: no fleet units are installed")
    return lines + list(result.notes)


# --------------------------------------------------------------------------- status


def status_rows_json(status: FleetStatus) -> list[dict[str, Any]]:
    return status.to_json()


def state_cell(state: str, *, in_roster: bool) -> str:
    """A status row's STATE: the state, marked for an agent the roster no longer lists."""
    return state if in_roster else f"{state} (not in roster)"


def _ago(iso: str | None, now: float) -> str:
    """``12s``, ``5m``, ``3h``, ``2d``: how long ago an ISO 8601 time was; ``-`` if unknown."""
    if not iso:
        return "-"
    try:
        seconds = max(0.0, now - datetime.fromisoformat(iso).timestamp())
    except ValueError:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def status_lines(status: FleetStatus, now: float | None = None) -> list[str]:
    """The holder, then one row per agent: its state (the activity ``working``, ``waiting``
    or ``idle`` while it runs; ``restarting``, ``failed``, ``stopped``, ... otherwise), how
    long it has been in it, how long ago it last wrote anything; the backend's own states
    are in ``--json``."""
    now = time.time() if now is None else now
    rows = [agent.to_json() for agent in [*status.agents, *status.strays]]  # as a host's rows read
    return [
        f"backend: {status.backend}",
        f"holder {status.holder.unit}: {status.holder.active_state} ({status.holder.sub_state})",
        *([f"note: {status.note}"] if status.note else []),
        *table(STATUS_HEADER, [status_cells(row, now) for row in rows]),
        *status_notes(rows),
    ]


STATUS_HEADER: Final = ("NAME", "STATE", "FOR", "OUTPUT", "PID", "SINCE", "RESTARTS", "FAILURES", "EXIT")


def status_cells(row: dict[str, Any], now: float) -> list[str]:
    """One status row's cells (:data:`STATUS_HEADER`) from its JSON object (``status --json``),
    so a row a host answered reads like a local one."""
    return [
        row["name"],
        state_cell(row["state"], in_roster=row.get("in_roster") is not False),
        _ago(row.get("state_since"), now),
        _ago(row.get("last_output_at"), now),
        _or_dash(row.get("pid")),
        row.get("since") or "-",
        _or_dash(row.get("restarts")),
        str(row.get("failures", 0)),
        _or_dash(row.get("exit_status")),
    ]


def status_notes(rows: Sequence[dict[str, Any]], prefix: str = "") -> list[str]:
    """The lines under the table: why an agent is down, and a failed resume (the agent
    started a new conversation), one line each."""
    reasons = [f"{prefix}{row['name']}: {row['process_state']}: {row['reason']}" for row in rows if row.get("reason")]
    notes = [f"{prefix}{row['name']}: {row['session_note']}" for row in rows if row.get("session_note")]
    return reasons + notes


def hosts_status_lines(result: HostsResult[StatusReport], now: float | None = None) -> list[str]:
    """Every host's rows in one table: :func:`status_lines`' columns after a HOST column."""
    now = time.time() if now is None else now
    rows = result.agent_rows()
    notes = [line for host, report in result.answers() for line in status_notes(report.agents, f"{host}: ")]
    return [*table(["HOST", *STATUS_HEADER], [[row["host"], *status_cells(row, now)] for row in rows]), *notes]


# --------------------------------------------------------------------------- several hosts


def host_lines(result: HostsResult[Any], text: Callable[[Any], list[str]]) -> list[str]:
    """``text`` of every host's answer, each line prefixed with the host."""
    return [f"{host}: {line}" for host, answer in result.answers() for line in text(answer)]


def host_failure_lines(result: HostsResult[Any]) -> list[str]:
    """For stderr: each failed host and why (one line each)."""
    return [f"error: {host.host}: {host.error}" for host in result.failed]


def hosts_failure_message(result: HostsResult[Any]) -> str:
    """The one ``error:`` line a command that failed on some host exits with."""
    names = ", ".join(host.host for host in result.failed)
    return f"error: {result.operation} failed on {len(result.failed)} host(s): {names}"


def operation_lines(result: OperationResult) -> list[str]:
    """A host's start/stop/restart: the summary, then each failure."""
    return [operation_summary(result), *(f"{o.name}: {o.error}" for o in result.failures)]


def send_all_lines(result: SendResult) -> list[str]:
    """A host's ``send --all``: whom it sent to, then each failure."""
    sent = [outcome.name for outcome in result.agents if outcome.ok]
    done = [f"sent {result.characters} characters to {', '.join(sent)}"] if sent else []
    return done + [f"FAILED {o.name}: {o.error}" for o in result.failures]


def send_lines(result: SendResult) -> list[str]:
    """What a send did, one line per agent it reached."""
    lines = []
    for outcome in result.agents:
        if outcome.ok and outcome.detail:
            lines.append(outcome.detail)
        elif outcome.ok:
            how = ": accepted" if outcome.verified else "" if result.dry_run else " (not verified)"
            lines.append(f"{outcome.action} {result.characters} characters to {outcome.name}{how}")
    return lines


def remote_send_lines(result: SendResult, host: str) -> list[str]:
    """A send to one agent on another host, as that host reported it."""
    return [
        f"{host}: {o.action} {result.characters} characters to {o.name}{': accepted' if o.verified else ''}"
        for o in result.agents
        if o.ok
    ]


def wait_line(wanted: str, seconds: float, name: str | None, count: int) -> str:
    """What a wait that reached its state says."""
    who = name or f"all {count} agent(s)"
    return f"{who}: {wanted} after {seconds:.1f} s"


def bootstrap_lines(result: Bootstrapped) -> list[str]:
    return [f"installed {result.version} ({len(result.wheels)} wheels)"]


def trust_lines(result: Trusted) -> list[str]:
    return list(result.lines)


def hosts_list_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """``hosts.list``: a row per host (``local`` first): name, SSH target, backend, agents."""
    body = [[r["host"], r["ssh"] or "-", r["backend"], str(r["agents"])] for r in rows]
    return table(["HOST", "SSH", "BACKEND", "AGENTS"], body)


def host_wait_lines(result: WaitReport) -> list[str]:
    """A host's wait: the state reached and when, or where its agents were when it ended."""
    if result.ok:
        return [f"{result.wanted} after {result.seconds:.1f} s"]
    where = ", ".join(f"{row.name} is {row.state}" for row in result.agents if not row.reached)
    return [f"not {result.wanted} after {result.seconds:.1f} s: {where}"]


# --------------------------------------------------------------------------- doctor


def print_checks(checks: Sequence[Check], as_json: bool) -> None:
    """``fleet doctor``'s output: one line per check (with its fix), or the JSON list."""
    if as_json:
        print_json([check.to_json() for check in checks])
    else:
        for line in check_lines(checks):
            print(line)


def check_lines(checks: Sequence[Check]) -> list[str]:
    """One line per check (``ok``/``skip``/``FAIL``, name, detail), the fix indented below a failure."""
    width = max((len(check.name) for check in checks), default=0)
    lines: list[str] = []
    for check in checks:
        mark = "FAIL" if not check.ok else "skip" if check.skipped else "ok  "
        lines.append(f"{mark}  {check.name.ljust(width)}  {check.detail}")
        if not check.ok and check.fix:
            lines.append(f"      {' ' * width}  fix: {check.fix}")
    failed = sum(not check.ok for check in checks)
    lines.append("all checks passed" if not failed else f"{failed} of {len(checks)} check(s) failed")
    return lines


# --------------------------------------------------------------------------- progress


class LiveLine:
    """One status line on a terminal, rewritten in place (``\\r`` + erase line).

    Disabled (every call a no-op) unless enabled explicitly, which the tasks do only on a
    terminal without ``--json`` (:meth:`on_stderr`): a pipe or a log never sees it.
    Thread-safe, so a ticker thread and the main thread may both draw.
    """

    def __init__(self, stream: TextIO, *, enabled: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.enabled = enabled
        self.clock = clock
        self._text = ""
        self._drawn_at = -REDRAW_S
        self._lock = threading.Lock()

    @classmethod
    def on_stderr(cls, *, quiet: bool = False) -> LiveLine:
        """The line on stderr, enabled only when both stdout and stderr are a terminal (a
        redirected run is being logged or parsed) and not ``quiet`` (``--json``)."""
        return cls(sys.stderr, enabled=not quiet and sys.stderr.isatty() and sys.stdout.isatty())

    def show(self, text: str, *, force: bool = False) -> None:
        """Draw ``text`` (at most every ``REDRAW_S`` unless forced), cut to the terminal width."""
        if not self.enabled:
            return
        with self._lock:
            now = self.clock()
            if not force and now - self._drawn_at < REDRAW_S:
                return
            width = shutil.get_terminal_size((80, 24)).columns
            self._text = text[: max(width - 1, 1)]
            self._drawn_at = now
            self.stream.write(CLEAR_LINE + self._text)
            self.stream.flush()

    def clear(self) -> None:
        """Erase the line (before printing anything else, and at the end)."""
        if not self.enabled:
            return
        with self._lock:
            if self._text:
                self.stream.write(CLEAR_LINE)
                self.stream.flush()
                self._text = ""

    def above(self, write: Callable[[], None]) -> None:
        """Run ``write`` (which prints ordinary output) with the line out of its way."""
        text = self._text
        self.clear()
        write()
        if text:
            self.show(text, force=True)


def _no_progress(_: Progress) -> None:
    """Reports nothing (:func:`fleetlib.results.no_progress`, without importing fleetlib)."""


def progress_text(progress: Progress, label: str = "") -> str:
    """``restarting: 143/200 up, 2.1 s``: ``label`` (default: the operation), how many
    agents reached the state the current phase waits for, and the time so far."""
    going_down = "stop" in progress.phase or "stop" in progress.operation
    doing = label or progress.operation
    return f"{doing}: {progress.done}/{progress.total} {'down' if going_down else 'up'}, {progress.elapsed:.1f} s"


def progress_hook(line: LiveLine, label: str = "", min_agents: int = PROGRESS_MIN_AGENTS) -> ProgressHook:
    """A fleetlib progress hook drawing :func:`progress_text` on ``line`` for operations on
    at least ``min_agents`` agents (one that draws nothing when the line is off)."""
    if not line.enabled:
        return _no_progress

    def hook(progress: Progress) -> None:
        if progress.total >= min_agents:
            line.show(progress_text(progress, label))

    return hook


class StepTicker:
    """Shows the current step of a long job and its running time on a :class:`LiveLine`,
    redrawn by a daemon thread so the seconds keep counting while a step prints nothing
    (``build.dev: pnpm install, 12.4 s``)."""

    def __init__(self, line: LiveLine, label: str) -> None:
        self.line = line
        self.label = label
        self._step = ""
        self._since = line.clock()
        self._stop = threading.Event()

    def step(self, name: str, elapsed: float = 0.0) -> None:
        """The job entered ``name`` ``elapsed`` seconds ago (``done``: it finished)."""
        if name == "done":
            self._step = ""
            self.line.clear()
            return
        self._step = name
        self._since = self.line.clock() - elapsed
        self._draw(force=True)

    def _draw(self, *, force: bool = False) -> None:
        if self._step:
            self.line.show(f"{self.label}: {self._step}, {self.line.clock() - self._since:.1f} s", force=force)

    def _run(self) -> None:
        while not self._stop.wait(TICK_S):
            self._draw()

    @contextmanager
    def running(self) -> Iterator[StepTicker]:
        if not self.line.enabled:
            yield self
            return
        thread = threading.Thread(target=self._run, name="fleet-progress", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()
            self.line.clear()


WORKTREE_HEADER: Final = ("AGENT", "PATH", "BRANCH", "AHEAD/BEHIND", "DIRTY", "LAST COMMIT")


def worktree_removed_line(removal: WorktreeRemoval, agent: str) -> str:
    where = f"{removal.host}: " if removal.host else ""
    path, branch = removal.removed["path"], removal.removed["branch"]
    return f"{where}removed worktree {path} of agent {agent} (branch {branch} kept)"


def worktree_lines(rows: Sequence[dict[str, Any]], *, with_host: bool) -> list[str]:
    """``worktree.list``'s table: one row per agent (after its HOST across hosts)."""
    body = [
        [
            *([str(row.get("host"))] if with_host else []),
            str(row["agent"]),
            str(row["path"]),
            str(row["branch"]),
            "-" if row["ahead"] is None else f"+{row['ahead']}/-{row['behind']}",
            str(len(row["dirty"])) if row["exists"] else "-",
            row["last_commit"] or ("-" if row["exists"] else "(not made yet)"),
        ]
        for row in rows
    ]
    return table([*(["HOST"] if with_host else []), *WORKTREE_HEADER], body)
