"""tmux argv builders and output parsers for the fleet's private tmux server.

Every command addresses the fleet's own server through its socket (``-S``), never the
user's default server. Targets are exact (``=fleet:=a1``): a plain ``fleet:a1`` would
prefix-match window ``a10`` when ``a1`` is gone.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

SESSION: Final = "fleet"
HOLDER_WINDOW: Final = "_holder"  # cannot collide: agent names start with [a-z0-9]
EXIT_OPTION: Final = "@fleet-exit"
WINDOW_FORMAT: Final = f"#{{window_name}}\t#{{pane_pid}}\t#{{pane_dead}}\t#{{pane_dead_status}}\t#{{{EXIT_OPTION}}}"


def tmux_base(tmux: str, socket: Path) -> list[str]:
    return [tmux, "-S", str(socket)]


def session_target() -> str:
    return f"={SESSION}:"


def window_target(name: str) -> str:
    """Exact target of an agent's window: no prefix or pattern matching."""
    return f"={SESSION}:={name}"


def channel(name: str) -> str:
    """The ``wait-for`` channel signalled when the agent exits (systemd backend)."""
    return f"fleet-agent-{name}"


def new_session_argv(tmux: str, socket: Path) -> list[str]:
    """Start the holder's server (systemd backend): the holder session, whose first window
    runs no login shell, and a server-wide hook that signals an agent's channel and closes
    its window when the agent exits, so the pane runs the agent itself (no wrapper)."""
    on_death = f"run-shell -C {shlex.quote('wait-for -S ' + channel('#{window_name}'))} ; kill-window"
    return [
        *tmux_base(tmux, socket),
        "-f",
        "/dev/null",
        *new_session_commands(),
        ";",
        *keep_dead_panes_commands(),
        ";",
        "set-hook",
        "-g",
        "pane-died",
        on_death,
    ]


def new_session_commands() -> list[str]:
    """``new-session`` for the holder session, for use inside a longer command sequence."""
    return ["new-session", "-d", "-s", SESSION, "-n", HOLDER_WINDOW, "--", "sleep", "infinity"]


def keep_dead_panes_commands() -> list[str]:
    """Keep a window whose program exited (set server-wide *before* any window is created:
    a per-window setting after ``new-window`` can lose the race with a fast-exiting pane)."""
    return ["set-option", "-wg", "remain-on-exit", "on"]


def kill_server_argv(tmux: str, socket: Path) -> list[str]:
    return [*tmux_base(tmux, socket), "kill-server"]


# On the tmux backend the pane runs the agent under a tiny sh wrapper that records the exit
# status in a window option when the agent exits: tmux's own pane_dead_status is sometimes
# never filled in for a fast-exiting pane. (The systemd backend needs no status and uses
# the holder's pane-died hook instead, so its panes run the agent itself.)
_PANE_SCRIPT: Final = '"$@"; status=$?; {tmux} -S {socket} {command}; exit $status'


def literal(word: str) -> str:
    """Protect a word from tmux's argv parser, which takes a trailing ``;`` as a command
    separator (so ``";"`` or ``"a;"`` would be eaten); ``\\;`` is tmux's literal ``;``."""
    return word[:-1] + "\\;" if word.endswith(";") else word


def starts_option(name: str) -> str:
    """The server option counting how often the agent's window was created."""
    return f"@fleet-starts-{name}"


def window_exists_format(name: str) -> str:
    """A format that expands to non-empty text iff the session has a window called ``name``."""
    return f"#{{W:#{{?#{{==:#{{window_name}},{name}}},1,}}}}"


def agent_window_commands(
    name: str,
    argv: Sequence[str],
    *,
    cwd: str | None,
    env: Mapping[str, str],
    tmux: str,
    socket: Path,
    on_exit: Sequence[str] | None,
) -> list[str]:
    """The tmux command sequence (no client prefix) that gives an agent a fresh window.

    A leftover window of the same name is killed first, so an agent never has two windows;
    a server option counts the starts (status reports restarts from it, at no extra
    process). With ``on_exit``, the pane runs ``argv`` under a wrapper that runs that tmux
    command when the agent exits (:func:`record_exit`); without, the pane runs ``argv``
    itself (the systemd holder's ``pane-died`` hook handles the exit).
    """
    target = window_target(name)
    counter = starts_option(name)
    commands = ["if-shell", "-F", "-t", session_target(), window_exists_format(name), f"kill-window -t {target}", ";"]
    commands += ["set-option", "-g", "-F", counter, f"#{{e|+:#{{{counter}}},1}}", ";"]
    commands += ["new-window", "-d", "-t", session_target(), "-n", name]
    if cwd:
        commands += ["-c", literal(cwd)]
    for key, value in env.items():
        commands += ["-e", literal(f"{key}={value}")]
    words = [literal(word) for word in argv]
    if on_exit is None:
        return [*commands, "--", *words]
    script = _PANE_SCRIPT.format(tmux=shlex.quote(tmux), socket=shlex.quote(str(socket)), command=_sh_words(on_exit))
    return [*commands, "--", "/bin/sh", "-c", script, channel(name), *words]


EXIT_STATUS: Final = "$status"  # in an on_exit command: the agent's exit status


def _sh_words(words: Sequence[str]) -> str:
    """Shell-quote words for the pane script, leaving :data:`EXIT_STATUS` to expand."""
    return " ".join('"$status"' if word == EXIT_STATUS else shlex.quote(word) for word in words)


def record_exit(name: str) -> list[str]:
    """On exit, keep the status in the window's ``@fleet-exit`` option (read by status)."""
    return ["set-option", "-w", "-t", window_target(name), EXIT_OPTION, EXIT_STATUS]


def new_window_argv(
    tmux: str, socket: Path, name: str, argv: Sequence[str], *, cwd: str | None, env: Mapping[str, str]
) -> list[str]:
    """One tmux client that replaces the agent's window (systemd backend: exit is signalled)."""
    commands = agent_window_commands(name, argv, cwd=cwd, env=env, tmux=tmux, socket=socket, on_exit=None)
    return [*tmux_base(tmux, socket), *commands]


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


def wait_for_argv(tmux: str, socket: Path, name: str) -> list[str]:
    return [*tmux_base(tmux, socket), "wait-for", channel(name)]


def list_windows_argv(tmux: str, socket: Path) -> list[str]:
    """Every window of the fleet session, then the server options (the start counters)."""
    listing = ["list-windows", "-t", session_target(), "-F", WINDOW_FORMAT]
    return [*tmux_base(tmux, socket), *listing, ";", "show-options", "-g"]


@dataclass(frozen=True)
class Window:
    name: str
    pane_pid: int | None
    dead: bool
    dead_status: int | None = None
    starts: int | None = None

    @property
    def live_pid(self) -> int | None:
        """The pane's process while it runs; None once it has exited."""
        return None if self.dead else self.pane_pid


def parse_windows(output: str) -> dict[str, Window]:
    """Parse :func:`list_windows_argv` output into name -> Window (with start counts)."""
    windows: dict[str, Window] = {}
    starts: dict[str, int] = {}
    prefix = starts_option("")
    for line in output.splitlines():
        parts = line.split("\t")
        if len(parts) == 5:
            name, pid, dead, status, recorded = parts
            status = status or recorded
            code = int(status) if dead == "1" and status.lstrip("-").isdigit() else None
            windows[name] = Window(name, int(pid) if pid.isdigit() else None, dead == "1", code)
        elif line.startswith(prefix):
            option, _, value = line.partition(" ")
            if value.isdigit():
                starts[option[len(prefix) :]] = int(value)
    return {name: Window(w.name, w.pane_pid, w.dead, w.dead_status, starts.get(name)) for name, w in windows.items()}
