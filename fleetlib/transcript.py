"""Agent transcripts: every byte each agent writes, kept in ``<home>/fleet/logs/<name>.log``.

**Capture.** The window that runs an agent gets ``pipe-pane -O`` in the same tmux command
sequence as its ``new-window`` (:func:`fleetlib.tmux.agent_window_commands`). tmux runs
no other work between two commands of one sequence, so the pipe exists before tmux first
reads the new pane: the transcript starts at the pane's first byte. The pipe's reader is
a small writer that appends to ``<file>`` (:data:`fleetlib.capture.WRITER_PERL`, run by
:func:`pipe_shell_command`), a child of the tmux server. tmux copies what the pane
prints into its own buffer for the pipe and never waits for the reader, so a stalled
writer (slow or full disk) never blocks the agent; the backlog costs tmux server memory
until the writer catches up. Known limit: the backlog tmux still holds when the window is
killed (``fleet restart``) or a live pipe is replaced is dropped by tmux; the kernel's
socket buffer (what the writer has not read yet) is not. So the fleet never replaces a
live pipe: rotation only renames. A writer that fails to write (full disk) exits; tmux
closes the pipe on its next write into it (that output is not in the transcript): the
agent runs on, its transcript pauses until the pipe is renewed (:data:`PIPED_FORMAT`,
:func:`repipe_commands`) or the window is created again.

**Generations.** Before each run of the agent, the pane supervisor (:mod:`fleetlib.pane`)
prints one header line, :data:`HEADER_PRINTF` (UTC time, pid of the agent process
itself, command), so it lands on the screen and in the transcript in order.
:data:`HEADER_RE` finds it again (anywhere in a line: the previous generation may have
died mid-line). An agent that prints a line looking like a header splits its own
generation; nothing else is affected.

**Rotation.** The fleet's watcher calls, per agent and tick, :func:`needs_rotation` with
the roster's ``log_max_bytes``, then :func:`rotate` with ``log_keep``: a rename. The
writer checks, before each chunk it writes, that ``<name>.log`` is still the file it
holds; once it is not, it opens the name again (a fresh file) and writes on there. So
nothing is lost and nothing is out of order: every byte before the first chunk written
after the rename is in ``<name>.log.1``, every byte after it in ``<name>.log`` (a line
can be split at that point; readers join the files). Until the agent prints again there
is no ``<name>.log``. An odd file at a rotated name never stops rotation and is never
followed (:func:`rotate`).

**Reading** (:func:`read`, :func:`follow`) treats ``<name>.log.K ... <name>.log.1,
<name>.log`` as one stream and renders each generation on a terminal emulator of the size
its header records (:mod:`fleetlib.terminal`, whose module docstring states the reading
rule: what scrolled off, screens before they were cleared, the final screen; redraws
read once). It reads only the tail it needs (from the end, at most :data:`READ_CAP`
bytes) and renders at most the last :data:`RENDER_CAP` bytes of a generation, in time
linear in what it reads, whatever the bytes. :func:`read_raw` and :func:`follow_raw`
give the bytes as written. Every file is opened like the run
dir's files (:func:`fleetlib.rundir.open_regular`: no symlinks, never blocking); a FIFO,
directory or symlink at ``<name>.log`` is one error line, one at a rotated name is
skipped.
"""

from __future__ import annotations

import codecs
import contextlib
import itertools
import os
import re
import signal
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, get_args

from fleetlib import procs, tmux
from fleetlib.capture import (
    HEADER_PRINTF,
    HEADER_RE,
    LOGS_DIR_NAME,
    PIPED_FORMAT,
    SUFFIX,
    header_line,
    logs_in,
    pipe_shell_command,
)
from fleetlib.errors import FleetError
from fleetlib.paths import FleetPaths
from fleetlib.rundir import (
    RunFileError,
    ensure_private_dir,
    kind_of,
    not_regular,
    open_regular,
    os_errors,
    read_fd_capped,
)
from fleetlib.screen import screen_lines, size

if TYPE_CHECKING:
    # The emulator (pyte) is imported where a transcript is rendered, not by every
    # command that only writes one or names its file.
    from fleetlib import terminal

# The capture side (:mod:`fleetlib.capture`) is re-exported: callers name a transcript's
# header and file here.
__all__ = [
    "BLOCK",
    "FOLLOW_POLL_S",
    "GENERATIONS",
    "HEADER_PRINTF",
    "HEADER_RE",
    "LOGS_DIR_NAME",
    "PENDING_CAP",
    "PIPED_FORMAT",
    "READ_CAP",
    "REDRAW_BYTES_PER_LINE",
    "RENDER_CAP",
    "SUFFIX",
    "Generation",
    "NoTranscript",
    "check_generation",
    "ensure_log_dir",
    "follow",
    "follow_raw",
    "header_line",
    "log_dir",
    "log_path",
    "logs_in",
    "needs_rotation",
    "odd_files",
    "pipe_shell_command",
    "read",
    "read_path",
    "read_raw",
    "repipe_commands",
    "rotate",
    "rotated",
    "wake_writers",
    "writer_left_behind",
]

_HEADER_BYTES: Final = re.compile(HEADER_RE.pattern.encode())

Generation = Literal["current", "previous", "all"]
GENERATIONS: Final[tuple[str, ...]] = get_args(Generation)
READ_CAP: Final = 64 * 1024 * 1024  # bytes read from the end of the transcript, at most
BLOCK: Final = 64 * 1024
FOLLOW_POLL_S: Final = 0.25
# A partial line is held back for its newline only up to this size: an agent that rewrites
# one line with "\r" for hours would otherwise grow it (and the copy made every poll) for ever.
PENDING_CAP: Final = 1024 * 1024
# Bytes of a generation rendered (from its end) in search of more lines when they render to
# too few because a TUI redraws in place: the emulator takes about a second per MiB of such
# output. Lines that are there are read however far back they are (up to READ_CAP).
RENDER_CAP: Final = 2 * 1024 * 1024
# Past RENDER_CAP, output that renders to less than a line per this many bytes is a screen
# redrawn in place (a TUI): reading further back would find more of the same.
REDRAW_BYTES_PER_LINE: Final = 1024


class NoTranscript(FleetError):
    """The agent has no transcript yet (it never ran since transcripts exist). Exit 1."""

    exit_code = 1


# --------------------------------------------------------------------------- paths


def log_dir(paths: FleetPaths) -> Path:
    """``<home>/fleet/logs``: private (0700), created by :func:`ensure_log_dir`."""
    return logs_in(paths.fleet_dir)


def log_path(paths: FleetPaths, name: str) -> Path:
    """``<home>/fleet/logs/<name>.log``, the agent's current transcript file."""
    return log_dir(paths) / f"{name}{SUFFIX}"


def rotated(path: Path, index: int) -> Path:
    """``<path>.<index>``: ``.log.1`` is the newest rotated file."""
    return path.with_name(f"{path.name}.{index}")


def ensure_log_dir(paths: FleetPaths) -> Path:
    """Create the transcripts directory 0700 (or check an existing one is private and
    ours, like the run dir); :class:`fleetlib.rundir.RunDirError` otherwise. Both
    backends call it before any window is created: a pipe into a missing directory
    would lose the whole generation.

    Every transcript in it (``*.log``) must be a regular file, or
    :class:`fleetlib.rundir.RunFileError` names it: a pipe's writer would follow a
    symlink and append an agent's output to whatever it points at, block on a FIFO (tmux
    then buffers the pane's output without bound) or fail on a directory, every time the
    watcher renews it."""
    directory = log_dir(paths)
    ensure_private_dir(directory, "fleet transcripts directory")
    with os_errors("list", directory):
        names = sorted(name for name in os.listdir(directory) if name.endswith(SUFFIX))
    for name in names:
        with os_errors("inspect", directory / name), contextlib.suppress(FileNotFoundError):
            mode = os.lstat(directory / name).st_mode
            if stat.S_ISLNK(mode):
                raise RunFileError(
                    f"refusing to write transcript {directory / name}: it is a symlink (an agent's output would be "
                    f"appended to its target); remove it (rm {directory / name}) and retry"
                )
            if not stat.S_ISREG(mode):
                raise not_regular(directory / name, "transcript", mode)
    return directory


def repipe_commands(name: str, path: Path) -> list[str]:
    """tmux commands (no client prefix) that give the pane a new pipe into ``path``: the
    repair for a live pane whose writer died (a write error such as a full disk ends it;
    tmux then closes the pipe and :data:`PIPED_FORMAT` expands to ``0``): the transcript
    resumes from the next byte the pane prints. Never needed for a rotation: on a pipe
    that is still open, ``pipe-pane`` replaces it at once and tmux drops what it had
    queued for the old one. Run on a window that is gone, tmux reports "can't find
    window"; on a dead pane (tmux 3.3a) "target pane has exited": either way nothing
    changes (no pane-died hook)."""
    return tmux.pipe_pane_commands(name, path)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class _Part:
    path: Path
    size: int
    ident: tuple[int, int]  # device and inode


@dataclass(frozen=True)
class _Mark:
    """Where a follower starts: ``size`` bytes into the file ``ident`` (device and inode;
    None when there was no transcript file: it starts at the next one's first byte)."""

    ident: tuple[int, int] | None
    size: int


def _open_read(path: Path) -> int | None:
    """A read-only fd of the regular file ``path``; None when it does not exist."""
    try:
        return open_regular(path, os.O_RDONLY, what="transcript")
    except FileNotFoundError:
        return None


# Attempts at a consistent set of open files before taking one as it comes.
_OPEN_TRIES: Final = 5


def _parts(path: Path) -> list[tuple[int, _Part]]:
    """Open ``path.N ... path.1, path`` (oldest first, only those that exist): each file
    once, as the names held them at one moment (they are opened one by one; when a
    rotation renamed them meanwhile, they are opened again). A rotated name that holds no
    regular file (a symlink, FIFO, directory ...) is skipped, never followed: rotation
    goes on past it too (:func:`rotate`); an odd file at ``path`` itself is a
    :class:`fleetlib.rundir.RunFileError`."""
    for _ in range(_OPEN_TRIES - 1):
        indices, opened = _open_parts(path)
        if indices == sorted(_rotated_indices(path)) and all(_holds(part) for _, part in opened):
            return opened
        _close(opened)
    return _open_parts(path)[1]  # rotating all along (a rotation is every few seconds at most)


def _holds(part: _Part) -> bool:
    """Whether ``part.path`` still names the file ``part`` was opened as."""
    try:
        info = os.lstat(part.path)
    except OSError:
        return False
    return (info.st_dev, info.st_ino) == part.ident


def _open_parts(path: Path) -> tuple[list[int], list[tuple[int, _Part]]]:
    """The rotated indices listed (ascending) and the files opened (:func:`_parts`, once)."""
    listed = sorted(_rotated_indices(path))
    indices = listed[::-1]
    opened: list[tuple[int, _Part]] = []
    try:
        for candidate in [*(rotated(path, i) for i in indices), path]:
            if candidate != path and _odd(candidate):
                continue
            fd = _open_read(candidate)
            if fd is not None:
                with os_errors("inspect", candidate):
                    info = os.fstat(fd)
                opened.append((fd, _Part(candidate, info.st_size, (info.st_dev, info.st_ino))))
    except BaseException:
        _close(opened)
        raise
    return listed, opened


def _up_to(opened: list[tuple[int, _Part]], path: Path, until: _Mark | None) -> list[tuple[int, _Part]]:
    """The parts of the stream (:func:`_parts` of ``path``) as if it ended at ``until``
    (all when None): the file it names is taken up to its size, the files after it are
    left out (closed); when that file is gone (``log_keep: 0`` removed it), ``path`` is,
    since it came after."""
    if until is None:
        return opened
    idents = [part.ident for _, part in opened]
    if until.ident in idents:
        end = idents.index(until.ident)
        fd, part = opened[end]
        opened[end] = (fd, _Part(part.path, min(part.size, until.size), part.ident))
    else:
        end = len(opened) - (1 if opened and opened[-1][1].path == path else 0) - 1
    _close(opened[end + 1 :])
    return opened[: end + 1]


def _stream(path: Path, until: _Mark | None) -> list[tuple[int, _Part]]:
    """The open parts of the transcript ``path`` up to ``until`` (:func:`_up_to`);
    :class:`NoTranscript` when there is no file at all."""
    opened = _parts(path)
    if not opened:
        raise NoTranscript(f"no transcript for {path.name.removesuffix(SUFFIX)} yet ({path} does not exist)")
    return _up_to(opened, path, until)


def _close(opened: Sequence[tuple[int, _Part]]) -> None:
    for fd, _ in opened:
        os.close(fd)


def _odd(path: Path) -> bool:
    """Whether something other than a regular file is at ``path`` (False when nothing is)."""
    with os_errors("inspect", path):
        try:
            return not stat.S_ISREG(os.lstat(path).st_mode)
        except FileNotFoundError:
            return False


def _rotated_indices(path: Path) -> list[int]:
    """The ``N`` of every ``<path>.N`` (N >= 1, written without leading zeros) beside ``path``."""
    prefix = f"{path.name}."
    with os_errors("list", path.parent):
        try:
            names = os.listdir(path.parent)
        except FileNotFoundError:
            return []
    indices = [_index(entry[len(prefix) :]) for entry in names if entry.startswith(prefix)]
    return [index for index in indices if index is not None]


def _index(text: str) -> int | None:
    """``N`` when ``text`` is a rotated file's index (1 to 99999, no leading zeros); else None."""
    if text.isdigit() and len(text) < 6 and text == str(int(text)) and int(text) >= 1:
        return int(text)
    return None


def odd_files(directory: Path) -> list[tuple[Path, int]]:
    """Every transcript name (``<name>.log``) or rotated name (``<name>.log.N``) in the
    transcripts ``directory`` that holds something other than a regular file, with its
    ``lstat`` mode, sorted by path (none when the directory does not exist). ``fleet
    doctor`` reports them: one at a transcript name stops the agent's start
    (:func:`ensure_log_dir`); one at a rotated name is skipped by readers and removed or
    skipped by :func:`rotate`. :class:`fleetlib.rundir.RunFileError` if it cannot be listed."""
    with os_errors("list", directory):
        try:
            names = sorted(os.listdir(directory))
        except FileNotFoundError:
            return []
    found = []
    for entry in names:
        base, _, tail = entry.rpartition(".")
        if not (entry.endswith(SUFFIX) or (base.endswith(SUFFIX) and _index(tail) is not None)):
            continue
        with os_errors("inspect", directory / entry), contextlib.suppress(FileNotFoundError):
            mode = os.lstat(directory / entry).st_mode
            if not stat.S_ISREG(mode):
                found.append((directory / entry, mode))
    return found


def _tail(opened: Sequence[tuple[int, _Part]], wanted: Callable[[bytes, bool], bool], cap: int) -> tuple[bytes, bool]:
    """Bytes from the end of the concatenated parts, read backwards in growing blocks until
    ``wanted(data, at_start)`` says enough, the start is reached or ``cap`` bytes are read.
    Returns the data and whether it begins at the stream's start."""
    total = sum(part.size for _, part in opened)
    start, block = total, BLOCK
    data = b""
    while True:
        begin = max(0, start - block, total - cap)
        data = _pread_span(opened, begin, start) + data
        start = begin
        if start == 0 or total - start >= cap or wanted(data, start == 0):
            return data, start == 0
        block *= 2


def _pread_span(opened: Sequence[tuple[int, _Part]], begin: int, end: int) -> bytes:
    chunks: list[bytes] = []
    offset = 0
    for fd, part in opened:
        low, high = max(begin, offset), min(end, offset + part.size)
        if low < high:
            with os_errors("read", part.path):
                os.lseek(fd, low - offset, os.SEEK_SET)
            chunks.append(read_fd_capped(fd, high - low, part.path))
        offset += part.size
    return b"".join(chunks)


def _segment(data: bytes, generation: str) -> tuple[bytes, bool] | None:
    """The bytes of ``generation`` within ``data`` and whether they begin at a header (so
    are complete at the front); None while ``data`` does not yet show where it ends."""
    heads = [m.start() for m in _HEADER_BYTES.finditer(data)]
    if generation == "all":
        return data, False
    back = 0 if generation == "current" else 1
    if len(heads) < back:
        return None
    end = len(data) if back == 0 else heads[-1]
    starts = heads[: len(heads) - back]
    if starts:
        return data[starts[-1] : end], True
    return data[:end], False


def _render(raw: bytes, *, whole: bool) -> tuple[list[str], terminal.LiveText | None]:
    """The lines of ``raw`` (one or more generations, or the end of one), each generation
    rendered on a fresh screen of the size its header records (:mod:`fleetlib.terminal`),
    and the renderer of the last one. Unless ``whole``, ``raw`` may start mid-line or
    mid-sequence: its first line is dropped."""
    if not whole:
        raw = raw[raw.find(b"\n") + 1 :] if b"\n" in raw else b""
    starts = [m.start() for m in _HEADER_BYTES.finditer(raw)]
    bounds = sorted({0, *starts, len(raw)})
    lines: list[str] = []
    live = None
    for begin, end in itertools.pairwise(bounds):
        live = _renderer(_HEADER_BYTES.match(raw, begin))
        live.feed(raw[begin:end].decode("utf-8", "replace"))
        live.flush()
        lines += live.lines()
    return lines, live


def _renderer(header: re.Match[bytes] | None) -> terminal.LiveText:
    """A renderer for the generation that ``header`` (None: unknown) starts, of its pane's size."""
    columns = rows = None
    if header is not None and header["columns"] and header["rows"]:
        columns, rows = int(header["columns"]), int(header["rows"])
    from fleetlib import terminal  # noqa: PLC0415 - pyte only where a transcript is rendered

    return terminal.LiveText(*size(columns, rows))


def _last_lines(rendered: list[str], lines: int) -> str:
    """The last ``lines`` of ``rendered``, by :func:`fleetlib.screen.screen_lines`."""
    return screen_lines("\n".join(rendered), lines)


def read(paths: FleetPaths, name: str, *, lines: int, generation: str = "current") -> str:
    """The last ``lines`` lines (stripped) of the agent's transcript for ``generation``:

    ``current``   since the last generation header (the running or last run of the agent),
    ``previous``  the generation before it (possibly in the rotated ``<name>.log.1``...),
    ``all``       the whole transcript, rotated files included.

    The text starts with the generation's header line when that is among the lines.
    Empty when the generation holds no text (``previous`` of an agent that ran once).
    Raises :class:`NoTranscript` (exit 1) when no transcript file exists,
    :class:`fleetlib.rundir.RunFileError` (exit 2, one line) for a FIFO, directory or
    symlink at a transcript path, ``FleetError`` for an unknown ``generation``.
    """
    return read_path(log_path(paths, name), lines=lines, generation=generation)


def read_path(path: Path, *, lines: int, generation: str = "current") -> str:
    """:func:`read` for the transcript file ``path`` (and its rotated files)."""
    return _read_path(path, lines=lines, generation=generation)[0]


def _read_path(
    path: Path, *, lines: int, generation: str, until: _Mark | None = None
) -> tuple[str, terminal.LiveText | None]:
    """:func:`read_path`, and the renderer of the last generation read (None when none was);
    with ``until``, as if the stream ended there (:func:`follow` continues from it)."""
    check_generation(generation)
    if lines < 1:
        raise FleetError(f"lines must be at least 1, not {lines}")
    opened = _stream(path, until)
    try:
        # Read back until the generation's start or enough line ends, render; a screen that
        # redraws (few lines per byte) makes too few lines: then read and render 4 times more.
        want = BLOCK
        while True:

            def enough(data: bytes, at_start: bool, want: int = want) -> bool:
                found = _segment(data, generation)
                if found is None:
                    return False
                raw, from_header = found
                # Few line ends (a screen redrawn in place): no more than RENDER_CAP bytes.
                return from_header or (len(raw) >= want and (raw.count(b"\n") > lines or len(raw) >= RENDER_CAP))

            data, at_start = _tail(opened, enough, READ_CAP)
            found = _segment(data, generation)
            if found is None:  # the start was reached without the headers the generation needs
                return "", None
            raw, from_header = found
            # A segment that does not begin at a header begins where the data does.
            text, live = _render(raw, whole=from_header or at_start)
            redraws = len(raw) >= RENDER_CAP and len(raw) > REDRAW_BYTES_PER_LINE * max(1, len(text))
            if len(text) > lines or from_header or at_start or redraws or len(raw) >= READ_CAP:
                return _last_lines(text, lines), live
            want = len(raw) * 4 if len(raw) >= RENDER_CAP else min(len(raw) * 4, RENDER_CAP)
    finally:
        for fd, _ in opened:
            os.close(fd)


def read_raw(paths: FleetPaths, name: str, *, lines: int, generation: str = "current") -> bytes:
    """The bytes of ``generation`` exactly as the agent wrote them, from the start of the
    ``lines``-th line end from the end (``fleet logs --raw``). Same errors as :func:`read`."""
    return _read_raw(log_path(paths, name), lines=lines, generation=generation)


def _read_raw(path: Path, *, lines: int, generation: str, until: _Mark | None = None) -> bytes:
    """:func:`read_raw` of the transcript file ``path``; with ``until``, as if the stream
    ended there (:func:`follow_raw` continues from it)."""
    check_generation(generation)
    if lines < 1:
        raise FleetError(f"lines must be at least 1, not {lines}")
    opened = _stream(path, until)
    try:

        def enough(data: bytes, at_start: bool) -> bool:
            found = _segment(data, generation)
            return found is not None and (found[1] or found[0].count(b"\n") > lines)

        data, _ = _tail(opened, enough, READ_CAP)
    finally:
        for fd, _ in opened:
            os.close(fd)
    found = _segment(data, generation)
    if found is None:
        return b""
    raw = found[0]
    ended = raw.endswith(b"\n")
    kept = (raw[:-1] if ended else raw).split(b"\n")[-lines:]
    return b"\n".join(kept) + (b"\n" if ended else b"")


def check_generation(generation: str) -> str:
    """``generation`` when it is one of :data:`GENERATIONS`; a one-line FleetError otherwise."""
    if generation not in GENERATIONS:
        raise FleetError(f"--generation: {generation!r} is not one of {', '.join(GENERATIONS)}")
    return generation


def follow(
    paths: FleetPaths,
    name: str,
    *,
    lines: int,
    generation: str = "current",
    poll: float = FOLLOW_POLL_S,
    sleep: Callable[[float], None] = time.sleep,
    stop: Callable[[], bool] = lambda: False,
) -> Iterator[str]:
    """Yield :func:`read` (when not empty), then the new lines as the transcript grows,
    until ``stop()`` is true (checked once per ``poll``).

    New lines are rendered on, so by the reading rule of, the same emulator as
    :func:`read` (:class:`fleetlib.terminal.LiveText`): the lines that leave the screen and
    the rows the cursor has left, each once unless it changed after it was shown; the
    row the cursor is on waits until the cursor leaves it or the generation ends. A new
    generation's header starts a fresh screen. A control sequence cut by the end of
    what was read waits for its end (up to :data:`fleetlib.terminal.HOLD_CAP`), so does
    what may be a header without its line end (up to :data:`PENDING_CAP`).

    Survives rotations: when ``<name>.log`` is replaced, what is left in the renamed file
    is read to its end (until it stays quiet for one poll), then the file that came after
    it from its start (each in turn when several rotations passed meanwhile; one that
    ``log_keep`` removed before it was reached is skipped); a file that
    shrank (truncated) is read again from its start, on a fresh screen. Same errors as
    :func:`read` (no transcript at all is :class:`NoTranscript`).
    """
    path = log_path(paths, name)
    tail = _Follower(path)  # first, so nothing written during the read below is missed
    try:
        first, tail.live = _read_path(path, lines=lines, generation=generation, until=tail.start)
        if tail.live is not None:
            tail.live.new_lines()  # what the read showed counts as shown
        if first:
            yield first
        while not stop():
            text = tail.poll()
            if text:
                yield text
            else:
                sleep(poll)
    finally:
        tail.close()


def follow_raw(
    paths: FleetPaths,
    name: str,
    *,
    lines: int,
    generation: str = "current",
    poll: float = FOLLOW_POLL_S,
    sleep: Callable[[float], None] = time.sleep,
    stop: Callable[[], bool] = lambda: False,
) -> Iterator[bytes]:
    """:func:`follow` of the bytes as written (:func:`read_raw`, then what is appended)."""
    path = log_path(paths, name)
    tail = _Follower(path)
    try:
        first = _read_raw(path, lines=lines, generation=generation, until=tail.start)
        if first:
            yield first
        while not stop():
            chunk = tail.read_chunk()
            if chunk:
                yield chunk
            else:
                sleep(poll)
    finally:
        tail.close()


_HEADER_START: Final = HEADER_PRINTF.split("%s", 1)[0].encode()


def _held_back(data: bytes) -> int:
    """How many bytes at the end of ``data`` may be a generation header that has not ended
    yet (a header is found by its whole line): they wait for the rest."""
    start = data.rfind(_HEADER_START)
    if start >= 0 and b"\n" not in data[start:]:
        return len(data) - start
    for length in range(min(len(_HEADER_START) - 1, len(data)), 0, -1):
        if data.endswith(_HEADER_START[:length]):
            return length
    return 0


class _Follower:
    """Reads what is appended to one transcript path, across rotations, as rendered lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None
        self.pending = b""
        self.draining = False
        self.live: terminal.LiveText | None = None
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.fd = _open_read(path)
        # Where the first read (before following) ends: at the end of the file opened now,
        # wherever a rotation moves it before that read; with no ``path`` (rotated away,
        # the agent quiet since), before the next one, which is followed from its start.
        self.start = _Mark(None, 0)
        if self.fd is not None:
            with os_errors("read", path):
                info = os.fstat(self.fd)
                self.start = _Mark((info.st_dev, info.st_ino), os.lseek(self.fd, 0, os.SEEK_END))

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def read_chunk(self) -> bytes:
        """The bytes appended since the last call (across a rotation), or b""."""
        if self.fd is None:
            self.fd = _open_read(self.path)
            if self.fd is None:
                return b""
        chunk = self._read_new()
        if not chunk and self._replaced():
            if self.draining:  # quiet for one poll after the rename: switch
                self._next_file()
                self.draining = False
                chunk = self._read_new() if self.fd is not None else b""
            else:
                self.draining = True
        return chunk

    def _next_file(self) -> None:
        """Read on in the file that came after the one read so far: the next rotated one
        when several rotations passed since (a follower held up), else ``path``; the
        oldest there is when the one read so far was removed (``log_keep``)."""
        assert self.fd is not None
        with os_errors("inspect", self.path):
            info = os.fstat(self.fd)
        self.close()
        opened = _parts(self.path)
        idents = [part.ident for _, part in opened]
        mine = (info.st_dev, info.st_ino)
        after = idents.index(mine) + 1 if mine in idents else 0
        if after < len(opened):
            self.fd = opened.pop(after)[0]
        _close(opened)

    def poll(self) -> str:
        """The new lines since the last poll (rendered, see :func:`follow`), or ""."""
        chunk = self.read_chunk()
        if not chunk:
            return ""
        data = self.pending + chunk
        held = _held_back(data)
        if held > PENDING_CAP:
            held = 0
        data, self.pending = data[: len(data) - held], data[len(data) - held :]
        out: list[str] = []
        begin = 0
        for header in _HEADER_BYTES.finditer(data):
            self._feed(data[begin : header.start()])
            if self.live is not None:
                out += self.live.finish()
            self.live = _renderer(header)
            self.decoder.reset()
            begin = header.start()
        self._feed(data[begin:])
        if self.live is not None:
            out += self.live.new_lines()
        return "\n".join(out)

    def _feed(self, data: bytes) -> None:
        if not data:
            return
        if self.live is None:
            self.live = _renderer(None)
        self.live.feed(self.decoder.decode(data))

    def _read_new(self) -> bytes:
        assert self.fd is not None
        with os_errors("read", self.path):
            position = os.lseek(self.fd, 0, os.SEEK_CUR)
            if os.fstat(self.fd).st_size < position:  # truncated under us: start again
                os.lseek(self.fd, 0, os.SEEK_SET)
                self.pending = b""
                self.live = None
                self.decoder.reset()
        return read_fd_capped(self.fd, BLOCK * 16, self.path)

    def _replaced(self) -> bool:
        assert self.fd is not None
        try:
            now = os.lstat(self.path)
        except FileNotFoundError:
            return False  # renamed, the new file not there yet: keep reading the old one
        with os_errors("inspect", self.path):
            mine = os.fstat(self.fd)
        return (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino)


# --------------------------------------------------------------------------- writers


def wake_writers(paths: FleetPaths) -> list[int]:
    """SIGCONT every transcript writer of the fleet (a process of ours whose standard
    output is a file in the transcripts directory); returns their pids.

    Called once windows (or the whole server) are gone: a writer that was stopped
    (SIGSTOP, a debugger) would otherwise stay for ever, since tmux, its parent, never
    reaps it and no hang-up reaches it. Woken, it writes what it still holds and ends at
    the end of its pipe. Harmless to a writer that runs (SIGCONT does nothing to it)."""
    # The kernel names a process's files by their real path (the home may be reached
    # through a symlink).
    prefix = f"{os.path.realpath(log_dir(paths))}/"
    woken = []
    for pid in procs.own_processes():
        try:
            if not os.readlink(f"/proc/{pid}/fd/1").startswith(prefix):
                continue
            os.kill(pid, signal.SIGCONT)
        except OSError:
            continue
        woken.append(pid)
    return woken


def _writes_to(pid: int, info: os.stat_result) -> bool:
    """Whether the standard output of ``pid`` is the file ``info`` describes (compared by
    device and inode: the kernel names a file by its real path, which differs from ours
    when the home is reached through a symlink)."""
    try:
        out = os.stat(f"/proc/{pid}/fd/1")
    except OSError:
        return False
    return (out.st_dev, out.st_ino) == (info.st_dev, info.st_ino)


def _follows_rotation(pid: int) -> bool:
    """Whether ``pid`` is a writer that opens the transcript again after a rotation (the
    fleet's: ``perl -e`` :data:`fleetlib.capture.WRITER_PERL`, whichever version); also
    True for a process that is gone: nothing is left behind then."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            argv = cmdline.read(4096).split(b"\0")
    except OSError:
        return True
    return len(argv) >= 3 and os.path.basename(argv[0]) == b"perl" and argv[1] == b"-e"


# --------------------------------------------------------------------------- rotation


def needs_rotation(path: Path, max_bytes: int) -> bool:
    """Whether the transcript ``path`` has reached ``max_bytes`` (the roster's
    ``log_max_bytes``). False when it does not exist; :class:`fleetlib.rundir.RunFileError` (one line)
    when something other than a regular file is there. Never follows a symlink."""
    with os_errors("inspect", path):
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return False
    if not stat.S_ISREG(info.st_mode):
        raise not_regular(path, "transcript", info.st_mode)
    return info.st_size >= max_bytes


def writer_left_behind(path: Path, max_bytes: int) -> bool:
    """Whether a pane's writer kept appending to the renamed file after a rotation:
    ``path`` is absent while ``<path>.1`` has grown to twice ``max_bytes`` and a process
    of ours that is not the fleet's writer has it as its standard output. The fleet's
    writer never stays there (it opens ``path`` again before its next chunk); a ``cat``
    started by an older fleet does, and would grow ``<path>.1`` without bound. The watcher
    then gives the pane a new pipe (:func:`repipe_commands`). The size alone is no
    witness: a rotated file is as large as the agent printed between two looks, and the
    fleet's writer, when stalled (a slow disk, SIGSTOP), has not reopened ``path`` yet;
    replacing its pipe would drop all that tmux holds for it. Never follows a symlink."""
    if os.path.lexists(path):
        return False
    one = rotated(path, 1)
    try:
        info = os.lstat(one)
    except OSError:
        return False
    if not stat.S_ISREG(info.st_mode) or info.st_size < 2 * max_bytes:
        return False
    return any(_writes_to(pid, info) and not _follows_rotation(pid) for pid in procs.own_processes())


def rotate(path: Path, keep: int) -> list[str]:
    """Rename ``path`` to ``path.1``, ``path.1`` to ``path.2`` ... keeping at most ``keep``
    rotated files (the roster's ``log_keep``; 0 removes the transcript instead): older ones,
    also beyond a larger ``keep`` used before, are deleted first.

    The pane's writer opens a fresh ``path`` before it writes the next chunk (module
    docstring). Without ``path`` nothing is renamed (only rotated files beyond ``keep``
    are removed), so calling it again before the writer reopened ``path`` does not push
    out old files.
    One rotator at a time (the watcher): concurrent rotations of one path are not safe.

    Something other than a regular file at ``path`` is a
    :class:`fleetlib.rundir.RunFileError` (one line) and nothing changes. One at a rotated
    name never stops rotation and is never followed: a symlink, FIFO, socket or device is
    removed (the name only: what a symlink points to is untouched); a directory is left as
    it is and skipped (files move past it to the next free index, so the order by index
    still runs from newest to oldest). Returns one line per such file, saying what was done.
    """
    if keep < 0:
        raise FleetError(f"keep must be at least 0, not {keep}")
    with os_errors("inspect", path), contextlib.suppress(FileNotFoundError):
        mode = os.lstat(path).st_mode
        if not stat.S_ISREG(mode):
            raise not_regular(path, "transcript", mode)
    current = os.path.lexists(path)  # False: nothing to rotate (the writer has not reopened it yet)
    files, skipped, notes = _rotated_files(path)
    sources = ([0] if current else []) + files  # newest first; 0 stands for ``path`` itself
    for index in sources[keep:]:
        _remove(path if index == 0 else rotated(path, index))
    # Each kept file moves to the next index past its own that holds no directory; the oldest
    # first, so no rename lands on a file that has not moved yet (rename never follows a link).
    for index in reversed(sources[:keep] if current else []):
        after = index + 1
        while after in skipped:
            after += 1
        source = path if index == 0 else rotated(path, index)
        with os_errors("rename", source), contextlib.suppress(FileNotFoundError):
            os.rename(source, rotated(path, after))
    return notes


def _rotated_files(path: Path) -> tuple[list[int], set[int], list[str]]:
    """The indices of the regular rotated files of ``path`` (ascending: newest first), those
    of directories (skipped), and a line per odd file, after removing every odd file that
    is not a directory (:func:`rotate`)."""
    files: list[int] = []
    skipped: set[int] = set()
    notes: list[str] = []
    for index in sorted(_rotated_indices(path)):
        candidate = rotated(path, index)
        with os_errors("inspect", candidate):
            try:
                mode = os.lstat(candidate).st_mode
            except FileNotFoundError:
                continue
        if stat.S_ISREG(mode):
            files.append(index)
        elif stat.S_ISDIR(mode):
            skipped.add(index)
            notes.append(f"{candidate} is a directory, not a transcript: left as it is and skipped (rm -r it)")
        else:
            _remove(candidate)  # unlink never follows a symlink: its target stays untouched
            notes.append(f"removed {candidate}: it was {kind_of(mode)}, not a transcript")
    return files, skipped, notes


def _remove(path: Path) -> None:
    with os_errors("remove", path), contextlib.suppress(FileNotFoundError):
        os.unlink(path)
