"""The tmux-only backend against real tmux on a private socket, driven through `inv fleet.*`."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FleetEnv, InvUser, eventually, kill_fleet_tmux, run_inv_concurrently, watcher_pids

pytestmark = pytest.mark.tmux


class TmuxEnv(InvUser):
    """A private home with no user manager reachable, so `auto` picks tmux."""

    def __init__(self, root: Path) -> None:
        self.home = root / "home"
        self.runtime = root / "runtime"
        self.home.mkdir()
        self.runtime.mkdir(mode=0o700)
        self.log = root / "events.log"
        self.bin = root / "bin"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        return {**env, "MOSAIC_HOME": str(self.home), "XDG_RUNTIME_DIR": str(self.runtime)}

    def slow_date(self, seconds: float) -> None:
        """A `date` first on the agents' PATH that takes ``seconds`` (the supervisor's header runs one)."""
        real = shutil.which("date") or "/bin/date"
        self.bin.mkdir(exist_ok=True)
        (self.bin / "date").write_text(f'#!/bin/sh\nsleep {seconds}\nexec {real} "$@"\n')
        (self.bin / "date").chmod(0o755)

    def roster(self, names: list[str], extra: str = "") -> None:
        # Each agent logs its start and its stop (on the TERM, then HUP, a stop sends), once: the
        # trap ignores both signals first, or sh runs it again, nested, for the HUP that arrives
        # while it writes (a flag set after the write came too late: "stop c2 | stop c2").
        stop = f'trap "" HUP TERM; echo "stop $0" >> {self.log}; exit 0'
        script = f'echo "start $0" >> {self.log}; trap {shlex.quote(stop)} HUP TERM; while :; do sleep 1; done'
        body = "".join(
            f"  - name: {n}\n    runtime: custom\n    command: [sh, -c, {json.dumps(script)}, {n}]\n" for n in names
        )
        self.write_roster("version: 1\ntransport: tmux\nagents:\n" + body + extra)

    def status(self) -> tuple[int, dict[str, dict[str, object]]]:
        result = self.inv("fleet.status", "--json")
        assert result.returncode in (0, 3), result.stderr
        return result.returncode, {row["name"]: row for row in json.loads(result.stdout)}

    def row(self, name: str) -> dict[str, object]:
        """The `fleet status --json` row of agent ``name``."""
        return self.status()[1][name]

    def events(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def tenv(tmp_path: Path) -> Iterator[TmuxEnv]:
    env = TmuxEnv(tmp_path)
    yield env
    kill_fleet_tmux(env.home)


def test_auto_picks_tmux_without_a_user_manager_and_install_says_so(tenv: TmuxEnv) -> None:
    tenv.roster(["a1"])
    assert tenv.inv("fleet.status").stdout.splitlines()[0] == "backend: tmux"
    assert "will not come back after a reboot" in tenv.inv_ok("fleet.install")


@pytest.mark.systemd
def test_auto_picks_systemd_when_a_user_manager_is_booted(fleet_env: FleetEnv) -> None:
    fleet_env.write_roster("version: 1\nagents: []\n")
    fleet_env.inv_ok("fleet.install")
    assert fleet_env.inv("fleet.status").stdout.splitlines()[0] == "backend: systemd"


def test_lifecycle_on_the_tmux_backend(tenv: TmuxEnv) -> None:
    tenv.roster(["t1", "t2", "t10"])
    assert tenv.status()[0] == 3
    assert "started 3 agent(s)" in tenv.inv_ok("fleet.start")
    code, rows = tenv.status()
    assert code == 0
    for name, row in rows.items():
        assert (row["unit"], row["active_state"], row["sub_state"], row["window"]) == (
            f"=fleet:={name}",
            "active",
            "running",
            True,
        )
        assert row["backend"] == "tmux"
    before = {n: r["pid"] for n, r in rows.items()}
    assert "already running" in tenv.inv_ok("fleet.start")

    tenv.inv_ok("fleet.stop", "--agent", "t1")  # leaves the others alone
    rows = tenv.status()[1]
    assert rows["t1"]["active_state"] == "inactive"
    assert (rows["t2"]["pid"], rows["t10"]["pid"]) == (before["t2"], before["t10"])

    tenv.roster(["t1", "t2", "t10", "t3"])  # roster edit: start starts only what is missing
    assert "started 2 agent(s) (t1, t3)" in tenv.inv_ok("fleet.start")
    rows = tenv.status()[1]
    assert (rows["t2"]["pid"], rows["t10"]["pid"]) == (before["t2"], before["t10"])

    tenv.inv_ok("fleet.restart", "--agent", "t2")
    rows = tenv.status()[1]
    assert rows["t2"]["pid"] != before["t2"]
    assert rows["t10"]["pid"] == before["t10"]
    assert rows["t2"]["restarts"] == 1

    tenv.inv_ok("fleet.stop")
    code, rows = tenv.status()
    assert code == 3
    assert {r["active_state"] for r in rows.values()} == {"inactive"}
    assert all(line.split()[0] in ("start", "stop") for line in tenv.events())


def test_an_agent_that_crashes_at_start_fails_start_every_time_and_its_supervisor_brings_it_back(
    tenv: TmuxEnv, tmp_path: Path
) -> None:
    flag = tmp_path / "crash-once"
    flag.write_text("")
    crasher = f"if [ -e {flag} ]; then rm {flag}; echo dying-now; exit 42; fi; exec sleep 100000"
    tenv.roster(["ok"], extra=f"  - name: crasher\n    runtime: custom\n    command: [sh, -c, {json.dumps(crasher)}]\n")
    result = tenv.inv("fleet.start")
    # start waits out the grace period, so it always sees the crash and names it...
    assert result.returncode == 1, result.stderr
    assert "crasher" in result.stderr
    assert "exit status 42" in result.stderr
    assert "dying-now" in result.stderr
    assert "Traceback" not in result.stderr

    def recovered() -> bool:
        code, rows = tenv.status()
        return code == 0 and rows["crasher"]["failures"] == 1 and rows["crasher"]["exit_status"] == 42

    # ...and its supervisor starts it again (once, after a 1 s back-off), keeping the count.
    deadline = time.monotonic() + 30
    while not recovered():
        assert time.monotonic() < deadline, tenv.status()
        time.sleep(0.1)
    assert tenv.status()[1]["ok"]["process_state"] == "running"
    tenv.inv_ok("fleet.restart", "--agent", "crasher")
    code, rows = tenv.status()
    assert code == 0
    assert (rows["crasher"]["exit_status"], rows["crasher"]["failures"]) == (None, 0)


def test_a_crash_looping_agent_is_paced_then_left_failed(tenv: TmuxEnv) -> None:
    tenv.roster(
        [],
        extra="  - name: looper\n    runtime: custom\n    command: [sh, -c, 'echo boom; exit 3']\n"
        "    max_failures: 3\n    failure_window: 60\n",
    )
    assert tenv.inv("fleet.start").returncode == 1

    def given_up() -> bool:
        return tenv.status()[1]["looper"]["state"] == "failed"

    deadline = time.monotonic() + 30
    while not given_up():
        assert time.monotonic() < deadline, tenv.status()
        time.sleep(0.2)
    row = tenv.status()[1]["looper"]
    assert (row["failures"], row["exit_status"]) == (3, 3)
    time.sleep(2.5)  # nothing restarts a failed agent on its own
    assert tenv.status()[1]["looper"]["failures"] == 3


def test_roster_cwd_env_and_args_reach_the_agent_on_tmux(tenv: TmuxEnv, tmp_path: Path) -> None:
    out = tmp_path / "seen.json"
    workdir = tmp_path / "w d"
    workdir.mkdir()
    script = f"import json,os,sys,time; open({str(out)!r},'w').write(json.dumps([os.getcwd(), os.environ['K'], sys.argv[1:]])); time.sleep(1e5)"
    tenv.roster(
        [],
        extra=f"  - name: probe\n    runtime: custom\n    command: [{json.dumps(sys.executable)}, -c, {json.dumps(script)}]\n"
        f"    args: ['a b', '$(x)', ';', 'x;', 'a;b']\n    cwd: {json.dumps(str(workdir))}\n    env: {{K: 'v $V'}}\n",
    )
    tenv.inv_ok("fleet.start")
    for _ in range(200):
        if out.exists() and out.read_text():
            break
        subprocess.run(["sleep", "0.05"], check=True)
    assert json.loads(out.read_text()) == [str(workdir), "v $V", ["a b", "$(x)", ";", "x;", "a;b"]]


# Each block holds every name: a restart counts an agent up only once the agent itself ran
# for its grace (it logged "start" by then), never when its supervisor merely lived that
# long (under load a generation was torn down before its agents ran: a block lost names).
@pytest.mark.parametrize("date_delay", [0.0, 1.2], ids=["plain", "slow-supervisor"])
def test_three_concurrent_restarts_never_interleave(tenv: TmuxEnv, date_delay: float) -> None:
    # slow-supervisor: the supervisor's header `date` takes 1.2 s before each exec, as a
    # loaded machine can make it; before the fix whole generations were lost this way.
    if date_delay:
        tenv.slow_date(date_delay)
    names = ["c1", "c2", "c3", "c4"]
    tenv.roster(names)
    tenv.inv_ok("fleet.start")
    for code, _, err in run_inv_concurrently([["fleet.restart"]] * 3, tenv.env):
        assert code == 0, err
    tenv.inv_ok("fleet.stop")
    # Every teardown completes (all agents logged "stop") before the next generation starts:
    # the log is alternating blocks of 4 starts and 4 stops, one block per generation.
    events = tenv.events()
    blocks: list[list[str]] = []
    for kind, name in (line.split() for line in events):
        if not blocks or blocks[-1][0] != kind:
            blocks.append([kind])
        blocks[-1].append(name)
    assert [b[0] for b in blocks] == ["start", "stop"] * 4, events  # initial start + 3 restarts, then the final stop
    assert all(sorted(b[1:]) == names for b in blocks), " | ".join(events)


def _marked_pids(socket: Path) -> dict[str, set[int]]:
    """Every live process carrying a fleet marker for ``socket``, read from /proc by the test
    itself (the witness does not use the code under test)."""
    found: dict[str, set[int]] = {}
    suffix = f"@{socket}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        for variable in environ.split(b"\0"):
            if variable.startswith(b"FLEET_AGENT=") and variable.endswith(suffix) and state != "Z":
                found.setdefault(variable[len("FLEET_AGENT=") : -len(suffix)].decode(), set()).add(int(entry))
    return found


def _server_pid(socket: Path) -> int:
    return int(subprocess.run(["tmux", "-S", str(socket), "display", "-p", "#{pid}"], capture_output=True,
                              text=True, check=True).stdout)  # fmt: skip


# An agent that ignores hang-ups and TERM, with a child that left its session and does too.
STUBBORN = "setsid sh -c 'trap \"\" HUP TERM; exec sleep 100000' & trap '' HUP TERM; while :; do sleep 1; done"
# One that ignores them too, logging each TERM and HUP with its sender's pid (0: the kernel):
# the witness of who ended it, whatever else on the machine kills stray processes.
TELLTALE = (
    "import os, signal, sys\n"
    "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGHUP})\n"
    "while True:\n"
    "    info = signal.sigwaitinfo({signal.SIGTERM, signal.SIGHUP})\n"
    "    with open(sys.argv[1], 'a') as log: log.write(f'{info.si_signo} {info.si_pid}\\n')\n"
)


@pytest.mark.parametrize("how", ["kill-server", "SIGKILL"])
def test_a_dead_tmux_server_leaves_no_agent_running_and_status_and_doctor_say_so(tenv: TmuxEnv, how: str) -> None:
    # Defect: after `tmux kill-server` the pane supervisors and their agents ran on for ever
    # with ppid 1, unsupervised and seen by no `status`.
    told = tenv.home / "told.log"
    tenv.roster(
        [],
        extra="  - name: s1\n    runtime: custom\n    command: [sleep, '100000']\n"
        f"  - name: h1\n    runtime: custom\n    command: [sh, -c, {json.dumps(STUBBORN)}]\n    stop_timeout: 2\n"
        f"  - name: w1\n    runtime: custom\n    command: [{json.dumps(sys.executable)}, -c, {json.dumps(TELLTALE)},"
        f" {json.dumps(str(told))}]\n    stop_timeout: 2\n",
    )
    tenv.inv_ok("fleet.start")
    socket = tenv.home / "fleet" / "run" / "tmux.sock"
    eventually(lambda: len(_marked_pids(socket).get("h1", set())) >= 3, "h1, its loop and its setsid child")
    eventually(lambda: bool(watcher_pids(tenv.home)), "the fleet's watcher runs")
    (watcher,) = watcher_pids(tenv.home)
    old = set().union(*_marked_pids(socket).values())
    if how == "kill-server":
        subprocess.run(["tmux", "-S", str(socket), "kill-server"], check=True)
    else:
        os.kill(_server_pid(socket), signal.SIGKILL)

    eventually(lambda: not old & set().union(set(), *_marked_pids(socket).values()), "no agent process left")
    eventually(lambda: not watcher_pids(tenv.home), "the watcher ended too")
    senders = [line.split() for line in told.read_text().splitlines()] if told.exists() else []
    assert [str(int(signal.SIGTERM)), str(watcher)] in senders, f"the watcher never told w1 to end: {senders}"
    code, rows = tenv.status()
    assert code == 3
    assert {row["process_state"] for row in rows.values()} == {"stopped"}
    assert {row["reason"] for row in rows.values()} == {"the fleet's tmux server died"}
    text = tenv.inv("fleet.status").stdout
    assert "holder tmux:fleet: failed (died)" in text
    assert "fleet start" in text
    doctor = tenv.inv("fleet.doctor", "--json")
    assert doctor.returncode == 1
    (check,) = [c for c in json.loads(doctor.stdout) if c["name"] == "tmux server"]
    assert not check["ok"]
    assert "died" in check["detail"]
    assert "fleet.start" in check["fix"]  # as `inv` spells it

    tenv.inv_ok("fleet.start")  # and back, with the notice gone
    code, rows = tenv.status()
    assert code == 0
    assert {row["reason"] for row in rows.values()} == {None}


def test_stop_after_the_tmux_server_died_clears_the_notice(tenv: TmuxEnv) -> None:
    tenv.roster(["q1"])
    tenv.inv_ok("fleet.start")
    socket = tenv.home / "fleet" / "run" / "tmux.sock"
    os.kill(_server_pid(socket), signal.SIGKILL)
    eventually(lambda: not _marked_pids(socket), "no agent process left")
    assert tenv.status()[1]["q1"]["reason"] == "the fleet's tmux server died"
    tenv.inv_ok("fleet.stop")
    assert tenv.status()[1]["q1"]["reason"] is None
    assert "died" not in tenv.inv("fleet.status").stdout


def test_a_start_after_the_tmux_server_died_ends_the_orphaned_generation_first(tenv: TmuxEnv) -> None:
    # Without its watcher (killed first), nothing ends an agent that ignores the hang-up:
    # the next start must end that old generation before it starts a new one.
    tenv.roster(
        [], extra="  - name: s1\n    runtime: custom\n    command: [sh, -c, \"trap '' HUP; exec sleep 100000\"]\n"
    )
    tenv.inv_ok("fleet.start")
    socket = tenv.home / "fleet" / "run" / "tmux.sock"
    eventually(lambda: bool(watcher_pids(tenv.home)), "the fleet's watcher runs")
    subprocess.run(["tmux", "-S", str(socket), "kill-window", "-t", "=fleet:=_watcher"], check=True)
    eventually(lambda: not watcher_pids(tenv.home), "the watcher ended with its window")
    old = _marked_pids(socket)["s1"]
    os.kill(_server_pid(socket), signal.SIGKILL)
    eventually(lambda: len(_marked_pids(socket).get("s1", set())) == 1, "only the agent left (the supervisor died)")
    assert _marked_pids(socket)["s1"] <= old, "the test needs orphans to exist"
    assert tenv.status()[1]["s1"]["process_state"] == "stopped"

    tenv.inv_ok("fleet.start")
    now = _marked_pids(socket)["s1"]
    assert not now & old, f"old generation still alive: {now & old}"
    assert tenv.status()[1]["s1"]["process_state"] == "running"


@pytest.mark.parametrize("ending", ["stop", "restart", "install", "stop-without-window"])
def test_an_agent_removed_from_the_roster_shows_in_status_and_is_ended(tenv: TmuxEnv, ending: str) -> None:
    # Defect: `roster.remove --name gone; fleet install; fleet stop` left gone's supervisor
    # and its `sleep` running with ppid 1, seen by no `status`; install said nothing to do.
    sleeper = "    runtime: custom\n    command: [sleep, '100000']\n"
    # Killing a window hangs up its agent: only one that ignores the hang-up outlives it.
    stubborn = "    runtime: custom\n    command: [sh, -c, \"trap '' HUP; sleep 100000\"]\n    stop_timeout: 2\n"
    gone = stubborn if ending == "stop-without-window" else sleeper
    tenv.roster([], extra=f"  - name: a1\n{sleeper}  - name: gone\n{gone}")
    tenv.inv_ok("fleet.start")
    socket = tenv.home / "fleet" / "run" / "tmux.sock"
    assert set(_marked_pids(socket)) == {"a1", "gone"}
    tenv.inv_ok("roster.remove", "--name", "gone")

    code, rows = tenv.status()
    assert code == 0  # every roster agent is up; the stray is shown, not counted
    assert (rows["gone"]["in_roster"], rows["gone"]["process_state"]) == (False, "running")
    assert rows["a1"]["in_roster"] is True
    assert "not in roster" in tenv.inv("fleet.status").stdout
    a1 = rows["a1"]["pid"]

    if ending == "stop-without-window":  # only its processes are left to find
        # (Its window, not the server: another test's clean-up ends every agent process
        # whose server is gone, anywhere on the machine.)
        subprocess.run(["tmux", "-S", str(socket), "kill-window", "-t", "=fleet:=gone"], check=True)
        assert "gone" in _marked_pids(socket), "the test needs the stray's processes to outlive its window"
        assert "gone" not in tenv.status()[1]
    said = tenv.inv_ok("fleet." + ending.split("-", maxsplit=1)[0])
    assert "gone" in said, said

    assert "gone" not in _marked_pids(socket), "a process of the removed agent survived"
    code, rows = tenv.status()
    assert "gone" not in rows
    if ending == "install":  # ends the stray, leaves the roster's agents alone
        assert (code, rows["a1"]["pid"]) == (0, a1)
    elif ending == "restart":
        assert code == 0
        assert rows["a1"]["pid"] != a1
    else:
        assert "a1" not in _marked_pids(socket)


def test_doctor_where_tmux_is_chosen_automatically_passes_and_names_a_crash_looping_agent(tenv: TmuxEnv) -> None:
    # Defects: with `auto` and no user manager (the README: systemd is optional, tmux is
    # chosen) doctor failed `user manager`; and it passed every check while an agent was
    # `failed` after crash-looping.
    tenv.roster(["ok"])
    tenv.inv_ok("fleet.start")

    def doctor() -> tuple[int, dict[str, dict[str, object]]]:
        result = tenv.inv("fleet.doctor", "--json")
        assert "Traceback" not in result.stderr
        return result.returncode, {check["name"]: check for check in json.loads(result.stdout)}

    def watcher_up() -> bool:
        return doctor()[1]["watcher"]["ok"] is True

    eventually(watcher_up, "the watcher found")
    code, checks = doctor()
    assert code == 0, checks
    assert (checks["user manager"]["ok"], checks["user manager"]["skipped"]) == (True, True)
    assert "tmux" in str(checks["user manager"]["detail"])
    assert checks["agents"]["ok"] is True

    looper = "  - name: looper\n    runtime: custom\n    command: [sh, -c, 'echo boom; exit 3']\n    max_failures: 2\n"
    tenv.roster(["ok"], extra=looper)
    assert tenv.inv("fleet.start").returncode == 1
    eventually(lambda: tenv.status()[1]["looper"]["state"] == "failed", "the supervisor gave up on looper")
    code, checks = doctor()
    assert code == 1
    assert [name for name, check in checks.items() if not check["ok"]] == ["agents"]
    assert "looper" in str(checks["agents"]["detail"])
    assert "logs --agent looper`" in str(checks["agents"]["fix"])  # `inv fleet.logs` under inv
    tenv.inv_ok("fleet.stop")


def test_a_dry_run_start_decides_from_the_fleet_as_it_is_and_changes_nothing(tenv: TmuxEnv) -> None:
    """`start --dry-run` is `start` with its changes recorded: the agent already running
    is left out of the commands (would do nothing), the other's window would be made;
    `install --dry-run` says it would stop an agent no longer listed. And the fleet is as
    it was (its windows and pane processes, as tmux lists them; the agents' own log)."""
    tenv.roster(["alpha", "omega"])
    tenv.inv_ok("fleet.start", "--agent", "alpha")
    socket = tenv.home / "fleet" / "run" / "tmux.sock"

    def panes() -> str:
        listed = ["tmux", "-S", str(socket), "list-panes", "-a", "-F", "#{window_name} #{pane_pid} #{pane_dead}"]
        return subprocess.run(listed, capture_output=True, text=True, check=True).stdout

    before = panes()
    dry = json.loads(tenv.inv_ok("fleet.start", "--dry-run", "--json"))
    assert {a["name"]: a["action"] for a in dry["agents"]} == {"alpha": "unchanged", "omega": "would start"}
    assert dry["holder"] == "unchanged"
    words = [word for argv in dry["commands"] for word in argv]
    assert any("omega" in word for word in words)
    assert not any("alpha" in word for word in words)
    assert "new-session" not in words  # the server runs: a start would not make one
    assert tenv.inv_ok("fleet.start", "--agent", "alpha", "--dry-run").strip() == (
        "would do nothing: 1 agent(s) (alpha) already running"
    )
    tenv.roster(["omega"])  # alpha runs on, no longer listed: an install would stop it
    assert "would stop 1 agent(s) (alpha): no longer in the roster" in tenv.inv_ok("fleet.install", "--dry-run")
    assert panes() == before
    assert tenv.events() == ["start alpha"]
