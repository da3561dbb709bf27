"""Transcripts without tmux: stripping, reading by generation, following, rotation, odd files."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.transcript_bench import adversarial
from fleetlib import pane, terminal, transcript
from fleetlib.errors import FleetError
from fleetlib.paths import FleetPaths
from fleetlib.rundir import RunDirError, RunFileError
from fleetlib.transcript import HEADER_RE, NoTranscript
from tests.conftest import eventually

# --------------------------------------------------------------------------- rendering (the old stripping cases)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("plain text\n", "plain text"),
        ("tab\tkept\r\n", "tab     kept"),  # a tab moves to the next tab stop
        ("unicode: é ✓ 漢字\n", "unicode: é ✓ 漢字"),
        # CSI: colours, cursor movement, erase, private modes, intermediates
        ("\x1b[31mred\x1b[0m \x1b[1;32mgreen\x1b[m", "red green"),
        ("\x1b[2J\x1b[H\x1b[?25l\x1b[?1049hscreen\x1b[?1049l", "screen"),
        ("a\x1b[Kb\x1b[3;5Hc\x1b[3 qd", "ab\n\n    cd"),
        ("\x9b31mC1 CSI\x9b0m", "C1 CSI"),
        # OSC ended by BEL or ST, hyperlinks, an unterminated one ends at the line's end
        ("\x1b]0;window title\x07text", "text"),
        ("\x1b]8;;https://x.invalid\x1b\\link\x1b]8;;\x1b\\", "link"),
        ("\x1b]0;never ended\r\nnext line", "\nnext line"),
        # DCS, APC, PM, SOS strings
        ("\x1bPq#0;2;0;0;0\x1b\\after", "after"),
        ("\x1b_apc payload\x1b\\x\x1b^pm\x1b\\y\x1bXsos\x1b\\z", "xyz"),
        # other escapes: charset, keypad, save/restore cursor, kitty keyboard, a reset
        ("\x1b(B\x1b)0\x1b=\x1b>\x1b7\x1b8\x1b[<u\x1b[>1u\x1b[?2026$pok", "ok"),
        ("lone escape at the end\x1b", "lone escape at the end"),
        # line ends: the terminal's \r\n, a program's own \r\n on top of it
        ("one\r\ntwo\r\n", "one\ntwo"),
        ("one\r\r\ntwo\r\r\n", "one\ntwo"),
        # \r overwrites: what stays is what the screen showed (a progress bar's final state)
        ("progress 10%\rprogress 55%\rprogress 100%\r\ndone\r\n", "progress 100%\ndone"),
        ("spinner |\rspinner /\rspinner -", "spinner -"),
        ("text then cr\r", "text then cr"),
        ("\x1b[2K\rredrawn line\r\n", "redrawn line"),
        ("long old text\rnew", "newg old text"),  # a terminal overwrites only what is written
        # backspaces move the cursor back; what is written over replaces it
        ("abc\b\bxy", "axy"),
        ("\b\bstart", "start"),
        ("typo\b\b\b\bfixed", "fixed"),
        # other C0 controls, DEL and the C1 controls never show
        ("bell\x07 nul\x00 so\x0e del\x7f c1\x85\x9c end", "bell nul so del c1 end"),
    ],
)
def test_render(raw: str, expected: str) -> None:
    assert "\n".join(terminal.render(raw)) == expected


def test_rendering_leaves_no_controls_and_renders_its_own_output_unchanged() -> None:
    raw = "".join(chr(c) for c in range(0x00, 0xA0)) * 3 + "\x1b[31mx\x1b]0;t\x07y\rz\r\n"
    once = "\n".join(terminal.render(raw))
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", once)
    assert "\n".join(terminal.render(once.replace("\n", "\r\n"))) == once


# 1 MiB each, the shapes that make a backtracking pattern or a per-line rescan go quadratic
# (the same inputs `python -m benchmarks transcript` measures).
ADVERSARIAL: dict[str, bytes] = adversarial()


@pytest.mark.timeout(20)  # linear: well under a second; the old quadratic pattern took ~20 min here
@pytest.mark.parametrize("data", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_rendering_a_mebibyte_of_anything_is_linear(data: bytes) -> None:
    lines = terminal.render(data.decode("utf-8", "replace"))
    assert not any(re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", line) for line in lines)


@given(st.text(alphabet="ab \r\n\b\t\x1b[]0;?<$mHJKABCDu\x07\x9b\x90é漢"))
def test_rendering_never_raises_and_never_shows_a_control(text: str) -> None:
    """Whatever the bytes, the emulator gives lines of printable text (never a traceback)."""
    assert not any(re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", line) for line in terminal.render(text, 20, 5))


# --------------------------------------------------------------------------- header


def test_the_header_format_is_safe_inside_the_supervisors_quotes_and_matches_its_regex() -> None:
    assert not set("'\"$`") & set(transcript.HEADER_PRINTF)
    assert transcript.HEADER_PRINTF.count("\\") == 1
    assert transcript.HEADER_PRINTF.endswith("\\n")
    assert transcript.HEADER_PRINTF in pane.SCRIPT
    done = subprocess.run(
        ["sh", "-c", 'printf "$0" 2026-01-02T03:04:05Z 4242 120x40 "my cli --x"', transcript.HEADER_PRINTF],
        capture_output=True,
        text=True,
        check=True,
    )
    match = HEADER_RE.fullmatch(done.stdout.rstrip("\n"))
    assert match is not None
    assert match.groupdict() == {
        "time": "2026-01-02T03:04:05Z",
        "pid": "4242",
        "columns": "120",
        "rows": "40",
        "command": "my cli --x",
    }
    assert done.stdout.rstrip("\n") == transcript.header_line("2026-01-02T03:04:05Z", 4242, "120x40", "my cli --x")


def test_a_header_without_a_size_still_starts_a_generation() -> None:
    for line in ("==> fleet: generation started T pid 7: cli", "==> fleet: generation started T pid 7 size x: cli"):
        match = HEADER_RE.fullmatch(line)
        assert match is not None
        assert (match["pid"], match["command"]) == ("7", "cli")


def header(pid: int, command: str = "agent", when: str = "2026-01-01T00:00:00Z", size: str = "80x24") -> str:
    """The header the supervisor prints, as the pane delivers it (\\r\\n)."""
    return transcript.header_line(when, pid, size, command) + "\r\n"


# --------------------------------------------------------------------------- reading


@pytest.fixture
def paths(tmp_path: Path) -> FleetPaths:
    fleet = FleetPaths.resolve(tmp_path / "home")
    transcript.ensure_log_dir(fleet)
    return fleet


def write(paths: FleetPaths, text: str, suffix: str = "", name: str = "a1") -> Path:
    path = Path(f"{transcript.log_path(paths, name)}{suffix}")
    path.write_bytes(text.encode())
    return path


def test_paths_and_a_private_logs_dir(paths: FleetPaths) -> None:
    assert transcript.log_dir(paths) == paths.home / "fleet" / "logs"
    assert transcript.log_path(paths, "a1") == paths.home / "fleet" / "logs" / "a1.log"
    assert transcript.log_dir(paths).stat().st_mode & 0o777 == 0o700


def test_a_shared_logs_dir_is_refused_with_the_fix(paths: FleetPaths) -> None:
    transcript.log_dir(paths).chmod(0o777)
    with pytest.raises(RunDirError, match="chmod 700"):
        transcript.ensure_log_dir(paths)


def test_generations_current_previous_all(paths: FleetPaths) -> None:
    write(
        paths,
        "before any header\r\n" + header(1) + "one a\r\none b\r\n" + header(2) + "two a\r\ntwo \x1b[1mb\x1b[0m\r\n",
    )
    current = transcript.read(paths, "a1", lines=50)
    assert current.splitlines()[1:] == ["two a", "two b"]
    assert HEADER_RE.fullmatch(current.splitlines()[0])
    previous = transcript.read(paths, "a1", lines=50, generation="previous")
    assert previous.splitlines()[1:] == ["one a", "one b"]
    assert "pid 1 " in previous.splitlines()[0]
    everything = transcript.read(paths, "a1", lines=50, generation="all")
    assert everything.splitlines()[0] == "before any header"
    assert everything.splitlines()[-1] == "two b"
    assert transcript.read(paths, "a1", lines=1) == "two b"
    assert transcript.read(paths, "a1", lines=2, generation="previous").splitlines() == ["one a", "one b"]


def test_a_header_after_a_line_the_dead_generation_did_not_finish(paths: FleetPaths) -> None:
    write(paths, header(1) + "partial line without newline" + header(2) + "new\r\n")
    assert (
        transcript.read(paths, "a1", lines=10, generation="previous").splitlines()[-1] == "partial line without newline"
    )
    assert transcript.read(paths, "a1", lines=10).splitlines()[1:] == ["new"]


def test_previous_of_an_agent_that_ran_once_is_empty(paths: FleetPaths) -> None:
    write(paths, header(1) + "only\r\n")
    assert transcript.read(paths, "a1", lines=10, generation="previous") == ""
    write(paths, "no header at all\r\n")
    assert transcript.read(paths, "a1", lines=10) == "no header at all"
    assert transcript.read(paths, "a1", lines=10, generation="previous") == ""


def test_previous_generation_in_the_rotated_file(paths: FleetPaths) -> None:
    write(paths, header(1) + "old generation\r\n" + header(2) + "current starts\r\n", ".1")
    write(paths, "current continues\r\n")
    assert transcript.read(paths, "a1", lines=10).splitlines()[1:] == ["current starts", "current continues"]
    assert transcript.read(paths, "a1", lines=10, generation="previous").splitlines()[1:] == ["old generation"]
    write(paths, header(0) + "oldest\r\n", ".2")
    assert transcript.read(paths, "a1", lines=10, generation="all").splitlines()[1] == "oldest"


def test_a_long_generation_reads_only_its_tail(paths: FleetPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    body = "".join(f"line {i:07d} \x1b[32m{'x' * 60}\x1b[0m\r\n" for i in range(60_000))  # ~5 MB
    write(paths, header(1) + "gen one\r\n" + header(2) + body)
    reads: list[int] = []
    real = transcript.read_fd_capped

    def counting(fd: int, cap: int, path: object) -> bytes:
        reads.append(cap)
        return real(fd, cap, path)  # type: ignore[arg-type]

    monkeypatch.setattr(transcript, "read_fd_capped", counting)
    assert transcript.read(paths, "a1", lines=3).splitlines() == [
        f"line {i:07d} {'x' * 60}" for i in (59_997, 59_998, 59_999)
    ]
    assert sum(reads) <= transcript.BLOCK
    reads.clear()
    assert transcript.read(paths, "a1", lines=5, generation="previous").splitlines()[1:] == ["gen one"]
    assert sum(reads) >= len(body)  # it had to go back to the header


def test_no_transcript_is_one_line_with_exit_1(paths: FleetPaths) -> None:
    with pytest.raises(NoTranscript) as caught:
        transcript.read(paths, "nobody", lines=10)
    assert caught.value.exit_code == 1
    assert "\n" not in str(caught.value)
    assert "no transcript for nobody yet" in str(caught.value)


@pytest.mark.parametrize("bad", ["", "Current", "last", "prev"])
def test_an_unknown_generation_is_a_user_error(paths: FleetPaths, bad: str) -> None:
    write(paths, "x\n")
    with pytest.raises(FleetError, match="--generation") as caught:
        transcript.read(paths, "a1", lines=10, generation=bad)
    assert caught.value.exit_code == 2


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _directory(path: Path) -> None:
    path.mkdir()


def _symlink(path: Path) -> None:
    target = path.parent / "elsewhere"
    target.write_text("secret\n")
    path.symlink_to(target)


def _socket(path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()


PLANTS = [_fifo, _directory, _symlink, _socket]
PLANT_IDS = ["fifo", "directory", "symlink", "socket"]


@pytest.mark.timeout(20)
@pytest.mark.parametrize("plant", PLANTS, ids=PLANT_IDS)
def test_an_odd_file_at_the_transcript_path_is_one_line_never_a_hang(paths: FleetPaths, plant: object) -> None:
    path = transcript.log_path(paths, "a1")
    plant(path)  # type: ignore[operator]
    with pytest.raises(RunFileError) as caught:
        transcript.read(paths, "a1", lines=10)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message
    assert caught.value.exit_code == 2
    with pytest.raises(RunFileError):
        transcript.rotate(path, 3)
    assert path.exists() or path.is_symlink()  # nothing was renamed


def _outside(tmp_path: Path) -> Path:
    target = tmp_path / "outside"
    target.write_text("secret\n")
    return target


@pytest.mark.timeout(20)
@pytest.mark.parametrize("plant", PLANTS, ids=PLANT_IDS)
def test_an_odd_rotated_file_is_skipped_by_every_reader(paths: FleetPaths, plant: object, tmp_path: Path) -> None:
    path = write(paths, header(2) + "current\r\n")
    write(paths, header(1) + "oldest\r\n", ".2")
    odd = transcript.rotated(path, 1)
    if plant is _symlink:
        odd.symlink_to(_outside(tmp_path))
    else:
        plant(odd)  # type: ignore[operator]
    assert transcript.read(paths, "a1", lines=10).splitlines()[1:] == ["current"]
    assert transcript.read(paths, "a1", lines=10, generation="previous").splitlines()[1:] == ["oldest"]
    assert [line for line in transcript.read(paths, "a1", lines=10, generation="all").splitlines()
            if not HEADER_RE.fullmatch(line)] == ["oldest", "current"]  # fmt: skip


@pytest.mark.timeout(20)
@pytest.mark.parametrize("plant", PLANTS, ids=PLANT_IDS)
@pytest.mark.parametrize("index", [1, 2, 3, 4])
def test_rotation_goes_on_past_an_odd_rotated_file_and_never_follows_it(
    paths: FleetPaths, plant: object, index: int, tmp_path: Path
) -> None:
    path = transcript.log_path(paths, "a1")
    target = _outside(tmp_path)
    odd = transcript.rotated(path, index)
    if plant is _symlink:
        odd.symlink_to(target)
    else:
        plant(odd)  # type: ignore[operator]
    keep = 3
    for round_ in range(6):
        path.write_text(f"round {round_}\n")
        notes = transcript.rotate(path, keep)
        assert not path.exists()
        assert all("\n" not in note for note in notes)
        rotated = transcript.read(paths, "a1", lines=50, generation="all").splitlines()
        assert rotated == [f"round {r}" for r in range(max(0, round_ - keep + 1), round_ + 1)]  # newest kept, in order
    assert target.read_text() == "secret\n"  # never written through, never removed
    kept = {p.name for p in path.parent.iterdir()}
    if plant is _directory:
        assert odd.is_dir()  # left alone: a directory may hold anything
        assert kept == {odd.name} | {f"a1.log.{i}" for i in (1, 2, 3, 4) if i != index}
    else:
        assert not odd.is_symlink()  # the odd file itself is gone (or replaced by a transcript)
        assert kept == {f"a1.log.{i}" for i in (1, 2, 3)}
    for name in kept - {odd.name}:
        assert (path.parent / name).is_file()
        assert not (path.parent / name).is_symlink()


def test_doctor_names_every_odd_transcript_file_and_nothing_else(paths: FleetPaths, tmp_path: Path) -> None:
    from fleetlib.doctor import check_transcripts

    logs = transcript.log_dir(paths)
    assert check_transcripts(tmp_path / "missing").ok
    write(paths, "x\n")
    write(paths, "y\n", ".1")
    for other in ("a1.log.0", "a1.log.01", "a1.log.x", "a1.logs", "notes"):
        (logs / other).mkdir()
    assert check_transcripts(logs).ok
    os.mkfifo(logs / "a2.log")
    (logs / "a1.log.3").symlink_to(tmp_path / "nowhere")
    check = check_transcripts(logs)
    assert not check.ok
    assert check.detail.startswith(f"not a regular file: {logs}/a1.log.3 is a symlink; {logs}/a2.log is a FIFO")
    assert check.fix == f"remove it: `rm -r {logs}/a1.log.3` `rm -r {logs}/a2.log`"
    missing = check_transcripts(logs, writer=None)
    assert not missing.ok
    assert missing.detail.startswith("perl is not installed")


@given(
    layout=st.dictionaries(st.integers(1, 7), st.sampled_from(["file", "directory", "symlink", "fifo"]), max_size=7),
    keep=st.integers(0, 5),
    current=st.booleans(),
)
def test_rotation_keeps_the_newest_keep_files_in_order_whatever_sits_at_the_rotated_names(
    layout: dict[int, str], keep: int, current: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path, target = Path(tmp) / "a1.log", Path(tmp) / "target"
        target.write_text("secret\n")
        for index, kind in layout.items():
            odd = transcript.rotated(path, index)
            {"file": lambda p, i=index: p.write_text(f"{i}\n"), "directory": Path.mkdir,
             "symlink": lambda p: p.symlink_to(target), "fifo": os.mkfifo}[kind](odd)  # fmt: skip
        if current:
            path.write_text("0\n")
        transcript.rotate(path, keep)
        order = [i for i in sorted(layout) if layout[i] == "file"]  # newest first
        expected = ([0] if current else []) + order
        found = sorted(transcript._rotated_indices(path))
        kept = [int(transcript.rotated(path, i).read_text()) for i in found if layout.get(i) != "directory"]
        assert kept == expected[:keep]  # the newest keep files, still newest first by index
        assert [i for i in found if layout.get(i) == "directory"] == sorted(
            i for i, kind in layout.items() if kind == "directory"
        )  # directories stay where they are
        assert not any(transcript.rotated(path, i).is_symlink() for i in found)
        assert target.read_text() == "secret\n"
        assert not path.exists()  # renamed, or removed with keep 0


def test_rotate_says_what_it_did_about_odd_files(paths: FleetPaths, tmp_path: Path) -> None:
    path = write(paths, "now\n")
    transcript.rotated(path, 1).symlink_to(_outside(tmp_path))
    transcript.rotated(path, 2).mkdir()
    notes = transcript.rotate(path, 3)
    assert any(str(transcript.rotated(path, 1)) in note and "symlink" in note for note in notes), notes
    assert any(str(transcript.rotated(path, 2)) in note and "directory" in note for note in notes), notes
    assert transcript.rotate(path, 3) == [note for note in notes if "directory" in note]  # said again while there


@pytest.mark.parametrize("plant", [_fifo, _directory], ids=["fifo", "directory"])
def test_needs_rotation_refuses_an_odd_file(paths: FleetPaths, plant: object) -> None:
    path = transcript.log_path(paths, "a1")
    plant(path)  # type: ignore[operator]
    with pytest.raises(RunFileError, match="not a regular file"):
        transcript.needs_rotation(path, 4096)


# --------------------------------------------------------------------------- rotation


def test_needs_rotation_at_the_size(paths: FleetPaths) -> None:
    path = transcript.log_path(paths, "a1")
    assert not transcript.needs_rotation(path, 10)
    path.write_bytes(b"x" * 9)
    assert not transcript.needs_rotation(path, 10)
    path.write_bytes(b"x" * 10)
    assert transcript.needs_rotation(path, 10)


@pytest.mark.parametrize("keep", [1, 2, 5])
def test_rotate_keeps_at_most_keep_files_newest_first(paths: FleetPaths, keep: int) -> None:
    path = transcript.log_path(paths, "a1")
    for round_ in range(8):
        path.write_text(f"round {round_}\n")
        transcript.rotate(path, keep)
        assert not path.exists()
    kept = sorted(p.name for p in path.parent.iterdir())
    assert kept == sorted(f"a1.log.{i}" for i in range(1, keep + 1))
    for i in range(1, keep + 1):
        assert transcript.rotated(path, i).read_text() == f"round {8 - i}\n"


def test_rotate_drops_files_beyond_a_smaller_keep_and_ignores_other_names(paths: FleetPaths) -> None:
    path = transcript.log_path(paths, "a1")
    for i in (1, 2, 3, 7):
        transcript.rotated(path, i).write_text(f"{i}\n")
    for other in ("a1.log.0", "a1.log.01", "a1.log.x", "a10.log.1", "a1.logs"):
        (path.parent / other).write_text("other\n")
    path.write_text("now\n")
    transcript.rotate(path, 2)
    assert transcript.rotated(path, 1).read_text() == "now\n"
    assert transcript.rotated(path, 2).read_text() == "1\n"
    assert not transcript.rotated(path, 3).exists()
    assert not transcript.rotated(path, 7).exists()
    for other in ("a1.log.0", "a1.log.01", "a1.log.x", "a10.log.1", "a1.logs"):
        assert (path.parent / other).read_text() == "other\n"


def test_rotate_without_the_transcript_renames_nothing(paths: FleetPaths) -> None:
    path = transcript.log_path(paths, "a1")
    for i in (1, 2, 3):
        transcript.rotated(path, i).write_text(f"{i}\n")
    transcript.rotate(path, 2)  # e.g. called again before the pipe reopened the file
    assert sorted(p.name for p in path.parent.iterdir()) == ["a1.log.1", "a1.log.2"]
    assert transcript.rotated(path, 1).read_text() == "1\n"


def test_rotate_with_keep_0_removes_the_transcript(paths: FleetPaths) -> None:
    path = transcript.log_path(paths, "a1")
    path.write_text("x\n")
    transcript.rotated(path, 1).write_text("y\n")
    transcript.rotate(path, 0)
    assert list(path.parent.iterdir()) == []


def test_a_writer_keeps_writing_into_the_rotated_file(paths: FleetPaths) -> None:
    path = transcript.log_path(paths, "a1")
    with path.open("a") as writer:
        writer.write("before\n")
        writer.flush()
        transcript.rotate(path, 3)
        writer.write("after the rename\n")
    assert transcript.rotated(path, 1).read_text() == "before\nafter the rename\n"
    assert not path.exists()


def _holding(path: Path, argv: list[str]) -> subprocess.Popen[bytes]:
    """A process running ``argv`` with ``path`` (opened to append) as its standard output."""
    with path.open("ab") as out:
        return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out)


def _end(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    process.wait()
    if process.stdin is not None:
        process.stdin.close()


def test_a_writer_is_left_behind_only_with_no_transcript_and_a_rotated_file_twice_the_size(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    # A home reached through a symlink: the kernel names a process's files by their real path.
    (tmp_path / "home").symlink_to("real")
    log = tmp_path / "home" / "a1.log"
    one = transcript.rotated(log, 1)
    assert not transcript.writer_left_behind(log, 100)  # nothing at all
    one.write_bytes(b"x" * 199)
    cat = _holding(one, ["cat"])  # a writer of an older fleet, which never reopens
    fleets = _holding(one, ["perl", "-e", "sleep 60"])  # the fleet's writer, stalled before it reopened
    try:
        assert not transcript.writer_left_behind(log, 100)
        one.write_bytes(b"x" * 200)
        assert transcript.writer_left_behind(log, 100)
        _end(cat)
        assert not transcript.writer_left_behind(log, 100)  # only the fleet's writer holds it
    finally:
        _end(cat)
        _end(fleets)
    assert not transcript.writer_left_behind(log, 100)  # nobody holds it
    log.write_bytes(b"")  # the writer followed the rename
    assert not transcript.writer_left_behind(log, 100)
    log.unlink()
    one.unlink()
    one.symlink_to(tmp_path / "big")
    (tmp_path / "big").write_bytes(b"x" * 1000)
    cat = _holding(tmp_path / "big", ["cat"])
    try:
        assert not transcript.writer_left_behind(log, 100)  # never followed
    finally:
        _end(cat)


def test_wake_writers_finds_a_stopped_writer_of_a_home_reached_through_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "home").symlink_to("real")
    paths = FleetPaths.resolve(tmp_path / "home")
    transcript.ensure_log_dir(paths)
    writer = _holding(transcript.log_path(paths, "a1"), ["cat"])
    try:
        os.kill(writer.pid, signal.SIGSTOP)
        eventually(lambda: Path(f"/proc/{writer.pid}/stat").read_text().split(") ")[1][0] == "T", "stopped")
        assert transcript.wake_writers(paths) == [writer.pid]
        eventually(lambda: Path(f"/proc/{writer.pid}/stat").read_text().split(") ")[1][0] != "T", "woken")
    finally:
        _end(writer)


def test_repipe_commands_give_the_pane_a_new_pipe_into_the_transcript(tmp_path: Path) -> None:
    log = tmp_path / "a dir#1" / "a1;.log"
    assert transcript.repipe_commands("a1", log) == [
        "pipe-pane",
        "-O",
        "-t",
        "=fleet:=a1",
        transcript.pipe_shell_command(log),
    ]


def _pipe_writer(log: Path) -> subprocess.Popen[bytes]:
    """The pane's writer as tmux runs it: ``/bin/sh -c`` after tmux's format expansion
    (which turns the doubled ``##`` back into ``#``), its stdin the pane's output."""
    command = transcript.pipe_shell_command(log).replace("##", "#")
    return subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.PIPE)


def _send(writer: subprocess.Popen[bytes], data: bytes) -> None:
    assert writer.stdin is not None
    writer.stdin.write(data)
    writer.stdin.flush()


def test_the_pipe_writer_follows_a_rotation_by_itself_and_loses_nothing(tmp_path: Path) -> None:
    """Rotation is a rename only: the writer (its pipe never replaced) opens the name again
    before the next chunk. With `cat` the rest went into the renamed file for ever."""
    (tmp_path / "a dir#1").mkdir()
    log = tmp_path / "a dir#1" / "a1;'$(x).log"
    writer = _pipe_writer(log)
    try:
        _send(writer, b"before\n")
        eventually(lambda: log.exists() and log.read_bytes() == b"before\n", "the first chunk")
        for n in range(3):
            transcript.rotate(log, 5)
            _send(writer, f"after {n}\n".encode())
            eventually(lambda n=n: log.exists() and log.read_bytes() == f"after {n}\n".encode(), "a fresh file")
    finally:
        assert writer.stdin is not None
        writer.stdin.close()
    assert writer.wait(timeout=30) == 0
    assert [transcript.rotated(log, i).read_bytes() for i in (3, 2, 1)] == [b"before\n", b"after 0\n", b"after 1\n"]
    assert transcript.read_path(log, lines=10, generation="all").splitlines() == [
        "before",
        "after 0",
        "after 1",
        "after 2",
    ]


@pytest.mark.parametrize(
    "environment",
    [{"PERL_UNICODE": "SDA"}, {"PERLIO": ":utf8"}, {"PERL5OPT": "-Mstrict"}, {"PERL5OPT": "-CSD"}],
    ids=["PERL_UNICODE", "PERLIO", "PERL5OPT-strict", "PERL5OPT-C"],
)
def test_the_pipe_writer_keeps_every_byte_whatever_perl_settings_the_environment_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]
) -> None:
    """The tmux server passes its environment (the user's shell's) to the writer: Perl
    settings there (a UTF-8 layer, injected switches) once ended it at its first byte, so
    no transcript at all; the writer must copy bytes as they come, whatever they are."""
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    log = tmp_path / "a1.log"
    data = b"plain\n\xff\xfe\x00 not utf-8 \xe2\x82\n\xc3\xa9t\xc3\xa9\n"
    writer = _pipe_writer(log)
    _send(writer, data)
    assert writer.stdin is not None
    writer.stdin.close()
    assert writer.wait(timeout=30) == 0
    assert log.read_bytes() == data


@pytest.mark.parametrize("odd", ["symlink", "fifo"])
def test_the_pipe_writer_ends_rather_than_follow_a_symlink_or_open_a_fifo_put_at_the_name(
    tmp_path: Path, odd: str
) -> None:
    log, target = tmp_path / "a1.log", tmp_path / "target"
    target.write_bytes(b"untouched\n")
    writer = _pipe_writer(log)
    _send(writer, b"before\n")
    eventually(lambda: log.exists() and log.stat().st_size > 0, "the first chunk")
    transcript.rotate(log, 1)
    if odd == "symlink":
        log.symlink_to(target)
    else:
        os.mkfifo(log)  # opening it to append would block until someone reads it
    _send(writer, b"after\n")
    try:
        assert writer.wait(timeout=30) == 1
    finally:
        assert writer.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            writer.stdin.close()
    assert target.read_bytes() == b"untouched\n"
    assert transcript.rotated(log, 1).read_bytes() == b"before\n"


def test_the_pipe_writer_never_blocks_on_a_fifo_swapped_in_at_the_name_while_it_reopens(tmp_path: Path) -> None:
    # Defect: the writer looked at the name (lstat) and then opened it, two steps: a FIFO
    # renamed in between was opened to append, which blocks until someone reads it. The
    # transcript stopped for good, with the writer alive (so never renewed). A writer that
    # sees the FIFO ends (exit 1): one is started again, for many tries at the race.
    # The witness: the kernel's wait channel of each writer.
    stop = threading.Event()
    folders = [tmp_path / str(index) for index in range(4)]

    def swap(folder: Path) -> None:
        for turn in itertools.count():
            if stop.is_set():
                return
            os.mkfifo(folder / f"f{turn}")
            os.rename(folder / f"f{turn}", folder / "a.log")
            (folder / f"r{turn}").touch()
            os.rename(folder / f"r{turn}", folder / "a.log")

    for folder in folders:
        folder.mkdir()
        (folder / "a.log").touch()
    swappers = [threading.Thread(target=swap, args=(folder,)) for folder in folders]
    writers = {folder: _pipe_writer(folder / "a.log") for folder in folders}
    for thread in swappers:
        thread.start()
    blocked: list[str] = []
    ended: list[int | None] = []
    try:
        deadline = time.monotonic() + 6.0
        while time.monotonic() < deadline and not blocked:
            for folder, old in list(writers.items()):
                writer = old
                if old.poll() is not None:
                    _close(old)
                    ended.append(old.returncode)
                    writers[folder] = writer = _pipe_writer(folder / "a.log")
                with contextlib.suppress(BrokenPipeError):
                    _send(writer, b"x\n")
                with contextlib.suppress(OSError):
                    channel = Path(f"/proc/{writer.pid}/wchan").read_text()
                    if "partner" in channel or "fifo" in channel:
                        blocked.append(channel)
            time.sleep(0.0005)
    finally:
        stop.set()
        for thread in swappers:
            thread.join()
        for writer in writers.values():
            writer.kill()
            writer.wait()
            _close(writer)
    assert blocked == []
    assert len(ended) > 100  # the race was tried: each end is a writer that met the FIFO
    assert set(ended) == {1}


def _close(writer: subprocess.Popen[bytes]) -> None:
    assert writer.stdin is not None
    with contextlib.suppress(BrokenPipeError):
        writer.stdin.close()


# --------------------------------------------------------------------------- follow


class Script:
    """Drives follow(): each sleep runs the next step (appending, rotating ...)."""

    def __init__(self, steps: list[object]) -> None:
        self.steps = list(steps)

    def sleep(self, _seconds: float) -> None:
        if self.steps:
            self.steps.pop(0)()  # type: ignore[operator]

    def done(self) -> bool:
        return not self.steps


def append(path: Path, text: str) -> object:
    def run() -> None:
        with path.open("ab") as handle:
            handle.write(text.encode())

    return run


def collect(iterator: Iterator[str]) -> list[str]:
    return [line for chunk in iterator for line in chunk.split("\n")]


def test_follow_yields_the_tail_then_complete_new_lines_stripped(paths: FleetPaths) -> None:
    path = write(paths, header(1) + "old\r\n")
    script = Script([append(path, "new \x1b[1mbold\x1b[0m\r\npart"), append(path, "ial\r\n"), lambda: None])
    got = collect(transcript.follow(paths, "a1", lines=10, sleep=script.sleep, stop=script.done))
    assert got[1:] == ["old", "new bold", "partial"]


def test_follow_survives_a_rotation_without_losing_or_repeating_a_line(paths: FleetPaths) -> None:
    path = write(paths, header(1) + "line 0\r\n")
    writer = path.open("ab")

    def write_line(n: int) -> object:
        def run() -> None:
            writer.write(f"line {n}\r\n".encode())
            writer.flush()

        return run

    def rotate_and_reopen() -> None:
        nonlocal writer
        transcript.rotate(path, 2)
        writer.write(b"line 3\r\n")  # the old writer drains into the renamed file
        writer.flush()
        writer.close()
        writer = path.open("ab")

    steps = [write_line(1), write_line(2), rotate_and_reopen, write_line(4), write_line(5), *([lambda: None] * 3)]
    script = Script(steps)
    try:
        got = collect(transcript.follow(paths, "a1", lines=10, sleep=script.sleep, stop=script.done))
    finally:
        writer.close()
    assert got[1:] == [f"line {n}" for n in range(6)]


def test_follow_started_while_rotated_away_never_repeats_what_the_writer_then_wrote(
    paths: FleetPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between a rotation and the agent's next output there is no ``<name>.log``. When the
    writer opened it right after follow() looked for it and before follow() read the
    stream, its first lines were shown by that read and again by the follower, which
    read the new file from its start."""
    path = write(paths, header(1) + "line 0\r\nline 1\r\n")
    transcript.rotate(path, 2)

    class WriterBetween(transcript._Follower):
        def __init__(self, watched: Path) -> None:
            super().__init__(watched)
            append(watched, "line 2\r\n")()  # type: ignore[operator]  # the writer's first chunk, just then

    monkeypatch.setattr(transcript, "_Follower", WriterBetween)
    script = Script([append(path, "line 3\r\n"), lambda: None, lambda: None])
    got = collect(transcript.follow(paths, "a1", lines=10, sleep=script.sleep, stop=script.done))
    assert got[1:] == [f"line {n}" for n in range(4)]


@pytest.mark.parametrize("keep", [0, 2])
def test_follow_never_repeats_what_a_rotation_just_before_its_first_read_moved(
    paths: FleetPaths, monkeypatch: pytest.MonkeyPatch, keep: int
) -> None:
    """The follower opens ``<name>.log`` and starts at its end; then the watcher rotates and
    the writer writes on, in the old file and then a new one, before the first read. That
    read took the renamed file whole and the new one up to the old file's size, and the
    follower read both again."""
    path = write(paths, header(1) + "line 0\r\n")

    class RotatedBetween(transcript._Follower):
        def __init__(self, watched: Path) -> None:
            super().__init__(watched)
            with watched.open("ab") as old:
                transcript.rotate(watched, keep)
                old.write(b"line 1\r\n")  # the writer's chunk in flight at the rename
            append(watched, "line 2\r\n" + "x" * 100 + "\r\n")()  # type: ignore[operator]  # the new file

    monkeypatch.setattr(transcript, "_Follower", RotatedBetween)
    script = Script([append(path, "line 3\r\n"), lambda: None, lambda: None])
    got = collect(transcript.follow(paths, "a1", lines=10, sleep=script.sleep, stop=script.done))
    # With log_keep 0 the rotation removed the file before the read: only what the
    # follower still reads of it (its file stays open) and what came after.
    assert [line for line in got if line.startswith("line")] == [f"line {n}" for n in range(0 if keep else 1, 4)]


def test_follow_held_up_across_several_rotations_reads_every_file_in_order(paths: FleetPaths) -> None:
    """``fleet logs --follow | less``: while its output is blocked, the watcher rotates
    several times. It read on in the file it had, then the newest: the files between were
    skipped."""
    path = write(paths, header(1) + "line 0\r\n")

    def rotations() -> None:
        for n in (2, 3, 4):
            transcript.rotate(path, 5)
            append(path, f"line {n}\r\n")()  # type: ignore[operator]

    script = Script([append(path, "line 1\r\n"), rotations, *([lambda: None] * 8)])
    got = collect(transcript.follow(paths, "a1", lines=10, sleep=script.sleep, stop=script.done))
    assert got[1:] == [f"line {n}" for n in range(5)]


def test_a_read_during_a_rotation_takes_every_file_once_in_order(
    paths: FleetPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The files are opened one by one, oldest first: a rotation between two opens moved
    a file not yet opened to a name already taken, so that file was missing."""
    path = write(paths, "line 0\n", ".2")
    write(paths, "line 1\n", ".1")
    write(paths, "line 2\n")
    opening = transcript._open_read
    calls = 0

    def rotating_at_the_second_open(candidate: Path) -> int | None:
        nonlocal calls
        calls += 1
        if calls == 2:
            transcript.rotate(path.with_name("a1.log"), 5)
            append(path.with_name("a1.log"), "line 3\n")()  # type: ignore[operator]
        return opening(candidate)

    monkeypatch.setattr(transcript, "_open_read", rotating_at_the_second_open)
    got = transcript.read(paths, "a1", lines=10, generation="all").splitlines()
    assert got == [f"line {n}" for n in range(4)]


def test_follow_of_a_missing_transcript_is_no_transcript(paths: FleetPaths) -> None:
    with pytest.raises(NoTranscript):
        next(transcript.follow(paths, "a1", lines=10, stop=lambda: True))


# Linear: a few seconds at most (following renders the appended MiB on the emulator, about
# 3 s for the worst shape, 350 000 line feeds, on a loaded machine more); quadratic was
# minutes to hours.
@pytest.mark.timeout(60)
@pytest.mark.parametrize("data", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_reading_and_following_a_mebibyte_of_anything_is_linear(paths: FleetPaths, data: bytes) -> None:
    path = transcript.log_path(paths, "a1")
    # Each run ends in a visible character: a run of \r right before a line end is the easy case.
    path.write_bytes(header(1).encode() + data + b"|\r\n" + header(2).encode() + data + b"|\r\nlast line\r\n")
    for generation in transcript.GENERATIONS:
        assert transcript.read(paths, "a1", lines=50, generation=generation)
    assert transcript.read(paths, "a1", lines=1).endswith("last line")

    def grow() -> None:
        with path.open("ab") as handle:
            handle.write(data + b"|\r\nfollowed to the end\r\n")

    script = Script([grow, *([lambda: None] * 3)])
    got = collect(transcript.follow(paths, "a1", lines=1, sleep=script.sleep, stop=script.done))
    assert got[-1] == "followed to the end"


# --------------------------------------------------------------------------- the supervisor's header


def test_the_supervisor_prints_one_header_per_generation_with_the_agents_own_pid(tmp_path: Path) -> None:
    """Under the real supervisor (dash, a recording fake tmux): every run of a crashing
    agent starts with a header naming the pid the agent itself sees as ``$$``."""
    from tests.test_pane import Recorder, _env

    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    pane.install_script(run_dir)
    recorder = Recorder.install(tmp_path / "bin")
    spec = pane.PaneSpec(
        name="a1",
        target="=fleet:=a1",
        tmux=str(recorder.path),
        socket=str(tmp_path / "sock"),
        cwd=str(tmp_path),
        max_failures=3,
        failure_window=600,
    )
    agent = ["sh", "-c", 'echo "agent pid $$"; exit 3', "two words"]
    done = subprocess.run(
        pane.pane_argv(spec, agent, run_dir), capture_output=True, text=True, timeout=30, check=False, env=_env()
    )
    assert done.returncode == 3
    lines = done.stdout.splitlines()
    assert len(lines) == 6
    for header_line, agent_line in zip(lines[::2], lines[1::2], strict=True):
        match = HEADER_RE.fullmatch(header_line)
        assert match is not None, header_line
        assert agent_line == f"agent pid {match['pid']}"
        assert match["command"] == 'sh -c echo "agent pid $$"; exit 3 two words'
    assert len({HEADER_RE.fullmatch(line)["pid"] for line in lines[::2]}) == 3  # type: ignore[index]


def test_no_header_for_a_command_that_is_not_found(tmp_path: Path) -> None:
    from tests.test_pane import Recorder, _env

    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    pane.install_script(run_dir)
    recorder = Recorder.install(tmp_path / "bin")
    spec = pane.PaneSpec("a1", "=fleet:=a1", str(recorder.path), str(tmp_path / "s"), str(tmp_path), 3, 60)
    done = subprocess.run(
        pane.pane_argv(spec, ["no-such-agent-binary"], run_dir),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=_env(),
    )
    assert done.returncode == pane.NOT_FOUND
    assert done.stdout == ""  # nothing ran, so no generation began
