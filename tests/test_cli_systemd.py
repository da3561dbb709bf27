"""The command line's results as data on the systemd backend (a private user manager):
install/uninstall JSON, "nothing to do" on repeats, restart JSON, doctor's drift check."""

from __future__ import annotations

import json

import pytest

from tests.conftest import FleetEnv

pytestmark = [pytest.mark.systemd, pytest.mark.tmux]

INSTALL_KEYS = {
    "operation",
    "backend",
    "dry_run",
    "changed",
    "written",
    "removed",
    "enabled",
    "disabled",
    "reloaded",
    "notes",
    "stopped",
}


def roster(names: list[str]) -> str:
    body = "".join(f"  - name: {n}\n    runtime: custom\n    command: [sleep, '100000']\n" for n in names)
    return "version: 1\ntransport: tmux\nagents:\n" + body


def checks(env: FleetEnv) -> dict[str, dict[str, object]]:
    result = env.inv("fleet.doctor", "--json")
    assert result.returncode in (0, 1), result.stderr
    rows = json.loads(result.stdout)
    return {row["name"]: row for row in rows}


def test_install_and_uninstall_report_what_changed_and_repeats_do_nothing(fleet_env: FleetEnv) -> None:
    fleet_env.write_roster(roster(["a1", "a2"]))
    dry = json.loads(fleet_env.inv_ok("fleet.install", "--dry-run", "--json"))
    assert set(dry) == INSTALL_KEYS
    assert dry["dry_run"] is True
    assert dry["written"]
    assert not fleet_env.manager.unit_dir.joinpath(fleet_env.units.holder).exists()

    first = json.loads(fleet_env.inv_ok("fleet.install", "--json"))
    assert (first["operation"], first["backend"], first["changed"]) == ("install", "systemd", True)
    assert any(path.endswith(fleet_env.units.holder) for path in first["written"])
    assert fleet_env.inv_ok("fleet.install").startswith("nothing to do: ")
    assert json.loads(fleet_env.inv_ok("fleet.install", "--json"))["changed"] is False

    removed = json.loads(fleet_env.inv_ok("fleet.uninstall", "--json"))
    assert removed["changed"] is True
    assert removed["removed"]
    assert fleet_env.inv_ok("fleet.uninstall").startswith("nothing to do: ")


def test_restart_json_on_systemd_names_old_and_new_pids(fleet_env: FleetEnv) -> None:
    fleet_env.write_roster(roster(["r1", "r2"]))
    fleet_env.inv_ok("fleet.install")
    started = json.loads(fleet_env.inv_ok("fleet.start", "--json"))
    assert started["ok"] is True
    assert started["backend"] == "systemd"
    first = {a["name"]: a["new_pid"] for a in started["agents"]}
    shown = {row["name"]: row for row in json.loads(fleet_env.inv_ok("fleet.status", "--json"))}
    assert {name: row["pid"] for name, row in shown.items()} == first
    # Renewed in place: the supervisors stay, so the pids named are the agents' own.
    restarted = json.loads(fleet_env.inv_ok("fleet.restart", "--json"))
    assert {a["action"] for a in restarted["agents"]} == {"restarted"}
    assert restarted["holder"] == "unchanged"
    after = {row["name"]: row for row in json.loads(fleet_env.inv_ok("fleet.status", "--json"))}
    for agent in restarted["agents"]:
        assert agent["old_pid"] == shown[agent["name"]]["agent_pid"]
        assert isinstance(agent["new_pid"], int)
        assert agent["new_pid"] != agent["old_pid"]
        assert agent["new_pid"] == after[agent["name"]]["agent_pid"]
    text = fleet_env.inv_ok("fleet.restart")
    assert text.startswith("restarted 2 agent(s) (r1, r2) in "), text
    assert fleet_env.inv_ok("fleet.start").startswith("nothing to do: 2 agent(s) (r1, r2) already running")


def test_doctor_finds_drifted_units_and_install_repairs_them(fleet_env: FleetEnv) -> None:
    fleet_env.write_roster(roster(["d1"]))
    fleet_env.inv_ok("fleet.install")
    found = checks(fleet_env)
    assert found["user manager"]["ok"] is True
    assert found["units"]["ok"] is True, found["units"]
    assert found["commands"]["ok"] is True, found["commands"]
    assert "d1: on the PATH its installed unit gives it" in str(found["commands"]["detail"])

    dropin = next(fleet_env.manager.unit_dir.glob(f"{fleet_env.units.agent('d1')}.d/*.conf"))
    dropin.write_text(dropin.read_text() + "# hand edit\n")
    drifted = checks(fleet_env)["units"]
    assert drifted["ok"] is False
    assert f"differ from the roster: {dropin.parent.name}/{dropin.name}" in str(drifted["detail"])
    assert "inv fleet.install" in str(drifted["fix"])
    text = fleet_env.inv("fleet.doctor")
    assert text.returncode == 1
    assert "FAIL  units" in text.stdout

    fleet_env.inv_ok("fleet.install")
    assert checks(fleet_env)["units"]["ok"] is True
