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


# The pipe's reader: appends what the pane prints to the transcript path, and when that
# name no longer leads to the file it holds (the watcher renamed it away: rotation), opens
# the name again before writing on. The pipe itself is never replaced for a rotation: tmux
# drops what it has queued for a pipe it replaces, and with `cat` (which never reopens) it
# had to be, so a busy agent lost lines at each rotation. Perl because `perl-base` is
# part of every Debian system and starts in about 2 ms; the program stays small:
# - a symlink, FIFO or anything but a regular file at the name ends it (exit 1): the open
#   refuses a symlink (O_NOFOLLOW) and never waits (O_NONBLOCK: a FIFO without a reader is
#   refused, one with a reader fails the regular-file check), in one step, so a FIFO swapped
#   in between a check and the open (a race an `lstat` before `open` left) blocks nothing;
# - STDOUT is reopened, so fd 1 stays the transcript (`wake_writers` finds writers by it);
# - a write that fails (a full disk) ends it, as it ended `cat`: tmux closes the pipe and
#   the watcher renews it (`PIPED_FORMAT`);
# - at the end of the pipe (the window is gone) it ends.
# Perl's own settings in the environment are dropped (:data:`WRITER_UNSET`): the writer
# inherits the tmux server's environment, the user's shell's, where a UTF-8 layer
# (PERL_UNICODE, PERLIO; sysread then dies) or injected switches and modules (PERL5OPT:
# `-Mstrict` stops this program compiling) ended it before its first byte.
WRITER_UNSET: Final = ("PERL5OPT", "PERL5LIB", "PERLLIB", "PERLIO", "PERL_UNICODE")
WRITER_PERL: Final = (
    "use Fcntl; $p = shift; "
    "sub reopen { sysopen STDOUT, $p, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK or exit 1; "
    "-f STDOUT or exit 1; @id = (stat _)[0, 1] } "
    "reopen; "
    "while ($n = sysread STDIN, $b, 65536) { "
    "@s = lstat $p; reopen if !@s || $s[0] != $id[0] || $s[1] != $id[1]; "
    "for ($o = 0; $o < $n; $o += $w) { $w = syswrite STDOUT, $b, $n - $o, $o or exit 1 } "
    "}"
)


def pipe_shell_command(path: Path) -> str:
    """The command tmux runs (``/bin/sh -c``) to append the pane's output to ``path``
    (:data:`WRITER_PERL`: it follows a rotation by itself).

    ``exec`` (and ``env`` execs perl) so the reader is the writer itself (one process
    per agent, found by its parent, the tmux server). The words are quoted for the shell, then every ``#``
    doubled: tmux expands formats in a ``pipe-pane`` command before the shell sees it."""
    unset = [word for name in WRITER_UNSET for word in ("-u", name)]
    words = ["env", *unset, "perl", "-e", WRITER_PERL, os.fspath(path)]
    return ("exec " + shlex.join(words)).replace("#", "##")
