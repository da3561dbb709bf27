"""Reading transcripts: `fleet logs` on 1 MiB of the worst bytes a pane can write.

Target (issue 19): linear, so 1 MiB of any bytes in well under a second. Each input is written
as a transcript of two generations of 1 MiB each; the figures are CPU seconds for
:func:`fleetlib.transcript.read` of the whole transcript (``--generation all``) and for
:func:`fleetlib.terminal.render` of one 1 MiB input alone. The inputs are the shapes
that make a backtracking pattern or a per-line rescan quadratic (a redraw-heavy TUI writes long
runs of ``\\r``; the others are what a broken or hostile program can write); the tests read the
same inputs under a timeout that a quadratic reader cannot meet.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path
from typing import Final

from fleetlib import terminal, transcript
from fleetlib.paths import FleetPaths

MIB: Final = 1024 * 1024
TARGET_S: Final = 1.0


def _random_from(alphabet: bytes, size: int) -> bytes:
    rng = random.Random(size)
    return bytes(rng.choice(alphabet) for _ in range(size))


def adversarial(size: int = MIB) -> dict[str, bytes]:
    """About ``size`` bytes of each hostile shape, by name."""
    return {
        "carriage returns": b"\r" * size,
        "carriage returns then a line end": b"x" + b"\r" * (size - 2) + b"\n",
        "carriage returns between characters": b"x\r\r\r" * (size // 4),
        "backspaces": b"x" * (size // 2) + b"\b" * (size // 2),
        "carriage return and backspace": b"\r\b" * (size // 2),
        "escapes": b"\x1b" * size,
        "CSI starts": b"\x1b[" * (size // 2),
        "CSI parameters never ended": b"\x1b[" + b"0;" * (size // 2),
        "8-bit CSI": "\x9b".encode() * (size // 2),
        "OSC starts": b"\x1b]" * (size // 2),
        "OSC never ended": b"\x1b]0;" + b"a" * size,
        "OSC lines never ended": b"\x1b]0;" + b"a\r\n" * (size // 3),
        "header look-alikes": b"==> fleet: generation started " * (size // 30),
        "random bytes": random.Random(0).randbytes(size),
        "random controls": _random_from(b"\r\n\b\x1b[]P;0?~\x07\\ a", size),
    }


def header(pid: int) -> bytes:
    """A generation header as the pane delivers it."""
    return transcript.header_line("2026-01-01T00:00:00Z", pid, "80x24", "x").encode() + b"\r\n"


def run(quick: bool = False) -> None:
    """Print, per input, the CPU seconds of reading it (two generations) and of rendering it."""
    size = MIB // 4 if quick else MIB
    inputs = adversarial(size)
    worst = 0.0
    print(f"transcript reading, {size // 1024} KiB per input (target: under {TARGET_S:g} s)")
    with tempfile.TemporaryDirectory(prefix="fleet-transcript-bench-") as tmp:
        paths = FleetPaths.resolve(Path(tmp) / "home")
        transcript.ensure_log_dir(paths)
        path = transcript.log_path(paths, "a1")
        for name, data in inputs.items():
            path.write_bytes(header(1) + data + b"|\r\n" + header(2) + data + b"|\r\n")
            began = time.process_time()
            transcript.read(paths, "a1", lines=200, generation="all")
            reading = time.process_time() - began
            began = time.process_time()
            terminal.render(data.decode("utf-8", "replace"))
            rendering = time.process_time() - began
            worst = max(worst, reading)
            print(f"  {name:38} read (2 x input) {reading:6.3f} s   render {rendering:6.3f} s")
    print(f"  slowest read: {worst:.3f} s ({'met' if worst < TARGET_S else 'NOT met'})")
