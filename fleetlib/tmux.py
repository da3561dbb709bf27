"""tmux argv builders and output parsers for the fleet's private tmux server.

Every command addresses the fleet's own server through its socket (``-S``), never the
user's default server. Targets are exact (``=fleet:=a1``): a plain ``fleet:a1`` would
prefix-match window ``a10`` when ``a1`` is gone.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from fleetlib import capture
from fleetlib.observed import AgentPane
from fleetlib.pane import CHANNEL_FORMAT, DEATHS_OPTION, EXIT_OPTION, REASON_OPTION, STATE_OPTION, PaneSpec, pane_argv
from fleetlib.procs import MARKER_ENV

# What the fleet's watcher (fleetlib.watcher) records on each agent window: the agent's
# activity state (working, waiting, idle) and since when (epoch seconds).
ACTIVITY_OPTION: Final = "@fleet-activity"
ACTIVITY_SINCE_OPTION: Final = "@fleet-activity-since"
# What the activity was read from: hook, screen or output.
ACTIVITY_SOURCE_OPTION: Final = "@fleet-activity-source"
# A server option the watcher sets at the end of every tick that read hook records: when (epoch
# seconds) it began reading them. `status` decides itself from any hook event after that.
HOOKS_READ_OPTION: Final = "@fleet-watcher-hooks"
# A server option the watcher sets on every tick (epoch seconds), in the client that lists
# the windows: a record is only as fresh as the watcher that would correct it.
WATCHER_TICK_OPTION: Final = "@fleet-watcher-tick"
# When `fleet send` last delivered a message to the window's agent (epoch seconds, set in the
# client that pastes it): the agent counts as working until it is seen idle or waiting
# after that (see fleetlib.status.after_send).
SENT_AT_OPTION: Final = "@fleet-sent-at"

SESSION: Final = "fleet"
HOLDER_WINDOW: Final = "_holder"  # cannot collide: agent names start with [a-z0-9]
WINDOW_FIELDS: Final = (
    "#{window_name}",
    "#{pane_pid}",
    "#{pane_dead}",
    "#{pane_dead_status}",
    f"#{{{EXIT_OPTION}}}",
    f"#{{{STATE_OPTION}}}",
    f"#{{{DEATHS_OPTION}}}",
    "#{window_activity}",  # when the window last had output (epoch seconds; tmux keeps it always)
    f"#{{{ACTIVITY_OPTION}}}",
    f"#{{{ACTIVITY_SINCE_OPTION}}}",
    "#{pane_id}",
    capture.PIPED_FORMAT,  # "1" while the transcript's writer takes the pane's output
    f"#{{{REASON_OPTION}}}",
    f"#{{{ACTIVITY_SOURCE_OPTION}}}",
    f"#{{{SENT_AT_OPTION}}}",
    "#{pane_height} #{pane_width}",  # as `stty size` prints it (a restart in place passes it on)
)
WINDOW_FORMAT: Final = "\t".join(WINDOW_FIELDS)


def tmux_base(tmux: str, socket: Path) -> list[str]:
    return [tmux, "-S", str(socket)]


def session_target() -> str:
    return f"={SESSION}:"


def window_target(name: str) -> str:
    """Exact target of an agent's window: no prefix or pattern matching."""
    return f"={SESSION}:={name}"


def new_session_argv(tmux: str, socket: Path) -> list[str]:
    """Start the fleet's server with the holder session (systemd backend).

    Dead panes stay until replaced (for their output; the supervisor in each pane records
    why its agent exited, see :mod:`fleetlib.pane`), and a server-wide hook signals the
    agent's channel whenever its pane dies, however it died (even SIGKILL of the
    supervisor), so the unit's main process, waiting on that channel, ends with it."""
    on_death = f"run-shell -C {shlex.quote('wait-for -S ' + CHANNEL_FORMAT)}"
    return [
        *tmux_base(tmux, socket), "-f", "/dev/null", *new_session_commands(), ";", *keep_dead_panes_commands(), ";",
        "set-hook", "-g", "pane-died", on_death,
    ]  # fmt: skip


def new_session_commands() -> list[str]:
    """``new-session`` for the holder session, for use inside a longer command sequence."""
    return ["new-session", "-d", "-s", SESSION, "-n", HOLDER_WINDOW, "--", "sleep", "infinity"]


def keep_dead_panes_commands() -> list[str]:
    """Keep a window whose program exited (set server-wide *before* any window is created:
    a per-window setting after ``new-window`` can lose the race with a fast-exiting pane)."""
    return ["set-option", "-wg", "remain-on-exit", "on"]


def kill_server_argv(tmux: str, socket: Path) -> list[str]:
    return [*tmux_base(tmux, socket), "kill-server"]


def server_answers_argv(tmux: str, socket: Path) -> list[str]:
    """Succeeds exactly while the fleet's server runs its session (never starts a server)."""
    return [*tmux_base(tmux, socket), "has-session", "-t", f"={SESSION}"]


def literal(word: str) -> str:
    """Protect a word from tmux's argv parser, which takes a trailing ``;`` as a command
    separator (so ``";"`` or ``"a;"`` would be eaten); ``\\;`` is tmux's literal ``;``."""
    return word[:-1] + "\\;" if word.endswith(";") else word


def unliteral(word: str) -> str:
    """The word :func:`literal` was given (as tmux's parser reads it back)."""
    return word[:-2] + ";" if word.endswith("\\;") else word


def starts_option(name: str) -> str:
    """The server option counting how often the agent's window was created."""
    return f"@fleet-starts-{name}"


def window_exists_format(name: str) -> str:
    """A format that expands to non-empty text iff the session has a window called ``name``."""
    return f"#{{W:#{{?#{{==:#{{window_name}},{name}}},1,}}}}"


def agent_window_commands(spec: PaneSpec, argv: Sequence[str], *, env: Mapping[str, str], run_dir: Path) -> list[str]:
    """The tmux command sequence (no client prefix) that gives an agent a fresh window.

    A leftover window of the same name is killed first, so an agent never has two windows;
    a server option counts the starts (status reports restarts from it, at no extra
    process). The window runs the agent under its supervisor script
    (:func:`fleetlib.pane.pane_argv`), which gives the agent ``env``, its whole environment
    (:func:`fleetlib.pane.agent_environment`): a window's own variables depend on the client
    that creates it. The process marker in ``env`` also goes to the window with ``-e``
    (literally: tmux does not expand formats there), so the supervisor itself carries it
    for the stop sweeps. No ``-c``: tmux expands formats in it, so the supervisor enters
    the working directory itself.

    Right after ``new-window``, in the same sequence, ``pipe-pane`` appends everything
    the pane prints to the agent's transcript (:mod:`fleetlib.transcript`, in
    ``<home>/fleet/logs``, the run dir's sibling): tmux runs a sequence without reading
    any pane in between, so the transcript holds the pane's output from its first byte.
    """
    name = spec.name
    target = window_target(name)
    counter = starts_option(name)
    commands = ["if-shell", "-F", "-t", session_target(), window_exists_format(name), f"kill-window -t {target}", ";"]
    commands += ["set-option", "-g", "-F", counter, f"#{{e|+:#{{{counter}}},1}}", ";"]
    commands += ["new-window", "-d", "-t", session_target(), "-n", name]
    if MARKER_ENV in env:
        commands += ["-e", literal(f"{MARKER_ENV}={env[MARKER_ENV]}")]
    commands += ["--", *(literal(word) for word in pane_argv(spec, argv, run_dir, env)), ";"]
    log = capture.logs_in(run_dir.parent) / f"{name}{capture.SUFFIX}"
    return [*commands, *pipe_pane_commands(name, log)]


def pipe_pane_commands(name: str, log: Path) -> list[str]:
    """``pipe-pane -O``: append everything the agent's pane prints to ``log`` (replacing
    any pipe the pane had; see :func:`fleetlib.capture.pipe_shell_command`)."""
    return ["pipe-pane", "-O", "-t", window_target(name), literal(capture.pipe_shell_command(log))]


# The watcher's exit status once its home is gone (its server died, or its window closed):
# the window's loop then ends instead of starting it again.
WATCHER_DONE: Final = 3


def watcher_window_commands(name: str, argv: Sequence[str], *, env: Mapping[str, str]) -> list[str]:
    """A window of the holder session that runs ``argv`` (the fleet's watcher) and starts
    it again a second after it ends (tmux backend), unless it ended with
    :data:`WATCHER_DONE`. The loop ignores hang-ups, and so does the watcher until it sets
    its own handlers: when the server dies, the watcher outlives it to end what the
    server's agents left behind (:mod:`fleetlib.orphans`), then exits for good."""
    loop = f'trap "" HUP; while :; do "$@"; [ $? -eq {WATCHER_DONE} ] && exit; sleep 1; done'
    commands = ["new-window", "-d", "-t", session_target(), "-n", name]
    for key, value in env.items():
        commands += ["-e", literal(f"{key}={value}")]
    return [*commands, "--", "/bin/sh", "-c", loop, name, *(literal(word) for word in argv)]


def new_window_argv(
    tmux: str, socket: Path, spec: PaneSpec, argv: Sequence[str], *, env: Mapping[str, str], run_dir: Path
) -> list[str]:
    """One tmux client that replaces the agent's window and then waits until its pane
    dies (systemd backend: this client is the unit's main process)."""
    commands = agent_window_commands(spec, argv, env=env, run_dir=run_dir)
    # run-shell -C expands the channel in the new window's context and keeps this client
    # waiting until that wait ends.
    wait = ["run-shell", "-C", "-t", window_target(spec.name), f"wait-for {CHANNEL_FORMAT}"]
    return [*tmux_base(tmux, socket), *commands, ";", *wait]


def view_commands(name: str, view: str, *, read_only: bool) -> list[str]:
    """Attach through a private view: a session grouped with the fleet session, showing the
    agent's window, so a watcher never changes which window another client sees;
    ``read_only`` makes the client unable to type. The caller removes the view after the
    client detaches (``destroy-unattached`` on a grouped session crashed tmux 3.3a's
    server on detach, taking every agent with it)."""
    return [
        "new-session", "-d", "-t", f"={SESSION}", "-s", view, ";",
        "select-window", "-t", f"{view}:={name}", ";",
        "attach-session", *(["-r"] if read_only else []), "-t", view,
    ]  # fmt: skip


def kill_session_argv(tmux: str, socket: Path, session: str) -> list[str]:
    return [*tmux_base(tmux, socket), "kill-session", "-t", session]


def kill_window_argv(tmux: str, socket: Path, name: str) -> list[str]:
    return [*tmux_base(tmux, socket), "kill-window", "-t", window_target(name)]


def list_windows_commands() -> list[str]:
    """Every window of the fleet session, then the server options (the start counters)."""
    return ["list-windows", "-t", session_target(), "-F", WINDOW_FORMAT, ";", "show-options", "-g"]


def list_windows_argv(tmux: str, socket: Path) -> list[str]:
    return [*tmux_base(tmux, socket), *list_windows_commands()]


# Re-exported under the name the tmux layer has always used.
Window = AgentPane


def _int(text: str) -> int | None:
    return int(text) if text.lstrip("-").isdigit() and len(text) < 12 else None


def _float(text: str) -> float | None:
    """A finite number of seconds from untrusted option text; None otherwise."""
    try:
        value = float(text) if len(text) < 32 else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_windows(output: str) -> dict[str, Window]:
    """Parse :func:`list_windows_argv` output into name -> Window (with start counts)."""
    rows: list[list[str]] = []
    starts: dict[str, int] = {}
    tick: float | None = None
    hooks_read: float | None = None
    prefix = starts_option("")
    # The server options (start counts, the watcher's marks) come after the windows: read
    # them first, so each window is built once, complete (no dataclass copy per window).
    for line in output.splitlines():
        parts = line.split("\t")
        if len(parts) == len(WINDOW_FIELDS):
            rows.append(parts)
        elif line.startswith(prefix):
            option, _, value = line.partition(" ")
            if value.isdigit():
                starts[option[len(prefix) :]] = int(value)
        elif line.startswith(WATCHER_TICK_OPTION + " "):
            tick = _float(line.partition(" ")[2].strip('"'))
        elif line.startswith(HOOKS_READ_OPTION + " "):
            hooks_read = _float(line.partition(" ")[2].strip('"'))
    windows: dict[str, Window] = {}
    for (
        name,
        pid,
        dead,
        status,
        recorded,
        state,
        deaths,
        output_at,
        activity,
        since,
        pane,
        piped,
        reason,
        source,
        sent,
        size,
    ) in rows:
        last = _int(recorded)
        code = (_int(status) if status else last) if dead == "1" else None
        windows[name] = AgentPane(
            name, _int(pid), dead == "1", code, starts.get(name), state, _int(deaths) or 0, last,
            last_output=_int(output_at), activity=activity, activity_since=_float(since), pane_id=pane,
            piped=piped == "1", reason=reason, activity_source=source, sent_at=_float(sent),
            watcher_tick=tick, hooks_read=hooks_read, size=size,
        )  # fmt: skip
    return windows


def capture_screens_commands(targets: Sequence[str], token: str) -> list[str]:
    """One command sequence that prints the visible screen of every target, each preceded
    by a separator line ``<token> <index>``: one tmux client reads any number of screens
    (pane ids keep it short: about 40 bytes a pane). ``token`` must be unguessable (a
    screen could otherwise fake a separator)."""
    commands: list[str] = []
    for index, target in enumerate(targets):
        commands += ["display-message", "-p", f"{token} {index}", ";", "capture-pane", "-p", "-t", target, ";"]
    return commands[:-1]


def parse_screens(output: str, token: str, count: int) -> list[str | None]:
    """Split :func:`capture_screens_commands` output: one screen per target, None for a
    target tmux printed nothing for (it was gone)."""
    screens: list[str | None] = [None] * count
    current: int | None = None
    lines: list[str] = []
    for line in [*output.split("\n"), f"{token} {count}"]:
        head, _, index = line.partition(" ")
        if head == token and index.isdigit():
            if current is not None and current < count:
                screens[current] = "\n".join(lines)
            current, lines = int(index), []
        elif current is not None:
            lines.append(line)
    return screens
