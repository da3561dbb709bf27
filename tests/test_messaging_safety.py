"""A message is data: it can neither end the bracketed paste nor type keys, it arrives whole
up to the documented size (through a pipe, not argv), and bad input is one line, never a hang.

The pure tests check the cleaning rule and the argument checks; the real-tmux tests deliver
into a pane whose program logs the exact bytes it reads (the tty in raw mode, so nothing is
cooked or echoed).
"""

from __future__ import annotations

import io
import math
import os
import shlex
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetlib.errors import FleetError, FleetOperationError
from fleetlib.messaging import MAX_MESSAGE_BYTES, Messenger, clean_message, newlines_stay_text, read_message
from fleetlib.paths import FleetPaths
from fleetlib.roster import parse_roster
from fleetlib.runner import Result, SubprocessRunner

ESC = "\x1b"
PASTE_START, PASTE_END = f"{ESC}[200~", f"{ESC}[201~"


# --------------------------------------------------------------------------- the cleaning rule


@pytest.mark.parametrize(
    ("message", "arrives"),
    [
        ("plain text", "plain text"),
        (f"before {PASTE_END} rm -rf ~\rafter", "before [201~ rm -rf ~\nafter"),
        (f"a{PASTE_START}b", "a[200~b"),
        ("one\r\ntwo\rthree\nfour", "one\ntwo\nthree\nfour"),
        ("tab\tkept, bell\a and backspace\b gone", "tab\tkept, bell and backspace gone"),
        ("C-c \x03 C-d \x04 C-z \x1a DEL \x7f", "C-c  C-d  C-z  DEL "),
        ("8-bit CSI \x9b201~ and NEL \x85", "8-bit CSI 201~ and NEL "),
        ("ünïcödé ✓ 日本語 🚀 $(x) ; C-c Enter", "ünïcödé ✓ 日本語 🚀 $(x) ; C-c Enter"),
    ],
)
def test_control_characters_are_removed_and_line_ends_become_newlines(message: str, arrives: str) -> None:
    assert clean_message(message) == arrives


CONTROLS = {*map(chr, range(0x20)), "\x7f", *map(chr, range(0x80, 0xA0))} - {"\n", "\t"}


# Lone surrogates (category Cs) are no text a message can hold: refused as not UTF-8, tested
# on their own. Hypothesis draws them rarely, so leaving them in failed a run now and then.
@given(st.text(alphabet=st.characters(exclude_characters="\x00", exclude_categories=("Cs",))))
def test_no_control_survives_and_everything_else_is_kept_in_order(message: str) -> None:
    cleaned = clean_message(message)
    assert not set(cleaned) & CONTROLS
    assert clean_message(cleaned) == cleaned
    kept = "".join(ch for ch in message.replace("\r\n", "\n").replace("\r", "\n") if ch not in CONTROLS)
    assert cleaned == kept


def test_a_nul_byte_is_refused_in_one_line() -> None:
    with pytest.raises(FleetError, match=r"^the message contains a NUL byte \(at character 1\)") as caught:
        clean_message("a\0b")
    assert "\n" not in str(caught.value)


def test_a_message_over_the_maximum_is_refused_in_one_line() -> None:
    clean_message("x" * MAX_MESSAGE_BYTES)
    with pytest.raises(FleetError, match="too long") as caught:
        clean_message("x" * (MAX_MESSAGE_BYTES + 1))
    assert "\n" not in str(caught.value)
    with pytest.raises(FleetError, match="too long"):
        clean_message("é" * (MAX_MESSAGE_BYTES // 2 + 1))  # the limit is in UTF-8 bytes


@pytest.mark.parametrize(
    ("message", "where"),
    [("echo \udcff", "byte 0xff at character 5"), ("\udcc3(", "byte 0xc3 at character 0"), ("a\ud800", "U+D800")],
)
def test_a_message_that_is_not_utf8_is_refused_in_one_line(message: str, where: str) -> None:
    # Defect: `--message $'echo \xff'` (argv bytes arrive as lone surrogates) ended in a traceback.
    with pytest.raises(FleetError, match=r"^the message is not valid UTF-8") as caught:
        clean_message(message)
    assert where in str(caught.value)
    assert "\n" not in str(caught.value)
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    ("argument", "stdin", "text"),
    [
        ("hello", b"", "hello"),
        ("-", b"piped\n", "piped"),  # the newline echo adds: Enter already submits
        ("-", b"two\nlines\r\n", "two\nlines"),
        ("-", b"kept\n\n", "kept\n"),
        ("-", "ünï ✓\n".encode(), "ünï ✓"),
    ],
)
def test_read_message_from_the_argument_or_stdin(argument: str, stdin: bytes, text: str) -> None:
    assert read_message(argument, io.BytesIO(stdin)) == text


@pytest.mark.parametrize(("argument", "stdin"), [("-", b"echo \xff\n"), ("-", b"\xc3("), ("echo \udcff", b"")])
def test_read_message_refuses_what_is_not_utf8_in_one_line(argument: str, stdin: bytes) -> None:
    with pytest.raises(FleetError, match=r"^the message is not valid UTF-8 [(]byte 0x(ff|c3) at character") as caught:
        read_message(argument, io.BytesIO(stdin))
    assert "\n" not in str(caught.value)


class EndlessStdin(io.RawIOBase):
    """``yes |`` on stdin, as far as a test can afford: 64 MiB, counting what was read."""

    def __init__(self) -> None:
        self.left = 64 * 1024 * 1024

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = min(len(buffer), self.left)
        buffer[:size] = b"y" * size
        self.left -= size
        return size


def test_read_message_stops_reading_an_endless_stdin_in_one_line() -> None:
    # Defect: `fleet send --message - < /dev/zero` read stdin to its end: a MemoryError
    # traceback under a memory limit, the whole machine's memory without one.
    stdin = EndlessStdin()
    with pytest.raises(FleetError, match=r"^the message on stdin is over \d+ bytes") as caught:
        read_message("-", io.BufferedReader(stdin))
    assert "\n" not in str(caught.value)
    assert 64 * 1024 * 1024 - stdin.left <= 5 * MAX_MESSAGE_BYTES  # it stopped reading


@pytest.mark.parametrize(
    ("runtime", "pane_flag", "stays_text"),
    [
        *((runtime, "", True) for runtime in ("claude", "codex", "gemini", "opencode")),
        ("shell", "", False),  # sh -i (dash) never asks for bracketed paste
        ("my-cli", "", False),  # a custom runtime: nobody can tell, so a newline may be Enter
        ("shell", "1", True),  # tmux 3.7+ reports the pane's own mode: it decides
        ("claude", "0", False),
    ],
)
def test_newlines_stay_text_only_in_a_pane_that_takes_bracketed_paste(
    runtime: str, pane_flag: str, stays_text: bool
) -> None:
    assert newlines_stay_text(runtime, pane_flag) is stays_text


class NoRunner:
    """A runner that must not be used: the checks come before anything runs."""

    dry_run = False

    def run(self, argv: Sequence[str], **kwargs: object) -> Result:
        raise AssertionError(f"ran {list(argv)}")

    def run_all(self, argvs: Sequence[Sequence[str]], **kwargs: object) -> list[Result]:
        raise AssertionError("ran")

    def interactive(self, argv: Sequence[str]) -> int:
        raise AssertionError("ran")


ROSTER = parse_roster("version: 1\nagents:\n  - {name: a, runtime: shell}\n")


@pytest.mark.parametrize("timeout", [math.nan, math.inf, -math.inf, 0.0, -1.0])
def test_a_timeout_that_is_not_finite_and_positive_is_refused_before_anything_runs(
    tmp_path: Path, timeout: float
) -> None:
    messenger = Messenger(paths=FleetPaths(tmp_path, tmp_path / "r.yaml"), roster=ROSTER, runner=NoRunner())
    with pytest.raises(FleetError, match="--timeout must be a finite number of seconds > 0") as caught:
        messenger.send("a", "hello", timeout=timeout)
    assert "\n" not in str(caught.value)
    with pytest.raises(FleetError, match="NUL"):
        messenger.send("a", "a\0b")
    assert not (tmp_path / "fleet").exists()


# --------------------------------------------------------------------------- real tmux


def _pane(tmp_path: Path, runtime: str, *, paste: bool) -> Iterator[tuple[Messenger, Path]]:
    """A fleet tmux server with one agent ``big`` (of ``runtime``) whose pane logs every
    byte it reads.

    The agent asks for bracketed paste when ``paste`` (as real agents do), then puts its tty
    in raw mode without echo and copies its input to a file, so the file holds exactly what
    the pane received: the paste markers, the text, and the submitting Enter (a CR).
    """
    home = tmp_path / "home"
    paths = FleetPaths(home, home / "fleet" / "roster.yaml")
    paths.run_dir.mkdir(parents=True, mode=0o700)
    log = tmp_path / "received"
    ask = "printf '\\033[?2004h'; " if paste else ""
    script = f"stty raw -echo; {ask}exec cat > {shlex.quote(str(log))}"
    tmux = ["tmux", "-S", str(paths.tmux_socket)]
    subprocess.run([*tmux, "new-session", "-d", "-s", "fleet", "-n", "big", "sh", "-c", script], check=True)
    deadline = time.monotonic() + 10
    while not log.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # cat is reading
    roster = parse_roster(f"version: 1\nagents:\n  - {{name: big, runtime: {runtime}, command: [cat]}}\n")
    yield Messenger(paths=paths, roster=roster, runner=SubprocessRunner(timeout=60)), log
    subprocess.run([*tmux, "kill-server"], capture_output=True, check=False)


@pytest.fixture
def pane(tmp_path: Path) -> Iterator[tuple[Messenger, Path]]:
    """An agent of a runtime that takes bracketed paste (the label ``claude``), whose
    program asks for it."""
    yield from _pane(tmp_path, "claude", paste=True)


@pytest.fixture(params=["shell", "my-cli"])
def line_pane(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Messenger, Path]]:
    """An agent whose program never asks for bracketed paste: the ``shell`` runtime, and a
    custom one (nobody can tell what it does)."""
    yield from _pane(tmp_path, request.param, paste=False)


def _wait_for_size(path: Path, size: int, limit: float = 60.0) -> bytes:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if path.stat().st_size >= size:
            time.sleep(0.1)
            return path.read_bytes()
        time.sleep(0.05)
    raise AssertionError(f"{path} has {path.stat().st_size} of {size} bytes")


@pytest.mark.tmux
def test_a_one_megabyte_message_arrives_whole(pane: tuple[Messenger, Path]) -> None:
    messenger, log = pane
    line = "0123456789abcdef ünï ✓ $(x) ; C-c\n"
    message = (line * (1024 * 1024 // len(line.encode()) + 1)).rstrip("\n")
    assert len(message.encode()) >= 1024 * 1024
    messenger.send("big", message, verify=False)
    expected = (PASTE_START + message + PASTE_END + "\r").encode()
    assert _wait_for_size(log, len(expected)) == expected


@pytest.mark.tmux
def test_the_paste_end_marker_cannot_break_out_of_the_paste(pane: tuple[Messenger, Path]) -> None:
    messenger, log = pane
    messenger.send("big", f"before {PASTE_END} rm -rf ~\rafter", verify=False)
    expected = f"{PASTE_START}before [201~ rm -rf ~\nafter{PASTE_END}\r".encode()
    received = _wait_for_size(log, len(expected))
    assert received == expected
    assert received.count(PASTE_END.encode()) == 1
    assert received.count(b"\r") == 1  # only our Enter submits


@pytest.mark.tmux
def test_an_oversized_message_is_one_line_and_nothing_arrives(pane: tuple[Messenger, Path]) -> None:
    messenger, log = pane
    with pytest.raises(FleetError, match="too long"):
        messenger.send("big", "x" * (MAX_MESSAGE_BYTES + 1), verify=False)
    time.sleep(0.3)
    assert log.read_bytes() == b""


@pytest.mark.tmux
def test_verification_ends_at_the_deadline_even_with_a_frozen_clock(pane: tuple[Messenger, Path]) -> None:
    messenger, _ = pane
    messenger.clock = lambda: 0.0  # an injected clock that never moves
    started = time.monotonic()
    with pytest.raises(FleetOperationError, match=r"did not accept the message within 0\.5s"):
        messenger.send("big", "anyone there?", timeout=0.5)
    assert time.monotonic() - started < 5


@pytest.mark.tmux
@pytest.mark.parametrize("kind", ["fifo", "symlink", "directory"])
def test_an_odd_send_lock_is_one_line_and_no_hang(pane: tuple[Messenger, Path], kind: str) -> None:
    messenger, log = pane
    lock = messenger.paths.run_dir / "send-big.lock"
    if kind == "fifo":
        os.mkfifo(lock)
    elif kind == "symlink":
        lock.symlink_to(log)
    else:
        lock.mkdir()
    started = time.monotonic()
    with pytest.raises(FleetError) as caught:
        messenger.send("big", "hi", verify=False)
    assert str(lock) in str(caught.value)
    assert "\n" not in str(caught.value)
    assert time.monotonic() - started < 5
    assert log.read_bytes() == b""


@pytest.mark.tmux
@pytest.mark.parametrize("message", ["echo FIRST\necho SECOND", "one\r\ntwo", "trailing newline\n"])
def test_a_multi_line_message_to_a_pane_without_bracketed_paste_is_refused_and_nothing_arrives(
    line_pane: tuple[Messenger, Path], message: str
) -> None:
    # Defect: each newline acted as Enter there: the first line ran on its own.
    messenger, log = line_pane
    with pytest.raises(FleetError, match="does not take bracketed paste") as caught:
        messenger.send("big", message, verify=False)
    assert "\n" not in str(caught.value)
    assert caught.value.exit_code == 2
    messenger.send("big", "one line", verify=False)  # a single line is fine: its Enter is ours
    assert _wait_for_size(log, len(b"one line\r")) == b"one line\r"


@pytest.mark.tmux
def test_a_message_that_is_not_utf8_is_refused_and_nothing_arrives(pane: tuple[Messenger, Path]) -> None:
    messenger, log = pane
    with pytest.raises(FleetError, match="not valid UTF-8"):
        messenger.send("big", "echo \udcff", verify=False)
    messenger.send("big", "fine", verify=False)
    assert _wait_for_size(log, len(f"{PASTE_START}fine{PASTE_END}\r")) == f"{PASTE_START}fine{PASTE_END}\r".encode()
