"""The one client of a fleet's tmux server: every tmux call fleet makes goes through
:class:`TmuxClient`, bounded by :data:`TMUX_TIMEOUT_S`.

:mod:`fleetlib.tmux` builds the commands (pure); this module runs them on the fleet's
socket through a :class:`~fleetlib.runner.Runner` (the one place a process starts) and
says, in one sentence, when the server does not answer. The backends, the messenger and
the watcher each hold one; a frozen server is one error line (or, for the watcher, a tick
that skips), never a hang.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fleetlib import tmux
from fleetlib.errors import FleetOperationError
from fleetlib.runner import Result, Runner, query

# One tmux client, at most (a 4 MiB paste takes well under a second; a whole fleet's
# windows are created in a few clients of at most 12 KiB each).
TMUX_TIMEOUT_S: Final = 10.0
# Given to a client that may start the server: a server fleet starts ignores the user's tmux.conf.
NO_CONFIG_ARGS: Final = ("-f", "/dev/null")


@dataclass(frozen=True)
class TmuxClient:
    """Bounded tmux clients on ``socket``, run by ``runner``."""

    runner: Runner
    socket: Path
    tmux_bin: str

    def base(self) -> list[str]:
        """``tmux -S <socket>``: what every client's argv starts with."""
        return tmux.tmux_base(self.tmux_bin, self.socket)

    def argv(self, commands: Sequence[str], *, no_config: bool = False) -> list[str]:
        """The client's argv for ``commands`` (``no_config``: with :data:`NO_CONFIG_ARGS`, for
        a client that may start the server)."""
        return [*self.base(), *(NO_CONFIG_ARGS if no_config else ()), *commands]

    def run(
        self,
        commands: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        no_config: bool = False,
        read: bool = False,
    ) -> Result:
        """Run one client; a server that does not answer within :data:`TMUX_TIMEOUT_S` is
        :class:`~fleetlib.errors.FleetOperationError` (one line: what to do). ``read``: the
        commands only look (they run in a dry run too, see :mod:`fleetlib.runner`)."""
        result = self.attempt(commands, input=input, env=env, no_config=no_config, read=read)
        if result.timed_out:
            raise self.frozen()
        return result

    def query(self, commands: Sequence[str]) -> Result:
        """:meth:`run` for commands that only look (a listing, a capture)."""
        return self.run(commands, read=True)

    def attempt(
        self,
        commands: Sequence[str],
        *,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        no_config: bool = False,
        read: bool = False,
    ) -> Result:
        """Run one client, bounded; a timeout is the result (``timed_out``), not an error."""
        argv = self.argv(commands, no_config=no_config)
        if read:
            return query(self.runner, argv, input=input, timeout=TMUX_TIMEOUT_S, env=env)
        return self.runner.run(argv, input=input, timeout=TMUX_TIMEOUT_S, env=env)

    def windows(self) -> dict[str, tmux.Window] | None:
        """The fleet session's windows, or None when the server or session is not there."""
        result = self.query(tmux.list_windows_commands())
        return tmux.parse_windows(result.stdout) if result.ok else None

    def answers(self) -> bool:
        """Whether a server answers on the socket (with a session)."""
        return self.attempt(["has-session"], read=True).ok

    def check(self, result: Result) -> Result:
        """``result`` (of a client run elsewhere, e.g. concurrently), unless it timed out."""
        if result.timed_out:
            raise self.frozen()
        return result

    def frozen(self) -> FleetOperationError:
        return FleetOperationError(
            f"the fleet's tmux server ({self.socket}) did not answer within {TMUX_TIMEOUT_S:g}s; "
            "it may be stopped or frozen: check it with `fleet doctor`, or kill it (agents lose their windows)"
        )
