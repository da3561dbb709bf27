"""The roster and its lock as files: symlinks followed (roster) or refused (lock), odd files
and failing system calls reported in one line, never a hang, never a half-written roster."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from fleetlib.errors import FleetError
from fleetlib.roster import Agent, add_agent, init_roster, load_roster, remove_agent

TEXT = "# mine\nversion: 1\nagents:\n  - name: a\n    runtime: shell\n"


def _within(seconds: float, call: Callable[[], object]) -> BaseException | None:
    """Run ``call`` in a thread; fail the test if it does not return in time (a hang)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"call still running after {seconds}s (a hang)"
    return outcome[0]


def _one_line_error(call: Callable[[], object]) -> str:
    error = _within(5, call)
    assert isinstance(error, FleetError), repr(error)
    message = str(error)
    assert "\n" not in message
    return message


def test_edits_follow_a_symlinked_roster_to_its_target(tmp_path: Path) -> None:
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    target = dotfiles / "roster.yaml"
    target.write_text(TEXT)
    link = tmp_path / "fleet" / "roster.yaml"
    link.parent.mkdir()
    link.symlink_to("../dotfiles/roster.yaml")
    add_agent(link, Agent(name="b", runtime="shell"))
    assert link.is_symlink()
    assert load_roster(target).names() == ["a", "b"]
    assert (dotfiles / "roster.yaml.lock").is_file()
    assert not (link.parent / "roster.yaml.lock").exists()
    remove_agent(link, "a")
    assert link.is_symlink()
    assert target.read_text().startswith("# mine\n")
    assert load_roster(link).names() == ["b"]
    init_roster(link, force=True)
    assert link.is_symlink()
    assert load_roster(target).names() == ["coder0"]
    assert load_roster(target).agents[0].runtime == "shell"


def _roster(tmp_path: Path) -> Path:
    path = tmp_path / "roster.yaml"
    path.write_text(TEXT)
    return path


@pytest.mark.parametrize("kind", ["symlink", "dangling-symlink", "directory", "fifo"])
def test_an_odd_lock_file_is_one_line_and_no_hang(tmp_path: Path, kind: str) -> None:
    path = _roster(tmp_path)
    lock = tmp_path / "roster.yaml.lock"
    if kind == "symlink":
        (tmp_path / "elsewhere").write_text("")
        lock.symlink_to(tmp_path / "elsewhere")
    elif kind == "dangling-symlink":
        lock.symlink_to(tmp_path / "nowhere")
    elif kind == "directory":
        lock.mkdir()
    else:
        os.mkfifo(lock)
    message = _one_line_error(lambda: add_agent(path, Agent(name="b", runtime="shell")))
    assert str(lock) in message
    assert path.read_text() == TEXT
    assert not (tmp_path / "nowhere").exists()


def test_an_unwritable_lock_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests may run as root, where mode bits do not refuse anything: fail the open itself.
    path = _roster(tmp_path)
    real_open = os.open

    def deny(file: str | os.PathLike[str], flags: int, mode: int = 0o777, **kw: object) -> int:
        if str(file).endswith(".lock"):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, flags, mode)

    monkeypatch.setattr(os, "open", deny)
    message = _one_line_error(lambda: remove_agent(path, "a"))
    assert "roster.yaml.lock" in message
    assert "Permission denied" in message
    assert path.read_text() == TEXT


@pytest.mark.parametrize(
    ("where", "code"),
    [("mkstemp", errno.ENOSPC), ("mkstemp", errno.EROFS), ("replace", errno.ENOSPC), ("fsync", errno.EIO)],
)
def test_a_failing_write_is_one_line_and_leaves_the_roster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, code: int
) -> None:
    path = _roster(tmp_path)

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    target = {"mkstemp": (tempfile, "mkstemp"), "replace": (os, "replace"), "fsync": (os, "fsync")}[where]
    monkeypatch.setattr(*target, fail)
    for edit in (
        lambda: add_agent(path, Agent(name="b", runtime="shell")),
        lambda: remove_agent(path, "a"),
        lambda: init_roster(path, force=True),
    ):
        message = _one_line_error(edit)
        assert str(path) in message
        assert os.strerror(code) in message
        assert path.read_text() == TEXT
    assert sorted(p.name for p in tmp_path.iterdir()) == ["roster.yaml", "roster.yaml.lock"]


def test_a_roster_that_is_a_fifo_or_directory_is_one_line_and_no_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "roster.yaml"
    os.mkfifo(fifo)
    assert "not a regular file" in _one_line_error(lambda: load_roster(fifo))
    assert "not a regular file" in _one_line_error(lambda: add_agent(fifo, Agent(name="b", runtime="shell")))
    directory = tmp_path / "dir.yaml"
    directory.mkdir()
    assert str(directory) in _one_line_error(lambda: load_roster(directory))


def test_a_huge_roster_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "roster.yaml"
    with path.open("w") as handle:
        handle.truncate(64 * 1024 * 1024)
    assert "too large" in _one_line_error(lambda: load_roster(path))


@pytest.mark.parametrize("through_a_link", [False, True])
def test_init_force_never_replaces_what_is_not_a_regular_file(tmp_path: Path, through_a_link: bool) -> None:
    # Defect: `fleet roster.init --force --roster /dev/null` replaced /dev/null with the
    # starter roster (as root). A FIFO stands in for the device here.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    path = tmp_path / "roster.yaml"
    if through_a_link:
        path.symlink_to(fifo)
    else:
        path = fifo
    before = sorted(os.listdir(tmp_path))
    message = _one_line_error(lambda: init_roster(path, force=True))
    assert message.startswith(f"roster {fifo} is not a regular file (a FIFO)")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(os.listdir(tmp_path)) == before  # no .lock, no temporary file left beside it


def test_a_refused_edit_leaves_no_lock_file_behind(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    assert "roster not found" in _one_line_error(lambda: add_agent(missing, Agent(name="b", runtime="shell")))
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    assert "not a regular file" in _one_line_error(lambda: remove_agent(fifo, "a"))
    assert sorted(os.listdir(tmp_path)) == ["fifo.yaml"]
