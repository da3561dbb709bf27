"""Per-agent limits on the real thing: the private user manager (systemd backend, and the
tmux backend's scopes) and plain tmux without one; `fleet top` figures against the
cgroup's own files."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import FleetEnv, eventually, run_inv

pytestmark = pytest.mark.systemd

SLEEPER = '[sleep, "100000"]'
# Starts after the start grace, then takes 1 MiB more (touched) every few milliseconds.
HOG = json.dumps(
    [
        sys.executable,
        "-c",
        "import time\nb = []\ntime.sleep(2)\nwhile True:\n b.append(b'x' * (1 << 20))\n time.sleep(0.002)",
    ]
)
BURNER = '[sh, -c, "while :; do :; done"]'
# Forks sleepers until refused; says so and keeps trying (a fork loop that never stops on its own).
FORKER = json.dumps(
    [
        sys.executable,
        "-c",
        "import os, time\nwhile True:\n try:\n  if os.fork() == 0:\n   time.sleep(100000)\n   os._exit(0)\n"
        " except OSError as error:\n  print('fork refused:', error.strerror, flush=True)\n  time.sleep(0.5)",
    ]
)


def agent(name: str, command: str, resources: str = "") -> str:
    text = f"  - name: {name}\n    runtime: custom\n    command: {command}\n"
    return text + (f"    resources: {resources}\n" if resources else "")


def roster(*agents: str, top: str = "") -> str:
    return f"version: 1\ntransport: tmux\n{top}agents:\n" + "".join(agents)


def rows(fe: FleetEnv, backend: str = "auto") -> dict[str, dict[str, object]]:
    result = fe.inv("fleet.status", "--json", "--backend", backend)
    assert result.returncode in (0, 3), result.stderr
    return {row["name"]: row for row in json.loads(result.stdout)}


def cgroup_file(fe: FleetEnv, name: str, controller: str, unified: str, v1: str) -> Path:
    """One of the agent's unit's cgroup files: cgroup2 when the controller is there, else v1."""
    group = fe.manager.systemctl("show", fe.units.agent(name), "-p", "ControlGroup", "--value").stdout.strip()
    assert group, f"{name} has no cgroup"
    for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        if (root / group.lstrip("/") / unified).exists():
            return root / group.lstrip("/") / unified
    return Path("/sys/fs/cgroup") / controller / group.lstrip("/") / v1


def memory_limit(fe: FleetEnv, name: str) -> int:
    return int(cgroup_file(fe, name, "memory", "memory.max", "memory.limit_in_bytes").read_text())


def usage_usec(fe: FleetEnv, name: str) -> int:
    group = fe.manager.systemctl("show", fe.units.agent(name), "-p", "ControlGroup", "--value").stdout.strip()
    for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        stat = root / group.lstrip("/") / "cpu.stat"
        if stat.exists():
            return int(dict(line.split() for line in stat.read_text().splitlines())["usage_usec"])
    raise AssertionError("no cpu.stat")


def test_memory_hog_is_killed_said_out_of_memory_restarted_with_pacing_neighbour_untouched(
    fleet_env: FleetEnv,
) -> None:
    fe = fleet_env
    told = fe.home / "told.log"
    notify = json.dumps(["sh", "-c", f'echo "$FLEET_NEW_STATE: $FLEET_REASON" >> {told}'])
    hog = agent("hog", HOG, "{memory_max: 64M}") + f"    on_state_change: {notify}\n"
    fe.write_roster(roster(hog, agent("calm", SLEEPER)))
    fe.inv_ok("fleet.install")
    fe.inv_ok("fleet.start")
    calm = rows(fe)["calm"]["pid"]
    seen: list[dict[str, object]] = []
    eventually(lambda: bool(seen.append(rows(fe)["hog"]) or seen[-1]["reason"]), "the hog to be killed", limit=40)
    row = seen[-1]
    assert row["reason"] == "out of memory (memory_max 64M)"
    assert row["process_state"] in ("restarting", "running")
    log = (fe.home / "fleet" / "logs" / "hog.log").read_text(errors="replace")
    footer = next(line for line in log.splitlines() if "out of memory" in line)
    assert "fleet: agent hog exited with status 137: out of memory (memory_max 64M); restarting in 1s" in footer
    said = ("hog: restarting: out of memory (memory_max 64M)", "hog: failed: out of memory (memory_max 64M)")
    eventually(lambda: any(line in said for line in fe.inv("fleet.status").stdout.splitlines()), "status to say so")
    eventually(told.exists, "the notification")
    assert told.read_text().splitlines()[0] == "exited: out of memory (memory_max 64M)"
    assert rows(fe)["calm"]["pid"] == calm
    assert rows(fe)["calm"]["process_state"] == "running"


def test_cpu_quota_tasks_max_and_top_agree_with_the_cgroup(fleet_env: FleetEnv) -> None:
    fe = fleet_env
    fe.write_roster(
        roster(
            agent("burn", BURNER, "{cpu_quota: 50%}"),
            agent("forks", FORKER, "{tasks_max: 20}"),
            agent("calm", SLEEPER),
            top="resources: {memory_max: 256M}\n",
        )
    )
    fe.inv_ok("fleet.install")
    fe.inv_ok("fleet.start")
    calm = rows(fe)["calm"]["pid"]
    # CPU: at most half a core, measured over a couple of seconds (the precise figure is the benchmark's).
    before, started = usage_usec(fe, "burn"), time.monotonic()
    time.sleep(2)
    cores = (usage_usec(fe, "burn") - before) / 1e6 / (time.monotonic() - started)
    assert 0.02 < cores < 0.75, cores
    # Tasks: the fork loop stops at the limit; the others are untouched.
    tasks = cgroup_file(fe, "forks", "pids", "pids.current", "pids.current")
    eventually(lambda: int(tasks.read_text()) >= 19, "the fork loop to reach its limit")
    assert int(tasks.read_text()) <= 20
    assert "fork refused: Resource temporarily unavailable" in (fe.home / "fleet" / "logs" / "forks.log").read_text(
        errors="replace"
    )
    assert rows(fe)["calm"]["pid"] == calm
    # `fleet top --once --json` reads the same files.
    result = fe.inv("fleet.top", "--once", "--json")
    assert result.returncode == 0, result.stderr
    top = {row["name"]: row for row in json.loads(result.stdout)}
    assert top["forks"]["tasks_max"] == 20
    assert top["forks"]["tasks"] == int(tasks.read_text())
    assert top["calm"]["memory_max"] == memory_limit(fe, "calm") == 256 << 20
    assert top["burn"]["cpu_percent"] is not None
    assert top["burn"]["cpu_percent"] < 75
    memory = cgroup_file(fe, "calm", "memory", "memory.current", "memory.usage_in_bytes")
    assert abs(top["calm"]["memory_bytes"] - int(memory.read_text())) < 4 << 20
    assert top["calm"]["source"] == "cgroup"
    assert {"state", "restarts", "uptime_s", "last_output_at", "memory_peak"} <= set(top["calm"])


def test_changed_limit_applies_at_install_without_a_restart(fleet_env: FleetEnv) -> None:
    fe = fleet_env
    fe.write_roster(roster(agent("a1", SLEEPER, "{memory_max: 64M}")))
    fe.inv_ok("fleet.install")
    fe.inv_ok("fleet.start")
    pid = rows(fe)["a1"]["pid"]
    assert memory_limit(fe, "a1") == 64 << 20
    fe.write_roster(roster(agent("a1", SLEEPER, "{memory_max: 128M}")))
    fe.inv_ok("fleet.install")
    assert memory_limit(fe, "a1") == 128 << 20
    assert rows(fe)["a1"]["pid"] == pid
    doctor = json.loads(fe.inv("fleet.doctor", "--json").stdout)
    assert next(check for check in doctor if check["name"] == "units")["ok"]


def test_tmux_backend_refuses_limits_without_a_user_manager(tmp_path: Path) -> None:
    home, runtime = tmp_path / "home", tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    path = home / "fleet" / "roster.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(roster(agent("a1", SLEEPER, "{memory_max: 1G}")))
    env = {k: v for k, v in os.environ.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
    env |= {"MOSAIC_HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)}
    result = run_inv(["fleet.start"], env)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {path}:7: agents[0].resources: the tmux backend enforces limits")
    assert not (home / "fleet" / "run" / "tmux.sock").exists()  # nothing started


def test_tmux_backend_runs_limited_agents_in_scopes_of_the_user_manager(fleet_env: FleetEnv) -> None:
    fe = fleet_env
    fe.write_roster(roster(agent("hog", HOG, "{memory_max: 64M}"), agent("calm", SLEEPER, "{memory_max: 256M}")))
    fe.inv_ok("fleet.start", "--backend", "tmux")
    pid = rows(fe, "tmux")["calm"]["pid"]
    assert isinstance(pid, int)
    group = next(line for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines() if line.startswith("0::"))
    scope = group.rpartition("/")[2]
    assert fe.units.is_scope_of(scope, "calm"), group
    assert f"/{fe.units.slice}/" in group
    shown = fe.manager.systemctl("show", scope, "-p", "MemoryMax", "--value").stdout.strip()
    assert shown == str(256 << 20)
    seen: list[dict[str, object]] = []
    eventually(lambda: bool(seen.append(rows(fe, "tmux")["hog"]) or seen[-1]["reason"]), "the hog's kill", limit=40)
    assert seen[-1]["reason"] == "out of memory (memory_max 64M)"
    assert rows(fe, "tmux")["calm"]["pid"] == pid
    top = json.loads(fe.inv_ok("fleet.top", "--once", "--json", "--backend", "tmux"))
    assert {row["name"]: row["source"] for row in top}["calm"] == "cgroup"
    fe.inv_ok("fleet.stop", "--backend", "tmux")
