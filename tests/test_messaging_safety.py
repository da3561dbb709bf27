"""A message is data: it can neither end the bracketed paste nor type keys, it arrives whole
up to the documented size (through a pipe, not argv), and bad input is one line, never a hang.

The pure tests check the cleaning rule and the argument checks; the real-tmux tests deliver
into a pane whose program logs the exact bytes it reads (the tty in raw mode, so nothing is
cooked or echoed).
"""

from __future__ import annotations

import math
import os
import shlex
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetlib.errors import FleetError, FleetOperationError
from fleetlib.messaging import MAX_MESSAGE_BYTES, Messenger, clean_message
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


@given(st.text(alphabet=st.characters(exclude_characters="\x00")))
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


@pytest.fixture
def pane(tmp_path: Path) -> Iterator[tuple[Messenger, Path]]:
    """A fleet tmux server with one agent ``big`` whose pane logs every byte it reads.

    The agent asks for bracketed paste (as real agents do), then puts its tty in raw mode
    without echo and copies its input to a file, so the file holds exactly what the pane
    received: the paste markers, the text, and the submitting Enter (a CR).
    """
    home = tmp_path / "home"
    paths = FleetPaths(home, home / "fleet" / "roster.yaml")
    paths.run_dir.mkdir(parents=True, mode=0o700)
    log = tmp_path / "received"
    script = f"stty raw -echo; printf '\\033[?2004h'; exec cat > {shlex.quote(str(log))}"
    tmux = ["tmux", "-S", str(paths.tmux_socket)]
    subprocess.run([*tmux, "new-session", "-d", "-s", "fleet", "-n", "big", "sh", "-c", script], check=True)
    deadline = time.monotonic() + 10
    while not log.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # cat is reading
    roster = parse_roster("version: 1\nagents:\n  - {name: big, runtime: custom, command: [cat]}\n")
    yield Messenger(paths=paths, roster=roster, runner=SubprocessRunner(timeout=60)), log
    subprocess.run([*tmux, "kill-server"], capture_output=True, check=False)


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
