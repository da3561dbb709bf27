"""Fleet control against a real, private systemd --user manager and real tmux.

Every test drives the fleet as a user would (`inv fleet.*` in a subprocess) and checks
the result from the outside: unit states from systemctl, windows and pids from tmux.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleetlib.systemd import DEFAULT_UNITS, UnitNames
from tests.conftest import REPO, FleetEnv, eventually, run_inv_concurrently

pytestmark = pytest.mark.systemd

SLEEPER = '[sleep, "100000"]'


def roster(names: list[str], command: str = SLEEPER) -> str:
    body = "".join(f"  - name: {name}\n    runtime: custom\n    command: {command}\n" for name in names)
    return "version: 1\ntransport: tmux\nagents:\n" + body


def status(fe: FleetEnv) -> tuple[int, dict[str, dict[str, object]]]:
    result = fe.inv("fleet.status", "--json")
    assert result.returncode in (0, 3), result.stderr
    return result.returncode, {row["name"]: row for row in json.loads(result.stdout)}


def pids(fe: FleetEnv) -> dict[str, object]:
    return {name: row["pid"] for name, row in status(fe)[1].items()}


def agent_processes(fe: FleetEnv) -> dict[str, object]:
    """Each agent's own process (a restart in place keeps the supervisor, ``pid``)."""
    return {name: row["agent_pid"] for name, row in status(fe)[1].items()}


def windows(fe: FleetEnv) -> list[str]:
    result = fe.tmux("list-windows", "-t", "=fleet:", "-F", "#{window_name}")
    return result.stdout.split() if result.returncode == 0 else []


def started_fleet(fe: FleetEnv, names: list[str], command: str = SLEEPER) -> None:
    fe.write_roster(roster(names, command))
    fe.inv_ok("fleet.install")
    fe.inv_ok("fleet.start")


def test_full_lifecycle(fleet_env: FleetEnv) -> None:
    fe = fleet_env
    fe.write_roster(roster(["a1", "a2", "a10"]))
    installed = fe.inv_ok("fleet.install")
    units = fe.units
    assert units.holder in installed
    assert "enabled 4 unit(s)" in installed
    assert "nothing to do" in fe.inv_ok("fleet.install")  # idempotent
    wants = fe.manager.unit_dir / "default.target.wants"
    assert {p.name for p in wants.iterdir()} >= {units.holder, units.agent("a10")}

    code, rows = status(fe)
    assert code == 3
    assert {r["active_state"] for r in rows.values()} == {"inactive"}

    assert "all up" in fe.inv_ok("fleet.start")
    code, rows = status(fe)
    assert code == 0
    for name, row in rows.items():
        assert row["unit"] == units.agent(name)
        assert (row["active_state"], row["sub_state"], row["window"]) == ("active", "running", True)
        assert isinstance(row["pid"], int)
        assert {"name", "unit", "active_state", "sub_state", "pid", "since", "restarts", "window"} <= set(row)
    assert sorted(windows(fe)) == ["_holder", "a1", "a10", "a2"]
    text = fe.inv_ok("fleet.status")
    assert text.splitlines()[:2] == ["backend: systemd", f"holder {units.holder}: active (running)"]

    assert "stopped" in fe.inv_ok("fleet.stop")
    code, rows = status(fe)
    assert code == 3
    assert {(r["active_state"], r["window"]) for r in rows.values()} == {("inactive", False)}
    assert windows(fe) == []

    fe.inv_ok("fleet.uninstall")
    assert not (fe.manager.unit_dir / units.holder).exists()
    assert not (fe.manager.unit_dir / f"{units.agent('a1')}.d").exists()


def test_roster_cwd_env_args_and_command_reach_the_agent(fleet_env: FleetEnv, tmp_path: Path) -> None:
    fe = fleet_env
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    out = tmp_path / "seen.json"
    script = (
        "import json, os, sys, time; "
        f"open({str(out)!r}, 'w').write(json.dumps([os.getcwd(), os.environ.get('FLEET_TEST'), sys.argv[1:]])); "
        "time.sleep(100000)"
    )
    fe.write_roster(
        "version: 1\nagents:\n  - name: probe\n    runtime: custom\n"
        f"    command: [{json.dumps(sys.executable)}, -c, {json.dumps(script)}]\n"
        f"    args: [--flag, 'two words', '$HOME', '%i', 'a;b', ';', 'end;']\n"
        f"    cwd: {json.dumps(str(workdir))}\n"
        "    env: {FLEET_TEST: 'va lue $HOME %n \"q\"'}\n"
    )
    fe.inv_ok("fleet.install")
    fe.inv_ok("fleet.start")
    eventually(out.exists, "the probe agent wrote what it saw")
    cwd, env_value, argv = json.loads(out.read_text())
    assert cwd == str(workdir)
    assert env_value == 'va lue $HOME %n "q"'
    assert argv == ["--flag", "two words", "$HOME", "%i", "a;b", ";", "end;"]


def test_three_concurrent_restarts_all_succeed_each_agent_one_window(fleet_env: FleetEnv) -> None:
    fe = fleet_env
    started_fleet(fe, ["r1", "r2", "r3"])
    for code, out, err in run_inv_concurrently([["fleet.restart"]] * 3, fe.env):
        assert code == 0, err
        assert "all up" in out
    code, rows = status(fe)
    assert code == 0
    assert all(r["active_state"] == "active" for r in rows.values())
    assert sorted(windows(fe)) == ["_holder", "r1", "r2", "r3"]  # exactly one window each


def test_single_agent_restart_leaves_the_others_untouched(fleet_env: FleetEnv) -> None:
    fe = fleet_env
    started_fleet(fe, ["s1", "s2", "s3"])
    before, agents = pids(fe), agent_processes(fe)
    fe.inv_ok("fleet.restart", "--agent", "s2")
    after, renewed = pids(fe), agent_processes(fe)
    assert (after["s1"], renewed["s1"]) == (before["s1"], agents["s1"])
    assert (after["s3"], renewed["s3"]) == (before["s3"], agents["s3"])
    assert renewed["s2"] not in (None, agents["s2"])
    assert status(fe)[0] == 0


def test_killed_tmux_server_brings_the_fleet_back_on_its_own(fleet_env: FleetEnv) -> None:
    fe = fleet_env
    started_fleet(fe, ["k1", "k2"])
    before = pids(fe)
    server = int(fe.tmux("display-message", "-p", "#{pid}").stdout)
    os.kill(server, signal.SIGKILL)

    def back() -> bool:
        code, rows = status(fe)
        return code == 0 and all(rows[n]["pid"] not in (None, before[n]) for n in before)

    eventually(back, "holder and agents came back after kill -9 of the tmux server")
    assert sorted(windows(fe)) == ["_holder", "k1", "k2"]


def _fleet_processes(fe: FleetEnv) -> set[int]:
    """Every live process carrying this fleet's agent marker, read from /proc by the test."""
    suffix = f"@{fe.home / 'fleet' / 'run' / 'tmux.sock'}".encode()
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes()
                state = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
            except OSError:
                continue
            if state != b"Z" and any(
                v.startswith(b"FLEET_AGENT=") and v.endswith(suffix) for v in environ.split(b"\0")
            ):
                found.add(int(entry))
    return found


@pytest.mark.parametrize("how", ["kill-server", "SIGTERM"])
def test_a_server_that_exits_cleanly_brings_back_the_agents_that_were_running(fleet_env: FleetEnv, how: str) -> None:
    # Defect: tmux tells waiting clients "exited" (status 0) when its server shuts down
    # (kill-server, or SIGTERM from anyone), so the agents' units ended "successfully" and
    # nothing restarted them; the holder came back alone with every agent stopped.
    fe = fleet_env
    started_fleet(fe, ["g1", "g2", "g3"])
    fe.inv_ok("fleet.stop", "--agent", "g3")  # stopped on purpose: it stays stopped
    before = pids(fe)
    old = _fleet_processes(fe)
    assert old, "the test needs running agents"
    if how == "kill-server":
        fe.tmux("kill-server")
    else:
        os.kill(int(fe.tmux("display-message", "-p", "#{pid}").stdout), signal.SIGTERM)

    def back() -> bool:
        rows = status(fe)[1]
        return all(
            rows[n]["process_state"] == "running" and rows[n]["pid"] not in (None, before[n]) for n in ("g1", "g2")
        )

    eventually(back, f"the running agents came back after the server's {how}")
    assert status(fe)[1]["g3"]["process_state"] == "stopped"
    assert not old & _fleet_processes(fe), "an agent process of the old server still runs"


def test_two_holder_restarts_in_a_row_bring_every_agent_back(fleet_env: FleetEnv) -> None:
    fe = fleet_env
    started_fleet(fe, ["t1", "t2"])
    before = pids(fe)
    for _ in range(2):
        assert fe.manager.systemctl("restart", fe.units.holder).returncode == 0

    def back() -> bool:
        code, rows = status(fe)
        return code == 0 and all(rows[n]["pid"] not in (None, before[n]) for n in before)

    eventually(back, "every agent back after two holder restarts")


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (read from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_bytes()
            except OSError:
                continue
            if int(stat[stat.rfind(b")") + 2 :].split()[1]) == pid:
                found.append(int(entry))
    return found


def test_agent_whose_process_exits_is_restarted_by_its_supervisor(fleet_env: FleetEnv) -> None:
    fe = fleet_env
    started_fleet(fe, ["e1", "e2"])
    before = pids(fe)
    pane = before["e1"]
    assert isinstance(pane, int)
    (agent,) = children(pane)  # the pane runs the supervisor, which runs the agent
    os.kill(agent, signal.SIGKILL)

    def restarted() -> bool:
        code, rows = status(fe)
        new = children(pane)
        return code == 0 and rows["e1"]["failures"] == 1 and bool(new) and new != [agent]

    eventually(restarted, "the exited agent was started again by its supervisor")
    assert pids(fe)["e2"] == before["e2"]


def test_unit_is_active_exactly_while_its_supervisor_runs(fleet_env: FleetEnv) -> None:
    fe = fleet_env
    started_fleet(fe, ["k9"])
    pane = pids(fe)["k9"]
    assert isinstance(pane, int)
    os.kill(pane, signal.SIGKILL)  # no trap runs: only the holder's pane-died hook can tell
    eventually(
        lambda: fe.manager.systemctl("is-active", fe.units.agent("k9")).stdout.strip() == "inactive",
        "the unit went inactive when its pane died",
    )
    assert status(fe)[1]["k9"]["state"] == "exited"
    fe.inv_ok("fleet.start")  # and a start brings it back, with a fresh wait on the channel
    assert status(fe)[1]["k9"]["process_state"] == "running"
    assert fe.manager.systemctl("is-active", fe.units.agent("k9")).stdout.strip() == "active"


def test_the_unit_ends_with_its_supervisor_even_when_tmux_never_reports_the_pane_dead(fleet_env: FleetEnv) -> None:
    """tmux 3.3a sometimes leaves an exited pane process an unreaped zombie and fires the
    holder's pane-died hook only at the server's next SIGCHLD (the unit then stayed active
    beside a dead pane; test_8 in the fault tests failed so, 2 runs in 6). Without the hook
    at all, the unit still goes inactive when its supervisor gives up."""
    fe = fleet_env
    fe.write_roster(roster(["z1"]).replace("    command:", "    max_failures: 1\n    command:"))
    fe.inv_ok("fleet.install")
    fe.inv_ok("fleet.start")
    assert fe.tmux("set-hook", "-gu", "pane-died").returncode == 0
    pane = pids(fe)["z1"]
    assert isinstance(pane, int)
    (agent,) = children(pane)
    os.kill(agent, signal.SIGKILL)  # one exit of one allowed: the supervisor gives up and exits
    eventually(
        lambda: fe.manager.systemctl("is-active", fe.units.agent("z1")).stdout.strip() == "inactive",
        "the unit went inactive with its supervisor",
    )
    assert status(fe)[1]["z1"]["process_state"] == "failed"


def test_stop_with_one_failing_agent_stops_the_rest_and_exits_non_zero(fleet_env: FleetEnv) -> None:
    fe = fleet_env
    started_fleet(fe, ["f1", "f2", "f3"])
    refuse = fe.manager.unit_dir / f"{fe.units.agent('f2')}.d" / "90-test-refuse.conf"
    refuse.write_text("[Unit]\nRefuseManualStop=yes\n")
    fe.manager.systemctl("daemon-reload")
    try:
        result = fe.inv("fleet.stop")
        assert result.returncode == 1
        assert "f2:" in result.stderr
        assert "Traceback" not in result.stderr
        rows = status(fe)[1]
        assert rows["f1"]["active_state"] == "inactive"
        assert rows["f3"]["active_state"] == "inactive"
        assert fe.manager.systemctl("is-active", fe.units.holder).stdout.strip() == "inactive"
    finally:
        refuse.unlink()
        fe.manager.systemctl("daemon-reload")


def test_six_restarts_in_a_row_do_not_trip_the_start_limit(fleet_env: FleetEnv) -> None:
    fe = fleet_env
    started_fleet(fe, ["l1", "l2"])
    for _ in range(6):
        fe.inv_ok("fleet.restart")
    assert status(fe)[0] == 0
    assert fe.manager.systemctl("is-failed", fe.units.holder).stdout.strip() != "failed"


def test_roster_edits_are_picked_up_by_reinstalling(fleet_env: FleetEnv) -> None:
    fe = fleet_env
    started_fleet(fe, ["g1", "g2"])
    added = fe.inv_ok("roster.add", "--name", "g3", "--runtime", "custom", "--command", "sleep 100000")
    assert "fleet.install" in added
    result = fe.inv("fleet.start", "--agent", "g3")
    assert result.returncode == 2
    assert "fleet install" in result.stderr
    assert f"{fe.units.agent('g3')}.d" in fe.inv_ok("fleet.install")
    fe.inv_ok("fleet.start")
    assert status(fe)[0] == 0
    fe.inv_ok("roster.remove", "--name", "g1")
    assert fe.units.agent("g1") in fe.inv_ok("fleet.install")
    assert fe.manager.systemctl("is-active", fe.units.agent("g1")).stdout.strip() == "inactive"
    assert sorted(windows(fe)) == ["_holder", "g2", "g3"]


def test_unit_files_holding_the_roster_env_are_readable_by_their_owner_only(fleet_env: FleetEnv) -> None:
    # Defect: drop-ins carry the roster's `env` (API keys) and were written 0644 in
    # ~/.config/systemd/user; an install before the fix left them so, content unchanged.
    fe = fleet_env
    fe.write_roster(roster(["s1"]) + "    env: {API_KEY: sk-secret-123}\n")
    fe.inv_ok("fleet.install")
    dropin = next(p for p in fe.manager.unit_dir.rglob("*.conf") if "sk-secret-123" in p.read_text())

    def readable_by_others() -> list[str]:
        return [str(p) for p in fe.manager.unit_dir.rglob("*") if p.is_file() and p.stat().st_mode & 0o077]

    assert readable_by_others() == []
    dropin.chmod(0o644)  # as an older version wrote it
    fe.inv_ok("fleet.install")
    assert readable_by_others() == []
    dropin.chmod(0o644)  # an older version's file, whose text changes: not kept 0644
    fe.write_roster(roster(["s1"]) + "    env: {API_KEY: sk-secret-456}\n")
    fe.inv_ok("fleet.install")
    assert readable_by_others() == []
    assert "sk-secret-456" in dropin.read_text()


def test_dry_run_runs_nothing(fleet_env: FleetEnv) -> None:
    fe = fleet_env
    fe.write_roster(roster(["d1"]))
    out = fe.inv_ok("fleet.install", "--dry-run")
    assert "would write" in out
    assert not (fe.manager.unit_dir / fe.units.holder).exists()
    fe.inv_ok("fleet.install")
    out = fe.inv_ok("fleet.restart", "--dry-run")
    assert f"would run: systemctl --user --no-block restart {fe.units.holder}" in out
    assert status(fe)[0] == 3
    assert windows(fe) == []


def test_a_dry_run_start_decides_from_the_fleet_as_it_is_and_changes_nothing(fleet_env: FleetEnv) -> None:
    """`start --dry-run` is `start` with its changes recorded: the running agent's unit is
    in no command (would do nothing), the other's would be started; and the manager, the
    unit files and the windows are as they were, as systemctl, the directory and tmux say."""
    fe = fleet_env
    started_fleet(fe, ["alpha"])
    fe.write_roster(roster(["alpha", "omega"]))
    fe.inv_ok("fleet.install")
    alpha, omega = fe.units.agent("alpha"), fe.units.agent("omega")

    def witness() -> tuple[str, dict[str, str], list[str]]:
        shown = fe.manager.systemctl("show", "-p", "Id,ActiveState,InvocationID,MainPID", fe.units.holder, alpha, omega)
        files = {str(p): p.read_text() for p in sorted(fe.manager.unit_dir.rglob("*")) if p.is_file()}
        return shown.stdout, files, sorted(windows(fe))

    before = witness()
    assert before[2] == ["_holder", "alpha"]
    dry = json.loads(fe.inv_ok("fleet.start", "--dry-run", "--json"))
    assert {a["name"]: a["action"] for a in dry["agents"]} == {"alpha": "unchanged", "omega": "would start"}
    words = [word for argv in dry["commands"] for word in argv]
    assert omega in words
    assert alpha not in words
    assert fe.inv_ok("fleet.start", "--agent", "alpha", "--dry-run").strip() == (
        "would do nothing: 1 agent(s) (alpha) already running"
    )
    assert witness() == before


def test_user_errors_are_one_line_exit_2(fleet_env: FleetEnv, tmp_path: Path) -> None:
    fe = fleet_env
    missing = fe.inv("fleet.start")
    assert missing.returncode == 2
    assert "roster not found" in missing.stderr
    fe.write_roster(roster(["u1"]))
    not_installed = fe.inv("fleet.restart")
    assert not_installed.returncode == 2
    assert "not installed" in not_installed.stderr
    fe.inv_ok("fleet.install")
    unknown = fe.inv("fleet.restart", "--agent", "ghost")
    assert unknown.returncode == 2
    assert "unknown agent 'ghost'" in unknown.stderr
    empty_runtime = tmp_path / "no-manager"
    empty_runtime.mkdir(mode=0o700)
    no_manager = subprocess.run(
        [sys.executable, "-m", "invoke", "fleet.status", "--backend", "systemd"],
        cwd=REPO,
        env={**fe.env, "XDG_RUNTIME_DIR": str(empty_runtime)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert no_manager.returncode == 2
    assert "no systemd user manager reachable" in no_manager.stderr
    for result in (missing, not_installed, unknown, no_manager):
        assert len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.stderr


def agent_pids(fe: FleetEnv) -> dict[str, set[int]]:
    """Every live process carrying this fleet's agent marker, per agent, read from /proc
    by the test itself."""
    suffix = f"@{fe.home / 'fleet' / 'run' / 'tmux.sock'}".encode()
    found: dict[str, set[int]] = {}
    for entry in os.listdir("/proc"):
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        for variable in environ.split(b"\0"):
            if variable.startswith(b"FLEET_AGENT=") and variable.endswith(suffix) and state != b"Z":
                found.setdefault(variable[len(b"FLEET_AGENT=") : -len(suffix)].decode(), set()).add(int(entry))
    return found


@pytest.mark.parametrize("ending", ["restart", "stop", "install-after-dropin-removed"])
def test_an_agent_removed_from_the_roster_shows_in_status_and_is_ended(fleet_env: FleetEnv, ending: str) -> None:
    # Defect: an agent no longer in the roster was seen by no `status`; a restart started
    # it again (its unit still `Requires=` the holder), and once its drop-in was gone
    # `install` said "nothing to do" while its unit and processes kept running.
    fe = fleet_env
    started_fleet(fe, ["a1", "gone"])
    assert set(agent_pids(fe)) == {"a1", "gone"}
    fe.write_roster(roster(["a1"]))
    if ending.startswith("install"):
        dropin = fe.manager.unit_dir / f"{fe.units.agent('gone')}.d"
        for path in dropin.iterdir():
            path.unlink()
        dropin.rmdir()
        fe.manager.systemctl("daemon-reload")
        assert fe.manager.systemctl("is-active", fe.units.agent("gone")).stdout.strip() == "active"

    code, rows = status(fe)
    assert code == 0
    assert (rows["gone"]["in_roster"], rows["gone"]["process_state"]) == (False, "running")
    assert rows["gone"]["unit"] == fe.units.agent("gone")

    said = fe.inv_ok("fleet." + ending.split("-", maxsplit=1)[0])
    assert "gone" in said, said
    assert "gone" not in agent_pids(fe), "a process of the removed agent survived"
    assert fe.manager.systemctl("is-active", fe.units.agent("gone")).stdout.strip() != "active"
    code, rows = status(fe)
    assert "gone" not in rows
    assert code == (3 if ending == "stop" else 0)


# --------------------------------------------------------------------------- an agent that has to be killed

STUBBORN = """["sh", "-c", "trap '' HUP TERM; while :; do sleep 1; done"]"""


# A change to the unit after the start: the next restart starts the agent anew (its unit
# restarted), not in place.
ANEW = "    env: {CHANGED: '1'}\n"


def stubborn_and_calm(fe: FleetEnv, stubborn_fields: str = "") -> None:
    fe.write_roster(
        "version: 1\nagents:\n"
        f"  - name: stubborn\n    runtime: custom\n    command: {STUBBORN}\n{stubborn_fields}"
        f"  - name: calm\n    runtime: custom\n    command: {SLEEPER}\n"
    )
    fe.inv_ok("fleet.install")


def test_a_restart_queued_behind_a_slow_one_brings_the_stubborn_agent_up(fleet_env: FleetEnv) -> None:
    """Issue 19, defect 14, as reported: the first restart has to KILL `stubborn` (it
    ignores TERM and HUP; default stop timeout); a second restart, started while the first
    still runs, must not report the fresh generation as dead right after starting."""
    fe = fleet_env
    stubborn_and_calm(fe)
    fe.inv_ok("fleet.start")
    stubborn_and_calm(fe, ANEW)
    first = subprocess.Popen(
        [sys.executable, "-m", "invoke", "fleet.restart"],
        cwd=REPO, env=fe.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        eventually(lambda: status(fe)[1]["stubborn"]["state"] == "stopping", "the first restart is stopping stubborn")
        second = fe.inv("fleet.restart")  # waits for the first one's lock, then restarts again
    finally:
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, f"{out}\n{err}"
    assert second.returncode == 0, f"{second.stdout}\n{second.stderr}"
    assert "restarted 2 agent(s) (stubborn, calm)" in second.stdout  # in place: the first renewed the units
    code, rows = status(fe)
    assert code == 0
    assert {rows[n]["process_state"] for n in ("stubborn", "calm")} == {"running"}


def test_the_kill_that_ends_an_old_generation_is_not_read_as_the_new_one_dying(fleet_env: FleetEnv) -> None:
    """Why defect 14 happens, made deterministic: systemd SIGKILLs `stubborn` at its stop
    timeout, which leaves its unit `failed` (Result=timeout) with no window until its start
    job runs behind the new holder (here a holder that takes 2 s to start). Neither a
    restart nor a stop takes that for the agent failing."""
    fe = fleet_env
    stubborn_and_calm(fe)
    # systemd, not the engine, is the one that kills (the engine's own SIGKILL comes at the
    # roster's stop_timeout, 10 s); and the new holder is slow to come up.
    kill_sooner = fe.manager.unit_dir / f"{fe.units.agent('stubborn')}.d" / "90-test-kill-sooner.conf"
    kill_sooner.write_text("[Service]\nTimeoutStopSec=1\n")
    slow_holder = fe.manager.unit_dir / f"{fe.units.holder}.d" / "90-test-slow-start.conf"
    slow_holder.parent.mkdir()
    slow_holder.write_text("[Service]\nExecStartPre=/bin/sleep 2\n")
    fe.manager.systemctl("daemon-reload")
    try:
        fe.inv_ok("fleet.start")
        stubborn_and_calm(fe, ANEW)
        before = pids(fe)
        restarted = fe.inv("fleet.restart")
        assert restarted.returncode == 0, f"{restarted.stdout}\n{restarted.stderr}"
        result = fe.manager.systemctl("show", "-p", "NRestarts", "--value", fe.units.agent("stubborn"))
        assert result.stdout.strip() == "0"  # systemd never restarted it on its own
        assert pids(fe)["stubborn"] not in (None, before["stubborn"])
        assert fe.inv_ok("fleet.stop", "--agent", "stubborn").startswith("stopped 1 agent(s) (stubborn)")
        rows = status(fe)[1]
        assert rows["stubborn"]["process_state"] == "stopped"  # stopped as asked, though it took a SIGKILL
        assert rows["calm"]["process_state"] == "running"
    finally:
        kill_sooner.unlink()
        slow_holder.unlink()
        slow_holder.parent.rmdir()


# --------------------------------------------------------------------------- two homes, one manager

TWINS = ["twin1", "twin2"]


def witness(fe: FleetEnv) -> dict[str, tuple[int, list[int]]]:
    """Each agent's pane process, read from the home's own tmux server, and the agent it
    runs, read from /proc: what must not change while another home acts."""
    listed = fe.tmux("list-windows", "-t", "=fleet:", "-F", "#{window_name} #{pane_pid} #{pane_dead}")
    seen = {}
    for line in listed.stdout.splitlines():
        name, pane, dead = line.split()
        if name in TWINS and dead == "0":
            seen[name] = (int(pane), sorted(children(int(pane))))
    return seen


@pytest.fixture
def other_home(fleet_env: FleetEnv) -> Iterator[FleetEnv]:
    """A second home on the same manager as ``fleet_env``."""
    other = FleetEnv(fleet_env.home.parent / "other", fleet_env.manager)
    other.home.mkdir()
    yield other
    other.inv("fleet.uninstall")
    other.tmux("kill-server")


def test_two_homes_run_side_by_side_under_one_manager(fleet_env: FleetEnv, other_home: FleetEnv) -> None:
    """Issue 19 section 1: two homes with the same agent names under one user manager;
    nothing one home does (install, start, restart, stop --agent, stop, uninstall) touches
    the other's agents, and each home's units are its own."""
    mine, other = fleet_env, other_home
    assert mine.units.prefix != other.units.prefix
    started_fleet(mine, TWINS)
    kept = witness(mine)
    assert sorted(kept) == TWINS
    assert all(len(agents) == 1 for _, agents in kept.values()), kept
    started_fleet(other, TWINS)  # its install must not rewrite, nor its start restart, the first home's units
    assert witness(mine) == kept
    for action in (["fleet.restart"], ["fleet.restart", "--agent", "twin1"], ["fleet.stop", "--agent", "twin1"]):
        other.inv_ok(*action)
        assert witness(mine) == kept, action
    assert sorted(witness(other)) == ["twin2"]
    # and the other way round
    theirs = witness(other)
    mine.inv_ok("fleet.restart", "--agent", "twin2")
    assert witness(other) == theirs
    kept = witness(mine)
    for action in (["fleet.stop"], ["fleet.uninstall"]):
        other.inv_ok(*action)
        assert witness(mine) == kept, action
    assert not list(mine.manager.unit_dir.glob(f"{other.units.prefix}*"))
    code, rows = status(mine)
    assert code == 0
    assert {name: row["unit"] for name, row in rows.items()} == {name: mine.units.agent(name) for name in TWINS}
    for unit in [mine.units.holder, *(mine.units.agent(name) for name in TWINS)]:
        assert mine.manager.systemctl("is-active", unit).stdout.strip() == "active", unit


@dataclass
class DefaultHomeEnv(FleetEnv):
    """The default home (``~/.config/mosaic``) of a user whose ``HOME`` is ``user``."""

    user: Path

    @property
    def env(self) -> dict[str, str]:
        env = {key: value for key, value in self.manager.env.items() if key != "MOSAIC_HOME"}
        return {**env, "HOME": str(self.user)}

    @property
    def units(self) -> UnitNames:
        return DEFAULT_UNITS  # this process's HOME is not the user's


def test_the_default_home_keeps_the_reference_unit_names_beside_another_home(fleet_env: FleetEnv) -> None:
    """The default home's units are named exactly as before (and as the reference tool's);
    installing and uninstalling it leaves another home's units alone."""
    user = Path(tempfile.mkdtemp(prefix="fleet-user-"))  # short: the tmux socket lives under it
    default = DefaultHomeEnv(user / ".config" / "mosaic", fleet_env.manager, user)
    default.home.mkdir(parents=True)
    try:
        fleet_env.write_roster(roster(TWINS))
        fleet_env.inv_ok("fleet.install")
        theirs = sorted(path.name for path in fleet_env.manager.unit_dir.glob(f"{fleet_env.units.prefix}*"))
        assert len(theirs) == 5  # holder, template, watcher, two drop-in directories
        default.write_roster(roster(TWINS))
        installed = json.loads(default.inv_ok("fleet.install", "--json"))
        unit_dir = default.manager.unit_dir
        written = sorted(
            Path(path).relative_to(unit_dir).as_posix() for path in installed["written"] if unit_dir.as_posix() in path
        )
        assert written == [
            "app-mosaic.slice",
            "mosaic-agent@.service",
            "mosaic-agent@twin1.service.d/50-fleet-roster.conf",
            "mosaic-agent@twin2.service.d/50-fleet-roster.conf",
            "mosaic-fleet-watcher.service",
            "mosaic-tmux-holder.service",
        ]
        assert installed["enabled"] == [
            "mosaic-tmux-holder.service",
            "mosaic-agent@twin1.service",
            "mosaic-agent@twin2.service",
        ]
        assert status(default)[1]["twin1"]["unit"] == "mosaic-agent@twin1.service"
        assert default.inv("fleet.status").stdout.splitlines()[1].startswith("holder mosaic-tmux-holder.service: ")
        default.inv_ok("fleet.uninstall")
        assert not list(default.manager.unit_dir.glob("mosaic-agent@*"))
        assert not (default.manager.unit_dir / "app-mosaic.slice").exists()
        assert sorted(path.name for path in fleet_env.manager.unit_dir.glob(f"{fleet_env.units.prefix}*")) == theirs
    finally:
        default.inv("fleet.uninstall")
        shutil.rmtree(user, ignore_errors=True)
