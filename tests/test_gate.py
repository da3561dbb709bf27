"""The gate a supervisor waits at during a restart in place (fleetlib/gate.py), with real
FIFOs and a real ``sh`` reading them as the supervisor does."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from fleetlib import gate
from tests.conftest import eventually


def waiting(run_dir: Path, name: str) -> subprocess.Popen[str]:
    """A reader as the supervisor reads its gate: blocked in ``open`` until released."""
    path = gate.gate_path(run_dir, name)
    script = f'{{ read -r size <"{path}"; }} 2>/dev/null; echo "through:$size"'
    return subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE, text=True)


def blocked_in_open(process: subprocess.Popen[str]) -> bool:
    """Whether ``process`` sleeps in the kernel's FIFO open (its wait channel says so)."""
    try:
        return Path(f"/proc/{process.pid}/wchan").read_text() == "wait_for_partner"
    except OSError:
        return False


def released(run_dir: Path, name: str, size: str) -> str:
    """Release the gate ``name`` (closed) once a reader waits at it; what the reader read."""
    reader = waiting(run_dir, name)
    try:
        eventually(lambda: blocked_in_open(reader), "the reader waits at the gate")
        assert gate.release(run_dir, name, size) is True
        out, _ = reader.communicate(timeout=10)
    finally:
        reader.kill()
    return out.strip()


def test_a_closed_gate_holds_its_reader_until_released_with_the_size(tmp_path: Path) -> None:
    gate.close(tmp_path, "a1")
    assert stat.S_ISFIFO(os.lstat(gate.gate_path(tmp_path, "a1")).st_mode)
    assert oct(os.lstat(gate.gate_path(tmp_path, "a1")).st_mode & 0o777) == "0o600"
    assert released(tmp_path, "a1", "24 80") == "through:24 80"
    assert not gate.gate_path(tmp_path, "a1").exists()


def test_a_gate_nobody_waits_at_is_not_released_yet(tmp_path: Path) -> None:
    gate.close(tmp_path, "a1")
    assert gate.release(tmp_path, "a1") is False
    assert stat.S_ISFIFO(os.lstat(gate.gate_path(tmp_path, "a1")).st_mode)  # still closed, tried again later


def test_a_missing_gate_lets_its_reader_through_at_once(tmp_path: Path) -> None:
    assert gate.release(tmp_path, "a1") is True
    reader = waiting(tmp_path, "a1")
    out, _ = reader.communicate(timeout=10)
    assert out.strip() == "through:"


def test_close_replaces_a_planted_symlink_without_following_it(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep")
    gate.gate_path(tmp_path, "a1").symlink_to(target)
    gate.close(tmp_path, "a1")
    assert stat.S_ISFIFO(os.lstat(gate.gate_path(tmp_path, "a1")).st_mode)
    assert target.read_text() == "keep"


def test_release_writes_nothing_into_what_is_not_a_gate(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep")
    gate.gate_path(tmp_path, "a1").symlink_to(target)
    assert gate.release(tmp_path, "a1", "24 80") is True
    gate.gate_path(tmp_path, "b1").write_text("planted")
    assert gate.release(tmp_path, "b1", "24 80") is True
    assert target.read_text() == "keep"
    assert gate.gate_path(tmp_path, "b1").exists() is False
    assert not gate.gate_path(tmp_path, "a1").exists()


def test_only_a_size_passes_through_the_gate(tmp_path: Path) -> None:
    gate.close(tmp_path, "a1")
    assert released(tmp_path, "a1", "24 80; rm -rf ~") == "through:"
