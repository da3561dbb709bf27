"""`nox -s bench` keeps each run's figures as JSON beside the run and compares the next run
to it (issue 22): what a results file holds, and the comparison printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import record


def _run(
    monkeypatch: pytest.MonkeyPatch, directory: Path, which: str, name: str, samples: list[float], quick: bool
) -> Path:
    """One benchmark run that measured ``name``, saved in ``directory``."""
    monkeypatch.setattr(record, "_FIGURES", [])
    record.figure(name, "ms", samples)
    saved = record.save(directory, [which], quick=quick)
    assert saved is not None
    return saved


def test_a_run_is_kept_with_its_machine_and_compared_with_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _run(monkeypatch, tmp_path, "cli", "start-up CPU: fleet status", [50.0, 40.0, 45.0], quick=True)
    data = json.loads(first.read_text())
    assert data["quick"] is True
    assert data["benchmarks"] == ["cli"]
    assert data["figures"]["start-up CPU: fleet status"] == {
        "unit": "ms", "median": 45.0, "min": 40.0, "max": 50.0, "samples": [50.0, 40.0, 45.0],
    }  # fmt: skip
    machine = data["machine"]
    assert {"cores", "memory_bytes", "kernel", "python", "tmux", "systemd", "commit", "load_average"} <= set(machine)
    assert set(machine["packages"]) == {"invoke", "fabric", "pyyaml"}
    assert machine["uncommitted_changes"] in (True, False, None)
    assert "compared with" not in capsys.readouterr().out  # nothing earlier to compare with

    # The next run of the same kind is printed beside this one (a full run is not: other samples).
    first.rename(tmp_path / "20000101T000000Z.json")  # older than any run now
    _run(monkeypatch, tmp_path, "cli", "start-up CPU: fleet status", [90.0], quick=True)
    out = capsys.readouterr().out
    assert "compared with 20000101T000000Z.json" in out
    assert "45.0 ->       90.0 ms   (+100%)" in out
    # A full run beside two quick runs: compared with neither.
    _run(monkeypatch, tmp_path, "cli", "start-up CPU: fleet status", [90.0], quick=False)
    assert "compared with" not in capsys.readouterr().out


def test_a_run_is_compared_with_the_newest_run_that_measured_the_same_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # `python -m benchmarks fleet` after `python -m benchmarks cli`: the cli run is newer but
    # shares no figure, so the fleet run is compared with the fleet run before it.
    older = _run(monkeypatch, tmp_path, "fleet", "systemd restart N=200: fleet", [1500.0], quick=False)
    older.rename(tmp_path / "20000101T000000Z.json")
    newer = _run(monkeypatch, tmp_path, "cli", "start-up: fleet --list", [90.0], quick=False)
    newer.rename(tmp_path / "20000102T000000Z.json")
    capsys.readouterr()
    _run(monkeypatch, tmp_path, "fleet", "systemd restart N=200: fleet", [1200.0], quick=False)
    out = capsys.readouterr().out
    assert "compared with 20000101T000000Z.json" in out
    assert "1500.0 ->     1200.0 ms   (-20%)" in out
