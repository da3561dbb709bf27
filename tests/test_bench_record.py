"""`nox -s bench` keeps each run's figures as JSON beside the run and compares the next run
to it (issue 22): what a results file holds, and the comparison printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import record


def test_a_run_is_kept_with_its_machine_and_compared_with_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(record, "_FIGURES", [])
    record.figure("start-up CPU: fleet status", "ms", [50.0, 40.0, 45.0])
    first = record.save(tmp_path, ["cli"], quick=True)
    assert first is not None
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
    monkeypatch.setattr(record, "_FIGURES", [])
    record.figure("start-up CPU: fleet status", "ms", [90.0])
    assert record.save(tmp_path, ["cli"], quick=True) is not None
    out = capsys.readouterr().out
    assert "compared with 20000101T000000Z.json" in out
    assert "45.0 ->       90.0 ms   (+100%)" in out
    monkeypatch.setattr(record, "_FIGURES", [])
    record.figure("start-up CPU: fleet status", "ms", [90.0])
    record.save(tmp_path, ["cli"], quick=False)  # beside two quick runs, compared with neither
    assert "compared with" not in capsys.readouterr().out
