"""Several-hosts benchmark: three real sshd hosts (tests/sshd_hosts.py) x 50 agents each.

Measured in one run, through the real ``fleet`` command on the controller:

  status      ``fleet status --json`` of all 3 x 50 agents (one SSH connection per host,
              in parallel; each host runs its own ``fleet status --json``). Target: 1 s.
  restart     per round, each host alone (a controller roster naming only that host) and
              then the whole fleet across the three hosts; the figure is the whole
              restart against the slowest single host of the same round. Target: 1.3x.

Needs root and openssh-server (``scripts/setup --tests``); bootstrapping the hosts (a
wheel build and three installs) happens first and is not timed. On this 2-core machine all
three "hosts" share the same CPUs, so a parallel restart competes with itself for CPU.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

from benchmarks import record
from benchmarks.tmux_fleet import fleet_argv
from tests.sshd_hosts import SshHosts, start_hosts, unavailable

HOSTS: Final = ("h1", "h2", "h3")
AGENTS_PER_HOST: Final = 50
STATUS_TARGET_S: Final = 1.0
RESTART_TARGET: Final = 1.3


def _agents(hosts: tuple[str, ...]) -> str:
    return "".join(
        f"  - name: {host}a{index:02d}\n    runtime: shell\n    host: {host}\n"
        for host in hosts
        for index in range(AGENTS_PER_HOST)
    )


def _roster(hosts: SshHosts, names: tuple[str, ...]) -> str:
    block = hosts.hosts_yaml().splitlines(keepends=True)
    kept = [block[0]]
    for name in names:  # each host is 4 lines: name, ssh, identity_file, backend
        index = next(i for i, line in enumerate(block) if line == f"  {name}:\n")
        kept += block[index : index + 4]
    return "version: 1\n" + "".join(kept) + "agents:\n" + _agents(names)


def _timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 3):
        raise RuntimeError(f"{' '.join(argv[1:3])} failed ({done.returncode}): {done.stderr.strip()}")
    return elapsed


def run(quick: bool = False) -> float:
    """Print the figures; return the whole-fleet restart over the slowest single host."""
    why = unavailable()
    if why:
        print(f"hosts benchmark skipped: {why}")
        return float("nan")
    fleet = fleet_argv()
    rounds = 2 if quick else 4
    status_runs = 3 if quick else 7
    hosts = start_hosts(len(HOSTS))
    try:
        with tempfile.TemporaryDirectory(prefix="fleet-hosts-bench-") as tmp:
            home = Path(tmp)
            env = {**os.environ, "INVOKE_FLEET_KNOWN_HOSTS": str(hosts.known_hosts)}
            rosters = {name: home / f"roster-{name}.yaml" for name in HOSTS}
            whole = home / "roster.yaml"
            whole.write_text(_roster(hosts, HOSTS))
            for name, path in rosters.items():
                path.write_text(_roster(hosts, (name,)))

            def fleet_on(roster: Path, *args: str) -> float:
                return _timed([*fleet, *args, "--home", str(home), "--roster", str(roster)], env)

            print(f"several hosts: {len(HOSTS)} sshd hosts x {AGENTS_PER_HOST} shell agents (tmux backend)")
            print(f"  bootstrap (not a target)                 {fleet_on(whole, 'hosts.bootstrap'):>7.2f} s")
            fleet_on(whole, "install")
            print(f"  start, all hosts (not a target)          {fleet_on(whole, 'start', '--timeout', '300'):>7.2f} s")
            status = [fleet_on(whole, "status", "--json") for _ in range(status_runs)]
            status_s = statistics.median(status)
            record.figure(f"hosts: status, {len(HOSTS) * AGENTS_PER_HOST} agents", "s", status)
            verdict = "within" if status_s <= STATUS_TARGET_S else "OVER"
            print(
                f"  status, {len(HOSTS) * AGENTS_PER_HOST} agents (median of {status_runs})"
                f"          {status_s:>7.2f} s  ({verdict} the {STATUS_TARGET_S:g} s target)"
            )
            ratios: list[float] = []
            for number in range(rounds):
                singles = {name: fleet_on(path, "restart") for name, path in rosters.items()}
                together = fleet_on(whole, "restart")
                slowest = max(singles.values())
                ratios.append(together / slowest)
                alone = ", ".join(f"{name} {seconds:.2f}" for name, seconds in singles.items())
                print(
                    f"  round {number + 1}: restart alone {alone} s; all hosts {together:.2f} s"
                    f" = {together / slowest:.2f}x the slowest"
                )
            ratio = statistics.median(ratios)
            record.figure("hosts: restart all hosts / slowest host alone", "x", ratios)
            verdict = "within" if ratio <= RESTART_TARGET else "OVER"
            print(
                f"  restart, all hosts / slowest host alone (median of {rounds})"
                f" {ratio:>5.2f}x  ({verdict} the {RESTART_TARGET:g}x target)"
            )
            fleet_on(whole, "stop")
            return ratio
    finally:
        hosts.close()


if __name__ == "__main__":
    run(quick="--quick" in sys.argv)
