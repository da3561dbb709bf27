"""Start-up of the `fleet` command: `fleet status` with 200 running agents against a bare
`fleet --list` (same program, same imports, no fleet work), median of interleaved runs.

The fleet runs on the tmux backend (private home, private runtime dir, no session bus, so
no user manager answers and `auto` picks tmux): what `status` adds over `--list` is the
backend probe, loading the 200-agent roster and one tmux call; each agent's state (idle,
working, ...) is the watcher's record on its window, read by that same call. The target is
at most 50 ms more than `fleet --list` (100 ms with states). `python -c pass` is shown for
scale. A second round measures `status` with no watcher records (the watcher stopped and
its records removed), where status reads all 200 screens itself, in one tmux client.

`fleet --version` and `fleet --list` are measured against `python -c "import invoke"` (the
floor of any Invoke program): each within 30 ms of it. Wall-clock figures on a busy machine
are noisy, so the same commands are also measured by the CPU time they use (user + system,
with their child processes: the load of other processes hardly changes it) and with
`python -X importtime` (the summed import time of each); medians of the runs. Every command runs
with bytecode caches (as an installed package has them), whatever PYTHONDONTWRITEBYTECODE
says in the caller's environment: compiling the sources on each run is not start-up.
"""

from __future__ import annotations

import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

from benchmarks import record
from benchmarks.tmux_fleet import tmux_fleet

AGENTS: Final = 200
# Agents started per `fleet start`: the tmux backend sends one command sequence per start,
# and tmux refuses a sequence over its message size ("command too long") at 200 agents.
START_BATCH: Final = 5
RUNS: Final = 20
TARGET_MS: Final = 50.0
STATES_TARGET_MS: Final = 100.0  # status with every agent's state
IMPORT_TARGET_MS: Final = 30.0  # `fleet --version` / `--list` over `python -c "import invoke"` (issue 22)
# A top-level line of `python -X importtime`: "import time: <self us> | <cumulative us> | <name>"
_TOP_IMPORT: Final = re.compile(r"^import time:\s+\d+ \|\s+(\d+) \| (\S.*)$")


def _start(fleet: list[str], roster: Path, env: dict[str, str]) -> None:
    """Start the 200 agents by growing the roster a batch at a time (start starts only what
    is missing)."""
    for count in range(START_BATCH, AGENTS + START_BATCH, START_BATCH):
        roster.write_text(_roster(min(count, AGENTS)))
        _seconds([*fleet, "start", "--timeout", "300"], env)


def _roster(count: int) -> str:
    """Agents of runtime ``shell`` (screen patterns, so a status without watcher records
    reads every screen) running ``sleep``."""
    body = "".join(f"  - name: agent{i}\n    runtime: shell\n    command: [sleep, '100000']\n" for i in range(count))
    return "version: 1\ntransport: tmux\nagents:\n" + body


def _seconds(argv: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)) -> float:
    began = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - began
    if done.returncode not in ok:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode().strip()}")
    return elapsed


def _forget_states(socket: Path, env: dict[str, str]) -> None:
    """Stop the watcher and remove its records, so status reads every screen itself."""
    tmux = ["tmux", "-S", str(socket)]
    subprocess.run([*tmux, "kill-window", "-t", "=fleet:=_watcher"], env=env, capture_output=True, check=False)
    names = subprocess.run([*tmux, "list-windows", "-t", "=fleet:", "-F", "#{window_id}"], env=env,
                           capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    commands: list[str] = []
    for window in names:
        commands += ["set-option", "-wu", "-t", window, "@fleet-activity", ";"]
    subprocess.run([*tmux, *commands[:-1]], env=env, capture_output=True, check=True)


def _interleaved(argvs: list[list[str]], env: dict[str, str], runs: int) -> tuple[list[float], list[float]]:
    """Timings of two commands, interleaved, alternating which goes first so drift hits
    both alike."""
    first: list[float] = []
    second: list[float] = []
    for index in range(runs):
        pair = [(first, argvs[0]), (second, argvs[1])]
        for samples, argv in pair if index % 2 == 0 else pair[::-1]:
            samples.append(_seconds(argv, env))
    return first, second


def import_ms(argv: list[str], env: dict[str, str]) -> float:
    """Milliseconds ``argv`` (a Python command) spends importing, by ``-X importtime``:
    the sum of the cumulative times of its top-level imports (each nested import is inside one)."""
    python, *rest = argv
    done = subprocess.run(
        [python, "-X", "importtime", *rest], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    total_us = sum(int(m.group(1)) for m in map(_TOP_IMPORT.match, done.stderr.decode().splitlines()) if m)
    return total_us / 1000


def cpu_ms(argv: list[str], env: dict[str, str]) -> float:
    """Milliseconds of CPU (user + system) ``argv`` and the children it waited for used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    _seconds(argv, env, ok=(0, 3))  # status: 3 when some agent is not up
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000


def _figures(fleet: list[str], env: dict[str, str], runs: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """CPU time and ``-X importtime`` totals of `import invoke` and of each fleet command
    (interleaved runs)."""
    commands = {
        "python -c 'import invoke'": [sys.executable, "-c", "import invoke"],
        "fleet --version": [*fleet, "--version"],
        "fleet --list": [*fleet, "--list"],
        "fleet status": [*fleet, "status"],
    }
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            cpu[name].append(cpu_ms(argv, env))
    return cpu, _import_figures(commands, env, runs)


def _import_figures(commands: dict[str, list[str]], env: dict[str, str], runs: int) -> dict[str, list[float]]:
    """``-X importtime`` totals of ``commands`` (interleaved runs)."""
    if any(argv[0] != sys.executable for argv in commands.values()):  # a console script: run it by Python
        commands = {
            name: argv if argv[0] == sys.executable else [sys.executable, *argv] for name, argv in commands.items()
        }
    figures: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            figures[name].append(import_ms(argv, env))
    return figures


def _pairs(fleet: list[str], env: dict[str, str], runs: int) -> tuple[list[float], list[float]]:
    """``--list`` and ``status`` timings, interleaved."""
    return _interleaved([[*fleet, "--list"], [*fleet, "status"]], env, runs)


def run(quick: bool = False) -> float:
    """Print the figures; return the median difference in milliseconds."""
    runs = 5 if quick else RUNS
    with tmux_fleet("fleet-cli-bench-") as fleet:
        argv, env = fleet.argv, fleet.env
        _start(argv, fleet.roster, env)
        time.sleep(3)  # the watcher's first ticks record every agent's state
        bare, status = _pairs(argv, env, runs)
        baseline = [_seconds([sys.executable, "-c", "pass"], env) for _ in range(runs)]
        invoke_only, version = _interleaved([[sys.executable, "-c", "import invoke"], [*argv, "--version"]], env, runs)
        cpu, imports = _figures(argv, env, runs)
        _forget_states(fleet.socket, env)
        bare_unread, status_unread = _pairs(argv, env, runs)
    list_ms = statistics.median(bare) * 1000
    status_ms = statistics.median(status) * 1000
    difference = statistics.median(s - b for s, b in zip(status, bare, strict=True)) * 1000
    print(f"fleet command start-up (median of {runs} interleaved runs, {AGENTS} agents running on tmux):")
    invoke_ms = statistics.median(invoke_only) * 1000
    print(f"  python -c pass                               {statistics.median(baseline) * 1000:>6.0f} ms")
    print(f"  python -c 'import invoke'                    {invoke_ms:>6.0f} ms")
    for name, samples in (("fleet --version", version), ("fleet --list", bare)):
        over = statistics.median(samples) * 1000 - invoke_ms
        verdict = f"{'within' if over <= IMPORT_TARGET_MS else 'OVER'} the {IMPORT_TARGET_MS:.0f} ms target"
        print(f"  {name:<16} over `import invoke`          {over:>6.0f} ms  ({verdict})")
    record.figure("start-up: python -c pass", "ms", (s * 1000 for s in baseline))
    record.figure("start-up: python -c 'import invoke'", "ms", (s * 1000 for s in invoke_only))
    record.figure("start-up: fleet --version", "ms", (s * 1000 for s in version))
    record.figure("start-up: fleet --list", "ms", (s * 1000 for s in bare))
    record.figure(f"start-up: fleet status ({AGENTS} agents)", "ms", (s * 1000 for s in status))
    record.figure(
        f"start-up: fleet status ({AGENTS} agents, no watcher records)", "ms", (s * 1000 for s in status_unread)
    )
    print(f"  fleet --list                                 {list_ms:>6.0f} ms")
    print(f"  fleet status ({AGENTS} agents)                   {status_ms:>6.0f} ms")
    verdict = f"{'within' if difference <= TARGET_MS else 'OVER'} the {TARGET_MS:.0f} ms target"
    print(f"  difference (median of pairs)                 {difference:>6.0f} ms  ({verdict})")
    unread = statistics.median(s - b for s, b in zip(status_unread, bare_unread, strict=True)) * 1000
    verdict = f"{'within' if unread <= STATES_TARGET_MS else 'OVER'} the {STATES_TARGET_MS:.0f} ms target"
    print("  without watcher records: status reads the 200 screens itself")
    print(f"  difference (median of pairs)                 {unread:>6.0f} ms  ({verdict})")
    _print_steady("CPU time (user + system, with child processes)", "start-up CPU", cpu)
    _print_steady("import time by -X importtime (all imports summed)", "start-up imports", imports)
    return difference


def _print_steady(title: str, label: str, figures: dict[str, list[float]]) -> None:
    """Figures that move less with the machine's load than wall clock, with the same targets:
    --version and --list against `import invoke`, status against --list."""
    print(f"{title}, median of {len(figures['fleet status'])} runs:")
    floor = statistics.median(figures["python -c 'import invoke'"])
    against = {
        "fleet --version": floor,
        "fleet --list": floor,
        "fleet status": statistics.median(figures["fleet --list"]),
    }
    targets = {"fleet --version": IMPORT_TARGET_MS, "fleet --list": IMPORT_TARGET_MS, "fleet status": TARGET_MS}
    for name, samples in figures.items():
        median = statistics.median(samples)
        line = f"  {name:<30} {median:>6.0f} ms"
        if name in against:
            over = median - against[name]
            base = "`import invoke`" if name != "fleet status" else "--list"
            verdict = "within" if over <= targets[name] else "OVER"
            line += f"  (+{over:.0f} ms over {base}: {verdict} {targets[name]:.0f} ms)"
        print(line)
        record.figure(f"{label}: {name}", "ms", samples)


if __name__ == "__main__":
    run(quick="--quick" in sys.argv)
