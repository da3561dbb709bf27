"""The agent's pane supervisor: the one small shell script every agent window runs.

Both backends run an agent the same way: its tmux window runs
``/bin/sh <run dir>/supervise.sh <parameters> -- <agent argv>``. The script is the same
for every agent (:data:`SCRIPT`, written into the run dir by :func:`install_script`), so a
window's command stays short (tmux refuses a client command over 16 KiB, and one client
creates many windows). It is POSIX ``sh`` with builtins only on the happy path but for
the header's ``date``, so starting an agent costs one short-lived process beyond ``sh``
itself, and it does, in order:

1. *(systemd backend only)* moves itself into the agent unit's cgroup, so every process
   the agent starts is the unit's: ``systemctl stop`` then reaches background, ``setsid``
   and signal-ignoring children (TERM, then KILL after the agent's ``stop_timeout``).
   It writes its pid to ``<mount><holder's parent cgroup>/<agent unit>/cgroup.procs`` on
   each cgroup mount the install found; where that is not permitted, the agent stays in
   the holder's cgroup and the engine's marker sweep is what stops it;
2. enters the agent's working directory, literally (no tmux format expansion, no fall
   back to another directory: a missing directory fails the agent with status 126);
3. runs the agent; a command that cannot be found fails at once with status 127 and
   ``fleet: <cmd>: command not found`` on the pane. Each run (generation) starts with
   one header line on the pane, :data:`fleetlib.transcript.HEADER_PRINTF` (UTC time,
   the agent's own pid, the pane's size, the command), printed by a ``sh`` that then becomes
   the agent (``exec``, so the pid is the agent's); the time and size cost one ``date`` and
   one ``stty`` per run (the size lets ``fleet logs`` render the run on a screen like the pane's). Right before that
   ``exec`` the same ``sh`` writes ``<supervisor pid> <agent pid>`` into
   ``<run dir>/<agent>.exec`` (a builtin ``echo``, no process): the engine's start grace
   counts from the moment the agent itself runs (see :func:`exec_record`), however long
   the supervisor took to get there;
4. paces restarts: an agent that exits is started again after 1 s, then 2, 4, ... up to
   30 s; after ``max_failures`` exits within ``failure_window`` seconds (or at once for
   status 126/127) it gives up and stays ``failed`` until someone starts it again;
5. records every exit in window options (``@fleet-exit`` status, ``@fleet-deaths`` count,
   ``@fleet-state`` ``restarting``/``running``/``failed``), one tmux client per exit only.
   (Under systemd the supervisor ends its unit's wait as it exits, and the holder's
   ``pane-died`` hook when it was killed outright, so the unit is active exactly while the
   supervisor runs.)

A TERM or INT (a stop) is never answered with a restart: the script exits when its agent
does. A hang-up (HUP: its window closed, or the whole tmux server gone, killed or out of
memory) ends it at once, with no trap to wait for its agent: the pane's session then ends,
and the kernel hangs up the agent's process group, so an agent that does not ignore it
never outlives its window (what ignores it is ended by the fleet's marker sweeps: the
engine's stop and start, and on the tmux backend the watcher, see :mod:`fleetlib.orphans`).
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fleetlib.atomic import atomic_write_text
from fleetlib.procs import MARKER_ENV
from fleetlib.rundir import SAFE_OPEN_FLAGS
from fleetlib.transcript import HEADER_PRINTF

MAX_BACKOFF_S: Final = 30
EXIT_OPTION: Final = "@fleet-exit"
STATE_OPTION: Final = "@fleet-state"
DEATHS_OPTION: Final = "@fleet-deaths"
CWD_FAILED: Final = 126
NOT_FOUND: Final = 127
# The ``wait-for`` channel of an agent's window (systemd backend), as a format expanded in
# the window's context: window ids are never reused by a server, so a late signal from a
# previous generation's pane can never end the current generation's wait.
CHANNEL_FORMAT: Final = "fleet-agent-#{window_id}"


@dataclass(frozen=True)
class PaneSpec:
    """Everything the supervisor needs to know about one agent (all passed literally)."""

    name: str
    target: str  # the window's exact tmux target
    tmux: str
    socket: str
    cwd: str
    max_failures: int
    failure_window: float
    cgroup_mounts: tuple[str, ...] = ()  # systemd backend: where to join the unit's cgroup
    unit: str | None = None  # systemd backend: the agent's unit name


SCRIPT_NAME: Final = "supervise.sh"
EXEC_SUFFIX: Final = ".exec"  # <run dir>/<agent>.exec: "<supervisor pid> <agent pid>" of its current run
_EXEC_RECORD_CAP: Final = 64
_PID_LIMIT: Final = 1 << 22  # the kernel's PID_MAX_LIMIT on 64-bit

# $1 name, $2 window target, $3 tmux, $4 socket, $5 cwd, $6 max failures, $7 window (s),
# $8 unit ("" outside systemd), $9 cgroup mounts separated by ":", then "--" and the argv.
SCRIPT: Final = f"""\
# fleet agent supervisor (generated; see fleetlib/pane.py). Usage:
#   sh supervise.sh NAME TARGET TMUX SOCKET CWD MAX_FAILURES WINDOW UNIT MOUNTS -- ARGV...
name=$1 target=$2 tmux=$3 socket=$4 dir=$5 max=$6 window=$7 unit=$8 mounts=$9
shift 9; [ "$1" = -- ] && shift
opts() {{ "$tmux" -S "$socket" set-option -w -t "$target" {EXIT_OPTION} "$1" \\; \\
  set-option -w -t "$target" {STATE_OPTION} "$2" \\; set-option -w -t "$target" {DEATHS_OPTION} "$deaths" \\
  >/dev/null 2>&1; }}
giveup() {{ opts "$1" failed; exit "$1"; }}
deaths=0 record=${{0%/*}}/$name{EXEC_SUFFIX}
trap 'stop=1' TERM INT
# Under systemd the unit waits on its window's channel. tmux 3.3a can leave an exited pane
# process an unreaped zombie and fire pane-died (which signals the channel) only at its next
# SIGCHLD, so the supervisor signals it itself as it exits, on the server that made its pane
# only ($TMUX: socket,pid,session); the hook remains for a supervisor killed outright.
spid=${{TMUX%,*}}; spid=${{spid##*,}}
ended() {{ "$tmux" -S "$socket" if-shell -F -t "$TMUX_PANE" "#{{==:#{{pid}},$spid}}" \\
  "run-shell -C -t $TMUX_PANE 'wait-for -S {CHANNEL_FORMAT}'" >/dev/null 2>&1; }}
if [ -n "$unit" ] && [ -n "$TMUX_PANE" ] && [ -n "$spid" ]; then trap ended EXIT; fi
if [ -n "$unit" ]; then
  cg=
  {{ while IFS= read -r l; do case $l in 0::*) cg=${{l#0::}};; esac; done </proc/self/cgroup; }} 2>/dev/null
  if [ -n "$cg" ]; then
    IFS=:; for m in $mounts; do echo $$ >"$m${{cg%/*}}/$unit/cgroup.procs"; done 2>/dev/null; unset IFS
  fi
fi
if ! cd -- "$dir" 2>/dev/null; then
  printf 'fleet: agent %s: cannot enter working directory %s (missing or not a directory)\\n' "$name" "$dir" >&2
  deaths=1; giveup {CWD_FAILED}
fi
fails=; delay=1
while [ -z "$stop" ]; do
  if command -v "$1" >/dev/null 2>&1; then
    /bin/sh -c 'r=$1; shift; s=$(stty size 2>/dev/null); printf "{HEADER_PRINTF}" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \\
      "$$" "${{s#* }}x${{s% *}}" "$*"
      {{ echo "$PPID $$" >"$r"; }} 2>/dev/null; exec "$@"' sh "$record" "$@"; status=$?
  else echo "fleet: $1: command not found" >&2; status={NOT_FOUND}; fi
  [ -n "$stop" ] && exit "$status"
  deaths=$((deaths + 1)); now=0
  {{ read -r now _ </proc/uptime; }} 2>/dev/null; now=${{now%.*}}
  kept=; n=1
  for f in $fails; do if [ $((now - f)) -lt "$window" ]; then kept="$kept $f"; n=$((n + 1)); fi; done
  fails="$kept $now"
  if [ "$status" -eq {CWD_FAILED} ] || [ "$status" -eq {NOT_FOUND} ] || [ "$n" -ge "$max" ]; then
    printf 'fleet: agent %s exited with status %s; %s exit(s) in %ss: giving up\\n' "$name" "$status" "$n" "$window" >&2
    giveup "$status"
  fi
  printf 'fleet: agent %s exited with status %s; restarting in %ss (exit %s of %s allowed in %ss)\\n' \\
    "$name" "$status" "$delay" "$n" "$max" "$window" >&2
  opts "$status" restarting
  sleep "$delay"
  delay=$((delay * 2)); [ "$delay" -gt {MAX_BACKOFF_S} ] && delay={MAX_BACKOFF_S}
  [ -n "$stop" ] && exit "$status"
  "$tmux" -S "$socket" set-option -w -t "$target" {STATE_OPTION} running >/dev/null 2>&1
done
"""


def script_path(run_dir: Path) -> Path:
    return run_dir / SCRIPT_NAME


def exec_record_path(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}{EXEC_SUFFIX}"


def exec_record(run_dir: Path, name: str) -> tuple[int, int] | None:
    """``(supervisor pid, agent pid)`` the supervisor of agent ``name`` wrote right before it
    exec'd the agent's latest run; None when there is no such record or it is not what the
    supervisor writes. The file is untrusted input: read capped, never through a symlink,
    pids range-checked. Callers match the supervisor pid against the window's pane pid, so
    a record left by an earlier window never counts for a new one."""
    # Read on every poll of a start's wait, for every agent: one open, no lstat first (the
    # flags refuse a symlink and never block; fstat refuses anything but a regular file).
    try:
        fd = os.open(exec_record_path(run_dir, name), os.O_RDONLY | SAFE_OPEN_FLAGS)
    except OSError:
        return None
    try:
        raw = os.read(fd, _EXEC_RECORD_CAP) if stat.S_ISREG(os.fstat(fd).st_mode) else b""
    except OSError:
        return None
    finally:
        os.close(fd)
    words = raw.split()
    if len(words) != 2 or not all(word.isdigit() and 0 < int(word) <= _PID_LIMIT for word in words):
        return None
    return int(words[0]), int(words[1])


def install_script(run_dir: Path) -> bool:
    """Write :data:`SCRIPT` into the (private) run dir unless it is already there, exactly;
    atomic, so a pane starting meanwhile reads the old or the new script, never a mix.
    Returns whether it wrote."""
    path = script_path(run_dir)
    try:
        if path.read_text(encoding="utf-8") == SCRIPT:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    atomic_write_text(path, SCRIPT, mode=0o600)
    return True


def pane_argv(spec: PaneSpec, argv: Sequence[str], run_dir: Path) -> list[str]:
    """What the window runs: the supervisor script with its parameters, then the argv."""
    window = max(1, math.ceil(spec.failure_window))
    return [
        "/bin/sh", str(script_path(run_dir)), spec.name, spec.target, spec.tmux, spec.socket, spec.cwd,
        str(spec.max_failures), str(window), spec.unit or "", ":".join(spec.cgroup_mounts), "--", *argv,
    ]  # fmt: skip


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
