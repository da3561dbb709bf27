"""`fleet top` benchmark: CPU per sample at 200 agents (issue 23: under 100 ms), and the
CPU-quota figure the test asserts only loosely.

One sample is what the live view does each second: the fleet's status (one tmux client,
one ``systemctl list-units``) and each agent's figures (its cgroup files on the systemd
backend; its marked process tree via psutil on plain tmux). The figure is CPU time (this
process and the clients it ran), not wall time.

  systemd   N agents with ``memory_max`` on a private user manager (cgroup figures)
  tmux      N agents on plain tmux (process-tree figures: one pass over /proc plus psutil)
  quota     one agent under ``cpu_quota: 50%`` burning CPU, measured over 5 s
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from benchmarks import record
from benchmarks.fleet_bench import _use_manager
from fleetlib.backend import open_fleet
from fleetlib.engine import Lifecycle
from fleetlib.paths import FleetPaths
from fleetlib.roster import load_roster
from fleetlib.systemd import UnitNames
from fleetlib.top import Top
from fleetlib.usage import Sampler
from tests.usermanager import UserManager, boot

TARGET_MS: Final = 100.0
SAMPLES: Final = 10


def _cpu_s() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _fleet(home: Path, roster: str, backend: str, manager: UserManager | None) -> Lifecycle:
    paths = FleetPaths.resolve(home)
    paths.roster.parent.mkdir(parents=True)
    paths.roster.write_text(roster)
    fleet = open_fleet(
        paths, load_roster(paths.roster), backend=backend, unit_dir=manager.unit_dir if manager else None, timeout=300
    )
    if backend == "systemd":
        fleet.install(enable=False)
    result = fleet.start()
    if not result.ok:
        raise RuntimeError(f"could not start the fleet on {backend}: {result.failures[:3]}")
    return fleet


def _roster(count: int, resources: str, command: str = '[sleep, "100000"]') -> str:
    body = "".join(f"  - name: a{i}\n    runtime: custom\n    command: {command}\n" for i in range(count))
    return f"version: 1\nresources: {resources}\nagents:\n" + body if resources else "version: 1\nagents:\n" + body


def _per_sample_ms(fleet: Lifecycle, samples: int) -> tuple[float, str]:
    top = Top(fleet, Sampler(UnitNames.for_home(fleet.paths.home), str(fleet.paths.tmux_socket)))
    rows = top.sample()  # warm: imports, first readings
    began = _cpu_s()
    for _ in range(samples):
        rows = top.sample()
    sources = sorted({str(row["source"]) for row in rows})
    return (_cpu_s() - began) / samples * 1000, ",".join(sources)


def _cleanup(fleet: Lifecycle | None, home: Path) -> None:
    if fleet is not None:
        fleet.stop()
        if fleet.primitives.name == "systemd":
            fleet.uninstall()
    subprocess.run(
        ["tmux", "-S", str(home / "fleet" / "run" / "tmux.sock"), "kill-server"], capture_output=True, check=False
    )
    shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def _running_fleet(roster: str, backend: str, manager: UserManager | None) -> Iterator[Lifecycle]:
    """A fleet of ``roster`` started on ``backend`` in a fresh temporary home; on exit (also
    when the start failed) it is stopped, its tmux server ended and the home removed."""
    home, fleet = Path(tempfile.mkdtemp(prefix="fleet-top-bench-")), None
    try:
        fleet = _fleet(home, roster, backend, manager)
        yield fleet
    finally:
        _cleanup(fleet, home)


def _report_per_sample(fleet: Lifecycle, count: int, backend: str) -> None:
    """Measure, record and print the CPU per sample of ``fleet`` (``count`` agents on ``backend``)."""
    ms, source = _per_sample_ms(fleet, SAMPLES)
    record.figure(f"top: CPU per sample, {count} agents, {backend}", "ms", [ms])
    print(f"  {backend:<9}{ms:7.1f} ms  ({source}; {'met' if ms < TARGET_MS else 'NOT met'})", flush=True)


def run(quick: bool = False) -> None:
    count = 50 if quick else 200
    booted = boot()
    print(f"fleet top: CPU per sample at N = {count} (mean of {SAMPLES}; target under {TARGET_MS:g} ms)")
    saved = dict(os.environ)
    try:
        if isinstance(booted, str):
            print(f"  systemd: skipped ({booted})")
        else:
            _use_manager(booted)
            with _running_fleet(_roster(count, "{memory_max: 256M}"), "systemd", booted) as fleet:
                _report_per_sample(fleet, count, "systemd")
            burner = _roster(1, "{cpu_quota: 50%}", '[sh, -c, "while :; do :; done"]')
            with _running_fleet(burner, "systemd", booted) as fleet:
                time.sleep(1)
                top = Top(fleet, Sampler(UnitNames.for_home(fleet.paths.home), str(fleet.paths.tmux_socket)))
                top.sample()
                time.sleep(5)
                (row,) = top.sample()
                print(f"  quota    cpu_quota 50%: {row['cpu_percent']} % of one core over 5 s", flush=True)
            os.environ.clear()
            os.environ.update(saved)
        # Plain tmux: no manager reachable, so the process-tree path.
        os.environ.pop("DBUS_SESSION_BUS_ADDRESS", None)
        runtime = Path(tempfile.mkdtemp(prefix="fleet-top-bench-run-"))
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
        try:
            with _running_fleet(_roster(count, ""), "tmux", None) as fleet:
                _report_per_sample(fleet, count, "tmux")
        finally:
            shutil.rmtree(runtime, ignore_errors=True)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        if not isinstance(booted, str):
            booted.stop()
