"""A restart in place under systemd (fleetlib/gate.py), against a real user manager.

A restart renews a running agent whose supervisor runs what its installed unit says: the
supervisor, its window and its unit stay, and only the agent's run is replaced. Each test
checks from outside, with witnesses the code under test does not write: the manager's
own invocation ids, tmux's window ids, the agents' own start logs and ``/proc``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
from pathlib import Path

import pytest

from tests.conftest import FleetEnv, eventually
from tests.test_fleet_systemd import roster, started_fleet, windows

pytestmark = pytest.mark.systemd


def rows(fe: FleetEnv) -> dict[str, dict[str, object]]:
    result = fe.inv("fleet.status", "--json")
    assert result.returncode in (0, 3), result.stderr
    return {row["name"]: row for row in json.loads(result.stdout)}


def invocation(fe: FleetEnv, name: str) -> str:
    """The manager's id of the unit's current run (a new one per start of the unit)."""
    return fe.manager.systemctl("show", "-p", "InvocationID", "--value", fe.units.agent(name)).stdout.strip()


def window_ids(fe: FleetEnv) -> dict[str, str]:
    listed = fe.tmux("list-windows", "-t", "=fleet:", "-F", "#{window_name} #{window_id}").stdout.split("\n")
    return dict(line.split() for line in listed if line)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state != b"Z"


def at_gate(pid: int) -> bool:
    """Whether ``pid`` sleeps in the kernel's FIFO open: its gate's (read by the test from /proc)."""
    try:
        return Path(f"/proc/{pid}/wchan").read_text() == "wait_for_partner"
    except OSError:
        return False


def stranded_at_gate(fe: FleetEnv, name: str) -> int:
    """Do what a restart killed half-way leaves: the gate closed, the supervisor told, its
    agent ended; returns the supervisor, waiting at its gate."""
    row = rows(fe)[name]
    supervisor, agent = int(str(row["pid"])), int(str(row["agent_pid"]))
    os.mkfifo(fe.home / "fleet" / "run" / f"{name}.gate", 0o600)
    os.kill(supervisor, signal.SIGUSR1)
    os.kill(agent, signal.SIGTERM)
    eventually(lambda: at_gate(supervisor), "the supervisor waits at its gate")
    assert not alive(agent)
    return supervisor


def logging_command(log: Path) -> str:
    return f"[sh, -c, 'echo $$ >> {log}/$0; exec sleep 100000']"


def test_a_restart_renews_running_agents_in_place(fleet_env: FleetEnv, tmp_path: Path) -> None:
    fe = fleet_env
    log = tmp_path / "starts"
    log.mkdir()
    names = ["n1", "n2", "n3"]
    started_fleet(fe, names, logging_command(log))
    before, units, ids = rows(fe), {n: invocation(fe, n) for n in names}, window_ids(fe)
    old_agents = {n: int(str(before[n]["agent_pid"])) for n in names}

    result = json.loads(fe.inv_ok("fleet.restart", "--json"))

    assert result["ok"] is True
    assert result["holder"] == "unchanged"
    after = rows(fe)
    for agent in result["agents"]:
        name = agent["name"]
        assert agent["action"] == "restarted"
        assert agent["old_pid"] == old_agents[name]
        assert agent["new_pid"] == after[name]["agent_pid"] != old_agents[name]
        assert not alive(old_agents[name])
        assert after[name]["pid"] == before[name]["pid"]  # the same supervisor
        assert after[name]["process_state"] == "running"
        # Witnesses of their own: both runs logged by the agents, one unit run, one window.
        logged = [int(line) for line in (log / "sh").read_text().split()]
        assert old_agents[name] in logged
        assert after[name]["agent_pid"] in logged
        assert invocation(fe, name) == units[name]
    assert window_ids(fe) == ids
    assert sorted(windows(fe)) == ["_holder", *names]
    assert len((log / "sh").read_text().split()) == 2 * len(names)


def test_a_renewed_agents_old_run_is_gone_before_its_new_run_starts(fleet_env: FleetEnv, tmp_path: Path) -> None:
    """A setsid child that ignores TERM and HUP outlives its agent: the new run starts only
    after the stop timeout's KILL ended it (the new run itself looks for it first)."""
    fe = fleet_env
    pidfile, log = tmp_path / "child.pid", tmp_path / "events"
    script = (
        f"for p in $(cat {pidfile} 2>/dev/null); do kill -0 $p 2>/dev/null && echo old-alive-$p >> {log}; done; "
        f"echo start >> {log}; setsid sh -c 'trap \"\" TERM HUP; while :; do sleep 0.1; done' & "
        f"echo $! > {pidfile}; exec sleep 100000"
    )
    fe.write_roster(
        "version: 1\nagents:\n  - name: stubborn\n    runtime: custom\n    stop_timeout: 1\n"
        f"    command: [sh, -c, {json.dumps(script)}]\n"
    )
    fe.inv_ok("fleet.install")
    fe.inv_ok("fleet.start")
    child = int(pidfile.read_text())
    supervisor = rows(fe)["stubborn"]["pid"]

    result = json.loads(fe.inv_ok("fleet.restart", "--json"))

    assert result["ok"] is True, result
    assert rows(fe)["stubborn"]["pid"] == supervisor  # renewed in place
    assert log.read_text().split() == ["start", "start"]  # never "old-alive-<pid>"
    assert not alive(child)


def test_an_agent_an_install_changed_is_started_anew(fleet_env: FleetEnv, tmp_path: Path) -> None:
    fe = fleet_env
    out = tmp_path / "seen"
    out.mkdir()
    # Each agent writes what it was given to a file of its own name (its marker's first part).
    command = f"[sh, -c, 'echo \"$FLEET_TEST\" > {out}/${{FLEET_AGENT%%@*}}; exec sleep 100000']"
    started_fleet(fe, ["c1", "c2"], command)
    before = rows(fe)
    fe.write_roster(roster(["c1", "c2"], command) + "    env: {FLEET_TEST: changed}\n")
    fe.inv_ok("fleet.install")

    text = fe.inv_ok("fleet.restart")

    # c2's unit changed, so the whole fleet restarts anew, its holder too.
    assert text.startswith("restarted 2 agent(s) (c1, c2) and the holder in "), text
    after = rows(fe)
    assert all(after[n]["pid"] != before[n]["pid"] for n in ("c1", "c2"))
    assert (out / "c2").read_text().strip() == "changed"

    fe.write_roster(roster(["c1", "c2"], command) + "    env: {FLEET_TEST: again}\n")
    fe.inv_ok("fleet.install")
    fe.inv_ok("fleet.restart", "--agent", "c2")
    assert rows(fe)["c2"]["pid"] != after["c2"]["pid"]  # a new supervisor: its unit changed
    assert (out / "c2").read_text().strip() == "again"
    fe.inv_ok("fleet.restart", "--agent", "c1")
    assert rows(fe)["c1"]["pid"] == after["c1"]["pid"]  # unchanged: renewed in place


def test_a_supervisor_whose_script_was_replaced_is_not_renewed(fleet_env: FleetEnv) -> None:
    """A running supervisor reads the script it started with; an upgrade replaces the file, and
    a supervisor of the old script (which may not know the renewal signal) is started anew."""
    fe = fleet_env
    started_fleet(fe, ["u1"])
    before = rows(fe)["u1"]["pid"]
    script = fe.home / "fleet" / "run" / "supervise.sh"
    copy = script.with_name("copy.sh")
    shutil.copy2(script, copy)
    copy.replace(script)  # the same text, another file

    fe.inv_ok("fleet.restart", "--agent", "u1")

    assert rows(fe)["u1"]["pid"] != before


def test_an_agent_that_dies_once_renewed_fails_the_restart(fleet_env: FleetEnv, tmp_path: Path) -> None:
    fe = fleet_env
    flag = tmp_path / "ran-once"
    command = f"[sh, -c, 'if [ -e {flag} ]; then echo second-run-dies; exit 3; fi; touch {flag}; exec sleep 100000']"
    started_fleet(fe, ["d1"], command)

    result = fe.inv("fleet.restart", "--json")

    assert result.returncode == 1, result.stderr
    (outcome,) = json.loads(result.stdout)["agents"]
    assert outcome["action"] == "failed"
    assert outcome["exit_status"] == 3
    assert "second-run-dies" in outcome["error"]


def test_a_supervisor_waiting_at_its_gate_stops_at_once(fleet_env: FleetEnv) -> None:
    """A restart killed between ending a run and opening the gate leaves the supervisor
    waiting there: a stop still ends it, and the next restart starts the agent anew."""
    fe = fleet_env
    # w2's stop timeout outlasts the test's own timeout: only TERM ending the wait stops it.
    fe.write_roster(
        roster(["w1"]) + "  - name: w2\n    runtime: custom\n    stop_timeout: 200\n    command: [sleep, '100000']\n"
    )
    fe.inv_ok("fleet.install")
    fe.inv_ok("fleet.start")
    supervisor = stranded_at_gate(fe, "w1")
    assert rows(fe)["w1"]["agent_pid"] is None

    restarted = json.loads(fe.inv_ok("fleet.restart", "--agent", "w1", "--json"))
    assert restarted["ok"] is True
    assert isinstance(restarted["agents"][0]["new_pid"], int)
    assert not alive(supervisor)  # not current (no agent runs): its unit was started anew

    supervisor = stranded_at_gate(fe, "w2")
    stopped = json.loads(fe.inv_ok("fleet.stop", "--agent", "w2", "--json"))
    assert stopped["ok"] is True
    assert not alive(supervisor)


def test_a_renewal_ends_a_child_that_dropped_the_marker(fleet_env: FleetEnv, tmp_path: Path) -> None:
    """`env -i` takes the marker away, never the unit's cgroup: the old run's child that
    also ignores TERM and HUP is gone once the restart returns (killed at the stop timeout)."""
    fe = fleet_env
    pidfile = tmp_path / "child.pid"
    child = f"trap '' TERM HUP; echo $$ >> {pidfile}; while :; do /bin/sleep 0.1; done"
    script = f"env -i /bin/sh -c {shlex.quote(child)} & exec sleep 100000"
    fe.write_roster(
        "version: 1\nagents:\n  - name: hidden\n    runtime: custom\n    stop_timeout: 1\n"
        f"    command: [sh, -c, {json.dumps(script)}]\n"
    )
    fe.inv_ok("fleet.install")
    fe.inv_ok("fleet.start")
    eventually(lambda: pidfile.exists() and pidfile.read_text().strip() != "", "the child wrote its pid")
    (first,) = (int(word) for word in pidfile.read_text().split())
    assert "FLEET_AGENT" not in Path(f"/proc/{first}/environ").read_text(errors="replace")
    supervisor = rows(fe)["hidden"]["pid"]

    fe.inv_ok("fleet.restart")

    assert rows(fe)["hidden"]["pid"] == supervisor  # renewed in place
    assert not alive(first)
    eventually(lambda: len(pidfile.read_text().split()) == 2, "the new run started its own child")


def test_a_dry_run_restart_says_what_it_would_renew_and_changes_nothing(fleet_env: FleetEnv) -> None:
    fe = fleet_env
    started_fleet(fe, ["y1", "y2"])
    before = rows(fe)

    result = json.loads(fe.inv_ok("fleet.restart", "--dry-run", "--json"))

    assert result["dry_run"] is True
    assert [a["action"] for a in result["agents"]] == ["would restart", "would restart"]
    after = rows(fe)
    for name in ("y1", "y2"):
        assert (after[name]["pid"], after[name]["agent_pid"]) == (before[name]["pid"], before[name]["agent_pid"])
    assert not list((fe.home / "fleet" / "run").glob("*.gate"))
    text = fe.inv_ok("fleet.restart", "--dry-run")
    told = [line for line in text.splitlines() if line.startswith("would send SIGUSR1 to pid(s) ")]
    assert len(told) == 1, text
    assert set(told[0].split()[5:]) == {str(before["y1"]["pid"]), str(before["y2"]["pid"])}
    assert rows(fe)["y1"]["agent_pid"] == before["y1"]["agent_pid"]


def test_start_runs_the_agent_of_a_supervisor_left_waiting_at_its_gate(fleet_env: FleetEnv) -> None:
    """A restart killed half-way leaves a supervisor at its gate: `start` does not take that
    agent for running (nothing runs), it lets the same supervisor run it."""
    fe = fleet_env
    started_fleet(fe, ["g1", "g2"])
    other = rows(fe)["g2"]["agent_pid"]
    supervisor = stranded_at_gate(fe, "g1")

    result = json.loads(fe.inv_ok("fleet.start", "--json"))

    outcomes = {agent["name"]: agent for agent in result["agents"]}
    assert outcomes["g1"]["action"] == "started"
    assert outcomes["g2"]["action"] == "unchanged"
    after = rows(fe)
    assert after["g1"]["pid"] == supervisor
    assert isinstance(after["g1"]["agent_pid"], int)
    assert alive(int(str(after["g1"]["agent_pid"])))
    assert after["g2"]["agent_pid"] == other
    assert not at_gate(supervisor)
