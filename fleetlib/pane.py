"""The agent's pane supervisor: the one small shell script every agent window runs.

Both backends run an agent the same way: its tmux window runs ``/bin/sh -c SCRIPT`` with
the agent's argv as arguments. The script (POSIX ``sh``, builtins only on the happy path,
so starting an agent costs no process beyond ``sh`` itself) does, in order:

1. *(systemd backend only)* moves itself into the agent unit's cgroup, so every process
   the agent starts is the unit's: ``systemctl stop`` then reaches background, ``setsid``
   and signal-ignoring children (TERM, then KILL after the agent's ``stop_timeout``).
   It writes its pid to ``<mount><holder's parent cgroup>/<agent unit>/cgroup.procs`` on
   each cgroup mount the install found; where that is not permitted, the agent stays in
   the holder's cgroup and the engine's marker sweep is what stops it;
2. enters the agent's working directory, literally (no tmux format expansion, no fall
   back to another directory: a missing directory fails the agent with status 126);
3. runs the agent; a command that cannot be found fails at once with status 127 and
   ``fleet: <cmd>: command not found`` on the pane;
4. paces restarts: an agent that exits is started again after 1 s, then 2, 4, ... up to
   30 s; after ``max_failures`` exits within ``failure_window`` seconds (or at once for
   status 126/127) it gives up and stays ``failed`` until someone starts it again;
5. records every exit in window options (``@fleet-exit`` status, ``@fleet-deaths`` count,
   ``@fleet-state`` ``restarting``/``running``/``failed``), one tmux client per exit only,
   and on giving up signals ``channel`` (systemd backend: the unit's main process waits
   on it, so the unit is active exactly while the supervisor runs).

A TERM, HUP or INT (a stop) is never answered with a restart: the script exits when its
agent does.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from fleetlib.procs import MARKER_ENV

MAX_BACKOFF_S: Final = 30
EXIT_OPTION: Final = "@fleet-exit"
STATE_OPTION: Final = "@fleet-state"
DEATHS_OPTION: Final = "@fleet-deaths"
CWD_FAILED: Final = 126
NOT_FOUND: Final = 127


@dataclass(frozen=True)
class PaneSpec:
    """Everything the supervisor script needs to know about one agent (all literal)."""

    name: str
    target: str  # the window's exact tmux target
    tmux: str
    socket: str
    cwd: str
    max_failures: int
    failure_window: float
    channel: str | None = None  # systemd backend: signalled when the supervisor gives up
    cgroup_mounts: tuple[str, ...] = ()  # systemd backend: where to join the unit's cgroup
    unit: str | None = None  # systemd backend: the agent's unit name


def _q(word: str) -> str:
    return shlex.quote(word)


def script(spec: PaneSpec) -> str:
    """The supervisor script for one agent (see the module docstring)."""
    tmux = f"{_q(spec.tmux)} -S {_q(spec.socket)}"
    target = _q(spec.target)

    def options(state: str) -> str:
        return (
            f'set-option -w -t {target} {EXIT_OPTION} "$1" \\; set-option -w -t {target} {STATE_OPTION} {state} '
            f'\\; set-option -w -t {target} {DEATHS_OPTION} "$deaths"'
        )

    signal = f" \\; wait-for -S {_q(spec.channel)}" if spec.channel else ""
    lines = [
        f"rec() {{ {tmux} {options('restarting')} >/dev/null 2>&1; }}",
        f'giveup() {{ {tmux} {options("failed")}{signal} >/dev/null 2>&1; exit "$1"; }}',
        "deaths=0",
        "trap 'stop=1' HUP TERM INT",
    ]
    if spec.cgroup_mounts and spec.unit:
        mounts = " ".join(_q(m) for m in spec.cgroup_mounts)
        lines += [
            "cg=",
            "{ while IFS= read -r l; do case $l in 0::*) cg=${l#0::};; esac; done </proc/self/cgroup; } 2>/dev/null",
            f'[ -n "$cg" ] && for m in {mounts}; do echo $$ >"$m${{cg%/*}}/{spec.unit}/cgroup.procs"; done 2>/dev/null',
        ]
    window = max(1, math.ceil(spec.failure_window))
    lines += [
        f"cd -- {_q(spec.cwd)} 2>/dev/null || {{ printf 'fleet: agent %s: cannot enter working directory %s"
        f" (missing or not a directory)\\n' {_q(spec.name)} {_q(spec.cwd)} >&2; deaths=1; giveup {CWD_FAILED}; }}",
        "fails=; delay=1",
        'while [ -z "$stop" ]; do',
        '  if command -v "$1" >/dev/null 2>&1; then "$@"; status=$?',
        f'  else echo "fleet: $1: command not found" >&2; status={NOT_FOUND}; fi',
        '  [ -n "$stop" ] && exit "$status"',
        "  deaths=$((deaths + 1)); now=0",
        "  { read -r now _ </proc/uptime; } 2>/dev/null; now=${now%.*}",
        "  kept=; n=1",
        f'  for f in $fails; do if [ $((now - f)) -lt {window} ]; then kept="$kept $f"; n=$((n + 1)); fi; done',
        '  fails="$kept $now"',
        f'  if [ "$status" -eq {CWD_FAILED} ] || [ "$status" -eq {NOT_FOUND} ] ||'
        f' [ "$n" -ge {spec.max_failures} ]; then',
        f"    printf 'fleet: agent %s exited with status %s; %s exit(s) in {window}s: giving up\\n' "
        f'{_q(spec.name)} "$status" "$n" >&2',
        '    giveup "$status"',
        "  fi",
        f"  printf 'fleet: agent %s exited with status %s; restarting in %ss (exit %s of {spec.max_failures}"
        f' allowed in {window}s)\\n\' {_q(spec.name)} "$status" "$delay" "$n" >&2',
        '  rec "$status"',
        '  sleep "$delay"',
        f'  delay=$((delay * 2)); [ "$delay" -gt {MAX_BACKOFF_S} ] && delay={MAX_BACKOFF_S}',
        '  [ -n "$stop" ] && exit "$status"',
        f"  {tmux} set-option -w -t {target} {STATE_OPTION} running >/dev/null 2>&1",
        "done",
    ]
    return "\n".join(lines)


def pane_argv(spec: PaneSpec, argv: Sequence[str]) -> list[str]:
    """What the window runs: ``/bin/sh -c SCRIPT <$0> <agent argv...>``."""
    return ["/bin/sh", "-c", script(spec), f"fleet-agent-{spec.name}", *argv]


# The variables an agent gets from the fleet, on both backends, before the roster's `env`
# (which wins): taken from the environment of `fleet install` (systemd) or of the command
# that starts the tmux server (tmux backend). tmux adds TERM, TMUX and TMUX_PANE.
BASE_VARIABLES: Final = ("HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "TZ", "PATH", "XDG_RUNTIME_DIR")
DEFAULT_PATH: Final = "/usr/local/bin:/usr/bin:/bin"


def base_environment(environ: Mapping[str, str], home: str) -> dict[str, str]:
    """The base environment of every agent (see :data:`BASE_VARIABLES`)."""
    base = {key: environ[key] for key in BASE_VARIABLES if environ.get(key)}
    base.setdefault("HOME", home)
    base.setdefault("PATH", DEFAULT_PATH)
    return base


def agent_environment(marker: str, env: Mapping[str, str]) -> dict[str, str]:
    """What a window adds to the base: the roster's ``env`` and the process marker (last,
    so a roster cannot hide an agent's processes from the stop sweep)."""
    return {**env, MARKER_ENV: marker}
