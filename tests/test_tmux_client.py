"""The one tmux client: argv on the fleet's socket, one bound, one sentence for a frozen server."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from fleetlib.errors import FleetOperationError
from fleetlib.runner import TIMED_OUT, Result, timeout_message
from fleetlib.tmux_client import TMUX_TIMEOUT_S, TmuxClient

SOCKET = Path("/run/fleet/tmux.sock")


class Answering:
    """Records each command with its bound; answers with ``returncode`` (124: timed out)."""

    def __init__(self, returncode: int = 0) -> None:
        self.returncode = returncode
        self.seen: list[tuple[list[str], float | None]] = []

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Result:
        self.seen.append((list(argv), timeout))
        err = timeout_message(argv, timeout) if self.returncode == TIMED_OUT else ""
        return Result(tuple(argv), self.returncode, "", err)


def client(runner: Answering) -> TmuxClient:
    return TmuxClient(runner, SOCKET, "/usr/bin/tmux")  # type: ignore[arg-type]


def test_every_client_is_bounded_and_on_the_fleet_socket() -> None:
    runner = Answering()
    client(runner).run(["kill-server"], no_config=True)
    client(runner).run(["has-session"])
    assert runner.seen == [
        (["/usr/bin/tmux", "-S", str(SOCKET), "-f", "/dev/null", "kill-server"], TMUX_TIMEOUT_S),
        (["/usr/bin/tmux", "-S", str(SOCKET), "has-session"], TMUX_TIMEOUT_S),
    ]


def test_a_frozen_server_is_one_line_naming_the_socket() -> None:
    with pytest.raises(FleetOperationError) as caught:
        client(Answering(TIMED_OUT)).run(["list-windows"])
    assert str(SOCKET) in str(caught.value)
    assert f"{TMUX_TIMEOUT_S:g}s" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_attempt_reports_the_timeout_instead_of_raising() -> None:
    assert client(Answering(TIMED_OUT)).attempt(["list-windows"]).timed_out
    assert not client(Answering(1)).answers()
