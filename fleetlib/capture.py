"""Where and in what form agent transcripts are written: the capture side of
:mod:`fleetlib.transcript`, with no reading machinery.

The pane supervisor (:mod:`fleetlib.pane`) prints :data:`HEADER_PRINTF` before each run,
and tmux (:mod:`fleetlib.tmux`) pipes the pane into :func:`pipe_shell_command`; both need
only these names. Keeping them here lets ``pane``/``tmux`` sit below ``transcript`` (which
builds the tmux commands that renew a pipe) and keeps the terminal emulator out of every
command that never renders a transcript. Pure: nothing here touches the disk.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Final

LOGS_DIR_NAME: Final = "logs"
SUFFIX: Final = ".log"
# The supervisor's header, a printf(1) format: time (UTC, ISO 8601), pid, pane size
# (COLUMNSxROWS, empty numbers when unknown), command. It sits between double quotes inside
# a single-quoted `sh -c` word, so it must not contain quotes, `$`, a backquote or a
# backslash other than the final "\n". Headers written before the size was recorded
# (without " size ...") still match.
HEADER_PRINTF: Final = r"==> fleet: generation started %s pid %s size %s: %s\n"
HEADER_RE: Final = re.compile(
    r"==> fleet: generation started (?P<time>\S*) pid (?P<pid>\d+)"
    r"(?: size (?P<columns>\d{0,6})x(?P<rows>\d{0,6}))?: (?P<command>[^\r\n]*)"
)

# "1" while the pane's output goes to a pipe, "0" once its writer is gone
# (see :func:`fleetlib.transcript.repipe_commands`).
PIPED_FORMAT: Final = "#{pane_pipe}"


def header_line(time: str, pid: int, size: str, command: str) -> str:
    """The header the supervisor prints (:data:`HEADER_PRINTF`), without its line end."""
    return HEADER_PRINTF.removesuffix("\\n").replace("%s", "{}").format(time, pid, size, command)


def logs_in(fleet_dir: Path) -> Path:
    """The transcripts directory of the fleet whose directory is ``fleet_dir`` (``<home>/fleet``)."""
    return fleet_dir / LOGS_DIR_NAME


def pipe_shell_command(path: Path) -> str:
    """The command tmux runs (``/bin/sh -c``) to append the pane's output to ``path``.

    ``exec`` so the reader is ``cat`` itself (one process per agent, found by its parent,
    the tmux server). The path is quoted for the shell, then every ``#`` doubled: tmux
    expands formats in a ``pipe-pane`` command before the shell sees it."""
    return f"exec cat >> {shlex.quote(os.fspath(path))}".replace("#", "##")
