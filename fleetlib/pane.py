"""The agent's pane supervisor: the one small shell script every agent window runs.

Both backends run an agent the same way: its tmux window runs
``/bin/sh <run dir>/supervise.sh <parameters> -- <agent argv>``. The script is the same
for every agent (:data:`SCRIPT`, written into the run dir by :func:`install_script`), so a
window's command stays short (tmux refuses a client command over 16 KiB, and one client
creates many windows). It is POSIX ``sh`` with builtins only on the happy path but for
the header's ``stty``, so starting an agent costs the supervisor's ``sh``, one fork (the
subshell that becomes the agent) and one short-lived process; it does, in order:

1. *(systemd backend only)* moves itself into the agent unit's cgroup, so every process
   the agent starts is the unit's: ``systemctl stop`` then reaches background, ``setsid``
   and signal-ignoring children (TERM, then KILL after the agent's ``stop_timeout``).
   It writes its pid to ``<mount><holder's parent cgroup>/<agent unit>/cgroup.procs`` on
   each cgroup mount the install found; where that is not permitted, the agent stays in
   the holder's cgroup and the engine's marker sweep is what stops it;
2. enters the agent's working directory, literally (no tmux format expansion, no fall
   back to another directory: a missing directory fails the agent with status 126);
3. runs the agent in the environment the fleet decided (:func:`agent_environment`), passed
   as ``KEY=VALUE`` parameters, not in the window's: tmux gives a new window the ``PATH``
   of the client that created it (over ``new-window -e``; under systemd that client runs
   in the manager's environment) and ``SHELL`` from its ``default-shell``. The supervisor
   looks the command up on the given ``PATH`` (its own helpers, ``stty`` and ``sleep``,
   keep the window's, which always finds them), and the subshell that becomes the agent
   clears the base variables (and the ``OLDPWD`` its ``cd`` left) and exports the given
   ones right before its ``exec`` (so a roster's ``IFS`` never reaches the supervisor's
   own code). A command that cannot be found fails at once with status 127 and
   ``fleet: <cmd>: command not found`` on the pane. Each run (generation) starts with one
   header line on the pane, :data:`fleetlib.capture.HEADER_PRINTF` (UTC time, the
   agent's own pid, the pane's size, the command), printed by a subshell of the supervisor
   that then becomes the agent (``exec``, so the pid is the agent's; a fork, no new ``sh``
   to load). The size costs one ``stty`` per run (it lets ``fleet logs`` render the run on
   a screen like the pane's); the time none: builtins add the kernel's boot time to the
   uptime (to the second, give or take one; at 200 agents a ``date`` per start was 200
   processes more per fleet restart). Right
   before that ``exec`` the same subshell writes ``<supervisor pid> <agent pid>`` into
   ``<run dir>/<agent>.exec`` (a builtin ``echo``, no process): the engine's start grace
   counts from the moment the agent itself runs (see :func:`exec_record`), however long
   the supervisor took to get there;
   An agent that resumes its conversation (roster ``resume``) has a marker word in its
   argv that each run replaces by that run's resume words, from the session id kept in
   the run dir (see :mod:`fleetlib.sessions`; a Claude agent's first run pins a new id,
   one ``mv`` to record it); a resumed run that fails at once is run again at once,
   once, as a new conversation;
4. paces restarts: an agent that exits is started again after 1 s, then 2, 4, ... up to
   30 s; after ``max_failures`` exits within ``failure_window`` seconds (or at once for
   status 126/127) it gives up and stays ``failed`` until someone starts it again;
5. records every exit in window options (``@fleet-exit`` status, ``@fleet-deaths`` count,
   ``@fleet-state`` ``restarting``/``running``/``failed``, ``@fleet-reason``: ``out of
   memory (memory_max 4G)`` when the kernel's count of out-of-memory kills in its memory
   cgroup grew during the run), one tmux client per exit only; the same reason ends the
   run's footer line (``fleet: agent a exited with status 137: out of memory ...``).
   (Under systemd the supervisor ends its unit's wait as it exits, and the holder's
   ``pane-died`` hook when it was killed outright, so the unit is active exactly while the
   supervisor runs.)
6. runs its agent anew when a restart in place ended the run (see :mod:`fleetlib.gate`):
   told by ``USR1`` before the engine ends it, it waits at the agent's gate until nothing
   of that run is left, then starts the next run at once, with no pacing and no exit
   counted (the window, the unit and the transcript pipe stay).

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
from typing import Final, NamedTuple

from fleetlib.atomic import atomic_write_text
from fleetlib.capture import HEADER_PRINTF
from fleetlib.procs import MARKER_ENV
from fleetlib.rundir import SAFE_OPEN_FLAGS
from fleetlib.sessions import NOTE_SUFFIX, RESUME_MARKER, RESUME_QUICK_S, SESSION_SUFFIX

MAX_BACKOFF_S: Final = 30
EXIT_OPTION: Final = "@fleet-exit"
STATE_OPTION: Final = "@fleet-state"
DEATHS_OPTION: Final = "@fleet-deaths"
REASON_OPTION: Final = "@fleet-reason"  # why the last run ended, where the fleet knows ("" otherwise)
OOM: Final = "out of memory"
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
    # tmux backend with limits: the words that run the supervisor in a transient scope
    # (``systemd-run --user --scope ... --``); the pane process is still the supervisor.
    launcher: tuple[str, ...] = ()


SCRIPT_NAME: Final = "supervise.sh"
GATE_SUFFIX: Final = ".gate"  # <run dir>/<agent>.gate: where it waits during a restart in place (fleetlib.gate)
EXEC_SUFFIX: Final = ".exec"  # <run dir>/<agent>.exec: "<supervisor pid> <agent pid>" of its current run
_EXEC_RECORD_CAP: Final = 64
_PID_LIMIT: Final = 1 << 22  # the kernel's PID_MAX_LIMIT on 64-bit

# The variables an agent gets from the fleet, on both backends, before the roster's `env`
# (which wins): taken from the environment of `fleet install` (systemd) or of the `fleet`
# command that starts the agent (tmux backend). tmux adds TERM, TERM_PROGRAM(_VERSION),
# TMUX and TMUX_PANE, and the shell PWD.
BASE_VARIABLES: Final = ("HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "TZ", "PATH", "XDG_RUNTIME_DIR")
DEFAULT_PATH: Final = "/usr/local/bin:/usr/bin:/bin"

# $1 name, $2 window target, $3 tmux, $4 socket, $5 cwd, $6 max failures, $7 window (s),
# $8 unit ("" outside systemd), $9 cgroup mounts separated by ":", then the agent's
# environment as KEY=VALUE words (none: the agent keeps the window's), "--" and the argv.
SCRIPT: Final = f"""\
# fleet agent supervisor (generated; see fleetlib/pane.py). Usage:
#   sh supervise.sh NAME TARGET TMUX SOCKET CWD MAX_FAILURES WINDOW UNIT MOUNTS [KEY=VALUE...] -- ARGV...
name=$1 target=$2 tmux=$3 socket=$4 dir=$5 max=$6 window=$7 unit=$8 mounts=$9
shift 9
# "$@" stays KEY=VALUE... -- ARGV for the sh that becomes the agent; here: the agent's PATH
# (its command is looked up there; the supervisor's own stty and sleep keep the window's),
# its HOME and CLAUDE_CONFIG_DIR (where Claude keeps the conversations a resume looks for),
# its command and its command line (for the header).
cmd= line= past= path=$PATH home=$HOME claude_dir=${{CLAUDE_CONFIG_DIR:-}}
for a do
  case $past in
    2) line="$line $a";;
    1) cmd=$a line=$a past=2;;
    *) case $a in --) past=1;; PATH=*) path=${{a#PATH=}};; HOME=*) home=${{a#HOME=}};;
         CLAUDE_CONFIG_DIR=*) claude_dir=${{a#CLAUDE_CONFIG_DIR=}};; esac;;
  esac
done
opts() {{ "$tmux" -S "$socket" set-option -w -t "$target" {EXIT_OPTION} "$1" \\; \\
  set-option -w -t "$target" {STATE_OPTION} "$2" \\; set-option -w -t "$target" {DEATHS_OPTION} "$deaths" \\; \\
  set-option -w -t "$target" {REASON_OPTION} "$why" >/dev/null 2>&1; }}
giveup() {{ opts "$1" failed; exit "$1"; }}
deaths=0 why= record=${{0%/*}}/$name{EXEC_SUFFIX} gate=${{0%/*}}/$name{GATE_SUFFIX} size=
trap 'stop=1' TERM INT
# A restart in place (fleetlib/gate.py): USR1 says the agent's next end is the engine's doing;
# the supervisor then waits at the gate until nothing of that run is left, and runs it anew.
trap 'again=1' USR1
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
# Out-of-memory kills: the kernel counts them per memory cgroup (memory.events on cgroup2,
# memory.oom_control on v1); a run that ends with more of them than it started with was
# killed for memory, and the limit in force is named. Builtins only.
ev= lim= g= v=
{{ while IFS=: read -r _ c p; do case ,$c, in ,,) g=$p;; *,memory,*) v=$p;; esac; done
}} </proc/self/cgroup 2>/dev/null
IFS=:; for m in $mounts; do
  if [ -n "$g" ] && [ -r "$m$g/memory.events" ]; then ev=$m$g/memory.events lim=$m$g/memory.max; fi
  if [ -n "$v" ] && [ -r "$m$v/memory.oom_control" ]; then ev=$m$v/memory.oom_control lim=$m$v/memory.limit_in_bytes; fi
done; unset IFS
ooms() {{ o=0; [ -n "$ev" ] && {{ while read -r k x; do [ "$k" = oom_kill ] && o=$x; done <"$ev"; }} 2>/dev/null; }}
limit() {{ b=; s=; {{ read -r b <"$lim"; }} 2>/dev/null
  case $b in ''|*[!0-9]*) return;; esac; [ ${{#b}} -gt 18 ] && return  # v1 says "unlimited" near 2^63
  for u in T:1099511627776 G:1073741824 M:1048576 K:1024; do
    if [ "$b" -ge "${{u#*:}}" ] && [ $((b % ${{u#*:}})) -eq 0 ]; then s=$((b / ${{u#*:}}))${{u%%:*}}; return; fi
  done; s=$b; }}
if ! cd -- "$dir" 2>/dev/null; then
  printf 'fleet: agent %s: cannot enter working directory %s (missing or not a directory)\\n' "$name" "$dir" >&2
  deaths=1; giveup {CWD_FAILED}
fi
# Resuming (fleetlib/sessions.py): the marker word in the argv names the runtime; each start
# replaces it by that start's resume words, from the id kept in $session.
mode=; for a do case $a in {RESUME_MARKER}*) mode=${{a#{RESUME_MARKER}}};; esac; done
session=${{0%/*}}/$name{SESSION_SUFFIX} note=${{0%/*}}/$name{NOTE_SUFFIX}
if [ -e "$note" ]; then rm -f -- "$note"; fi
launch() {{
  for a do
    shift
    case $a in
      {RESUME_MARKER}claude) if [ -n "$resumed" ]; then set -- "$@" --resume "$sid"
        else set -- "$@" --session-id "$sid"; fi;;
      {RESUME_MARKER}codex) if [ -n "$resumed" ]; then set -- "$@" resume "$sid"; fi;;
      {RESUME_MARKER}gemini) if [ -n "$resumed" ]; then set -- "$@" --resume "$sid"; fi;;
      {RESUME_MARKER}*) ;;
      *) set -- "$@" "$a";;
    esac
  done
  # The header names the command line this start runs (after the environment words).
  line= past=
  for a do case $past in 1) line="$line $a";; *) [ "$a" = -- ] && past=1;; esac; done
  # The sh that becomes the agent is a subshell (a fork, no new sh to load); $$ stays the
  # supervisor's pid there, /proc/self is the subshell's own.
  (
    s=$size; [ -n "$s" ] || s=$(stty size 2>/dev/null); utc; p=; {{ read -r p _ </proc/self/stat; }} 2>/dev/null
    printf "{HEADER_PRINTF}" "$utc" "$p" "${{s#* }}x${{s% *}}" "${{line# }}"
    {{ echo "$$ $p" >"$record"; }} 2>/dev/null
    if [ "$1" != -- ]; then unset OLDPWD {" ".join(BASE_VARIABLES)}
      while [ "$1" != -- ]; do export "$1"; shift; done; fi
    shift; exec "$@"
  )
}}
# The UTC time of day to the second, in $utc, with builtins only (no date process per start):
# the kernel's boot time (epoch seconds) plus the uptime, as a civil date (days to y-m-d as in
# H. Hinnant's civil_from_days); the boot time is whole seconds, so it may be a second off.
utc() {{
  u=0 b=0; {{ read -r u _ </proc/uptime; while read -r k v; do case $k in btime) b=$v; break;; esac; done </proc/stat
  }} 2>/dev/null
  case $u in *.[0-9][0-9]) u=${{u%.*}}${{u#*.}};; *) u=$((${{u%.*}} * 100));; esac  # hundredths
  t=$((b + (u + 50) / 100)); z=$((t / 86400 + 719468)); e=$((z / 146097)); o=$((z - e * 146097))
  y=$(((o - o / 1460 + o / 36524 - o / 146096) / 365)); d=$((o - (365 * y + y / 4 - y / 100)))
  p=$(((5 * d + 2) / 153)); d=$((d - (153 * p + 2) / 5 + 1)); m=$((p < 10 ? p + 3 : p - 9))
  y=$((y + e * 400 + (m <= 2))); h=$((t % 86400 / 3600)); n=$((t % 3600 / 60)); t=$((t % 60))
  utc=$y-$((m / 10))$((m % 10))-$((d / 10))$((d % 10))T$((h / 10))$((h % 10))
  utc=$utc:$((n / 10))$((n % 10)):$((t / 10))$((t % 10))Z
}}
# Claude keeps a conversation as <config dir>/projects/<cwd, munged>/<id>.jsonl: a pinned
# id without one (no turn taken yet) is pinned again, not resumed.
claude_has() {{ set -- "${{claude_dir:-$home/.claude}}"/projects/*/"$1.jsonl"; [ -e "$1" ]; }}
fails=; delay=1 fresh=
while [ -z "$stop" ]; do
  sid= resumed= again=
  if [ -n "$mode" ]; then
    if [ -z "$fresh" ]; then
      {{ read -r sid <"$session"; }} 2>/dev/null
      case $sid in ''|[!A-Za-z0-9]*|*[!A-Za-z0-9._-]*) sid=;; esac
      [ "${{#sid}}" -gt 128 ] && sid=
    fi
    fresh=
    if [ "$mode" = claude ]; then
      if [ -z "$sid" ]; then
        {{ read -r sid </proc/sys/kernel/random/uuid; }} 2>/dev/null
        {{ echo "$sid" >"$session.tmp" && mv -f -- "$session.tmp" "$session"; }} 2>/dev/null
      elif claude_has "$sid"; then resumed=1; fi
    elif [ -n "$sid" ]; then resumed=1; fi
  fi
  began=0; {{ read -r began _ </proc/uptime; }} 2>/dev/null; began=${{began%.*}}
  ooms; before=$o
  if PATH=$path command -v "$cmd" >/dev/null 2>&1; then
    launch "$@"; status=$? size=
  else echo "fleet: $cmd: command not found" >&2; status={NOT_FOUND}; fi
  [ -n "$stop" ] && exit "$status"
  if [ -n "$again" ]; then
    # Ended by a restart in place: the gate opens (with the pane's size) once nothing of the
    # run is left; the next run is a new start, with no pacing and no exit counted.
    {{ read -r size <"$gate"; }} 2>/dev/null
    [ -n "$stop" ] && exit "$status"
    fails= delay=1; continue
  fi
  if [ -n "$resumed" ] && [ "$status" -ne 0 ]; then
    now=0; {{ read -r now _ </proc/uptime; }} 2>/dev/null; now=${{now%.*}}
    if [ $((now - began)) -lt {RESUME_QUICK_S} ]; then
      # The session is gone (or will not load): a new conversation, once, at once.
      line="resuming session $sid failed (exit $status); started a new conversation"
      printf 'fleet: agent %s: %s\\n' "$name" "$line" >&2
      {{ echo "$line" >"$note"; : >"$session"; }} 2>/dev/null
      fresh=1; continue
    fi
  fi
  ooms; why= said="exited with status $status"
  if [ "$o" -gt "$before" ] 2>/dev/null; then
    limit; why="{OOM}${{s:+ (memory_max $s)}}" said="$said: $why"
  fi
  deaths=$((deaths + 1)); now=0
  {{ read -r now _ </proc/uptime; }} 2>/dev/null; now=${{now%.*}}
  kept=; n=1
  for f in $fails; do if [ $((now - f)) -lt "$window" ]; then kept="$kept $f"; n=$((n + 1)); fi; done
  fails="$kept $now"
  if [ "$status" -eq {CWD_FAILED} ] || [ "$status" -eq {NOT_FOUND} ] || [ "$n" -ge "$max" ]; then
    printf 'fleet: agent %s %s; %s exit(s) in %ss: giving up\\n' "$name" "$said" "$n" "$window" >&2
    giveup "$status"
  fi
  printf 'fleet: agent %s %s; restarting in %ss (exit %s of %s allowed in %ss)\\n' \\
    "$name" "$said" "$delay" "$n" "$max" "$window" >&2
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
    return Path(_exec_record_file(run_dir, name))


def _exec_record_file(run_dir: Path | str, name: str) -> str:
    # Joined as text: `status` reads one record per agent, and building a Path for each
    # read cost more than the read.
    return os.path.join(run_dir, name + EXEC_SUFFIX)


class ExecRecord(NamedTuple):
    """What a supervisor wrote right before it exec'd its agent, and when (the file's
    modification time, epoch seconds: the moment of the ``echo``, just before the exec)."""

    supervisor: int
    agent: int
    written_at: float


def exec_record(run_dir: Path | str, name: str) -> ExecRecord | None:
    """``(supervisor pid, agent pid, written at)`` the supervisor of agent ``name`` wrote
    right before it exec'd the agent's latest run; None when there is no such record or it
    is not what the supervisor writes. The file is untrusted input: read capped, never through a symlink,
    pids range-checked. Callers match the supervisor pid against the window's pane pid, so
    a record left by an earlier window never counts for a new one."""
    # Read on every poll of a start's wait, for every agent: one open, no lstat first (the
    # flags refuse a symlink and never block; fstat refuses anything but a regular file).
    try:
        fd = os.open(_exec_record_file(run_dir, name), os.O_RDONLY | SAFE_OPEN_FLAGS)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        raw = os.read(fd, _EXEC_RECORD_CAP) if stat.S_ISREG(info.st_mode) else b""
    except OSError:
        return None
    finally:
        os.close(fd)
    words = raw.split()
    if len(words) != 2 or not all(word.isdigit() and 0 < int(word) <= _PID_LIMIT for word in words):
        return None
    return ExecRecord(int(words[0]), int(words[1]), info.st_mtime_ns / 1e9)


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


def pane_argv(spec: PaneSpec, argv: Sequence[str], run_dir: Path, env: Mapping[str, str] | None = None) -> list[str]:
    """What the window runs: the supervisor script with its parameters, the agent's
    environment ``env`` (see :func:`agent_environment`; the agent gets exactly that, plus
    what tmux and the shell add; None: the window's own), then the argv."""
    window = max(1, math.ceil(spec.failure_window))
    return [
        *spec.launcher, "/bin/sh", str(script_path(run_dir)), spec.name, spec.target, spec.tmux, spec.socket, spec.cwd,
        str(spec.max_failures), str(window), spec.unit or "", ":".join(spec.cgroup_mounts),
        *(f"{key}={value}" for key, value in (env or {}).items()), "--", *argv,
    ]  # fmt: skip


def pane_command(words: Sequence[str]) -> list[str] | None:
    """The supervisor's command line within the words of a tmux client's command that
    runs :func:`pane_argv` in a window (tmux's words around it; its bare ``;`` ends it,
    the command's own ``;`` being escaped); None when they hold none."""
    for index in range(len(words) - 1):
        if words[index] == "/bin/sh" and words[index + 1].endswith(f"/{SCRIPT_NAME}"):
            end = next((i for i in range(index, len(words)) if words[i] == ";"), len(words))
            return list(words[index:end])
    return None


def runs(pid: int, command: Sequence[str], run_dir: Path) -> bool:
    """Whether supervisor ``pid`` runs exactly ``command`` with the script the run dir
    holds now (dash keeps its script open: a script replaced since is another file). What
    a restart in place must know, since it keeps the supervisor: one started before an
    install changed the agent, or before an upgrade changed the script, is not renewed."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            running = handle.read().split(b"\0")[:-1]
        script = os.stat(script_path(run_dir))
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    if running != [os.fsencode(word) for word in command]:
        return False
    for fd in fds:
        try:
            opened = os.stat(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if (opened.st_dev, opened.st_ino) == (script.st_dev, script.st_ino):
            return True
    return False


def pane_environment(words: Sequence[str]) -> dict[str, str] | None:
    """The agent's environment from the words of a window's command that
    :func:`pane_argv` built (e.g. an installed unit's, unescaped); None when they hold no
    supervisor command or it passes no environment (the agent then keeps the window's)."""
    for index in range(len(words) - 1):
        if words[index] == "/bin/sh" and words[index + 1].endswith(f"/{SCRIPT_NAME}"):
            first = index + 11  # /bin/sh, the script and its nine parameters
            if "--" not in words[first:]:
                return None
            entries = [entry.partition("=") for entry in words[first : words.index("--", first)]]
            return {key: value for key, _, value in entries} or None
    return None


def base_environment(environ: Mapping[str, str], home: str) -> dict[str, str]:
    """The base environment of every agent (see :data:`BASE_VARIABLES`)."""
    base = {key: environ[key] for key in BASE_VARIABLES if environ.get(key)}
    base.setdefault("HOME", home)
    base.setdefault("PATH", DEFAULT_PATH)
    return base


def agent_environment(base: Mapping[str, str], marker: str, env: Mapping[str, str]) -> dict[str, str]:
    """An agent's whole environment, the same on both backends: the ``base``
    (:func:`base_environment`), the roster's ``env`` over it, and the process marker (last,
    so a roster cannot hide an agent's processes from the stop sweep)."""
    return {**base, **env, MARKER_ENV: marker}
