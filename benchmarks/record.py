"""The figures of one benchmark run, kept as JSON beside the run and compared to the last one.

Each benchmark prints its own table and also hands its headline figures to :func:`figure`
(name, unit, every sample). When the run ends, :func:`save` writes
``<results dir>/<UTC time>.json`` holding the machine (cores, memory, kernel), the versions
that matter (Python, tmux, systemd, Invoke, Fabric, PyYAML, fleet's commit and whether the
tree had uncommitted changes), the load average, and per figure its samples with median, min
and max; then it prints each figure beside the same figure of the previous run of the same kind
(``--quick`` or not) that measured any of the same figures, in that directory, so a slower
run shows itself without anyone keeping notes. The results directory is ``.benchmarks/`` in
the repository (not committed: the figures belong to a machine) unless ``--results DIR`` says
otherwise.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

REPO: Final = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS: Final = REPO / ".benchmarks"
FORMAT: Final = 1


@dataclass(frozen=True)
class Figure:
    """One measured quantity: every sample, in ``unit``."""

    name: str
    unit: str
    samples: tuple[float, ...]
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "median": statistics.median(self.samples),
            "min": min(self.samples),
            "max": max(self.samples),
            "samples": list(self.samples),
            **({"note": self.note} if self.note else {}),
        }


_FIGURES: list[Figure] = []


def figure(name: str, unit: str, samples: Iterable[float], note: str = "") -> None:
    """Record ``samples`` (at least one) of the figure ``name`` for this run."""
    values = tuple(float(v) for v in samples)
    if values:
        _FIGURES.append(Figure(name, unit, values, note))


def figures() -> list[Figure]:
    return list(_FIGURES)


def _output(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False, cwd=REPO)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (done.stdout.strip().splitlines() or ["?"])[0]


def _uncommitted_changes() -> bool | None:
    """Whether tracked files differ from the commit (the figures are then not the commit's);
    None when git cannot tell."""
    try:
        done = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=False, cwd=REPO,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return bool(done.stdout.strip()) if done.returncode == 0 else None


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, Any]:
    """What the figures depend on: the machine and the versions of what was measured."""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        pages = 0
    return {
        "cores": os.cpu_count(),
        "memory_bytes": pages,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "tmux": _output(["tmux", "-V"]),
        "systemd": _output(["systemctl", "--version"]),
        "commit": _output(["git", "rev-parse", "--short", "HEAD"]),
        "uncommitted_changes": _uncommitted_changes(),
        # What the start-up figures stand on (`import invoke` is their floor), and the roster's parser.
        "packages": {name: _version(name) for name in ("invoke", "fabric", "pyyaml")},
        "load_average": os.getloadavg(),
    }


def _load(machine_data: Any) -> str:
    """The 1-minute load average a run recorded, or ``?``."""
    load = machine_data.get("load_average") if isinstance(machine_data, dict) else None
    return f"{load[0]:.1f}" if isinstance(load, list | tuple) and load and isinstance(load[0], int | float) else "?"


def _previous(directory: Path, quick: bool, names: set[str]) -> tuple[Path, dict[str, Any]] | None:
    """The newest earlier run of the same kind (``--quick`` takes fewer samples) that measured
    any of ``names`` (a run of another benchmark in between has nothing to compare)."""
    for path in sorted(directory.glob("*.json"), reverse=True):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or not isinstance(data.get("figures"), dict) or data.get("quick") != quick:
            continue
        if names & set(data["figures"]):
            return path, data
    return None


def save(directory: Path, which: list[str], quick: bool) -> Path | None:
    """Write this run's figures to ``directory`` and print them beside the previous run's."""
    if not _FIGURES:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    previous = _previous(directory, quick, {f.name for f in _FIGURES})
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = directory / f"{stamp}.json"
    data = {
        "format": FORMAT,
        "when": stamp,
        "benchmarks": which,
        "quick": quick,
        "machine": machine(),
        "figures": {f.name: f.to_json() for f in _FIGURES},
    }
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    temporary.replace(path)
    print(f"results: {path}")
    if previous is not None:
        old_path, old = previous
        was, now_load = old.get("machine", {}), data["machine"]
        loads = f"load {_load(was)} then, {_load(now_load)} now"  # start-up figures move with it
        print(f"compared with {old_path.name} (commit {was.get('commit', '?')}; {loads}):")
        for each in _FIGURES:
            before = old["figures"].get(each.name)
            now = statistics.median(each.samples)
            if isinstance(before, dict) and isinstance(before.get("median"), int | float) and before["median"]:
                change = (now - before["median"]) / before["median"] * 100
                print(f"  {each.name:58} {before['median']:>10.1f} -> {now:>10.1f} {each.unit:<4} ({change:+.0f}%)")
            else:
                print(f"  {each.name:58} {'(new)':>10} -> {now:>10.1f} {each.unit}")
    return path
