"""Transcripts on the systemd backend (private user manager, real tmux): each agent unit's
ExecStart creates the window and its pipe in one tmux client, so the transcript keeps the
generation before a crash, the supervisor's restart and a `fleet restart`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import FleetEnv
from tests.test_transcript_tmux import check_generations_across_restarts, crash_once_roster

pytestmark = [pytest.mark.systemd, pytest.mark.tmux]


def test_generations_across_restarts_on_the_systemd_backend(fleet_env: FleetEnv, tmp_path: Path) -> None:
    flag = tmp_path / "crash-once"
    flag.write_text("")
    fleet_env.write_roster(crash_once_roster(flag))
    fleet_env.inv_ok("fleet.install")
    assert (fleet_env.home / "fleet" / "logs").is_dir()  # install makes it: units also start at boot
    assert fleet_env.inv("fleet.status").stdout.splitlines()[0] == "backend: systemd"
    check_generations_across_restarts(fleet_env, fleet_env.home, flag, in_place=True)
