"""`fleet top` in a real terminal (tmux): rows, sorting by a key press, quitting with q;
figures of plain-tmux agents from their marked process trees."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, eventually, run_inv
from tests.real_clis import EXIT_MARKER, PrivateTmux

pytestmark = pytest.mark.tmux

# `zbig` holds 64 MiB (touched), `small` next to nothing: the memory sort puts zbig first, the name sort last.
BIG = json.dumps([sys.executable, "-c", "import time\nb = b'x' * (64 << 20)\ntime.sleep(100000)"])
ROSTER = f"""\
version: 1
transport: tmux
agents:
  - name: zbig
    runtime: custom
    command: {BIG}
  - name: small
    runtime: custom
    command: [sleep, "100000"]
"""


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A started plain-tmux fleet (no user manager reachable); yields its environment."""
    home, runtime = tmp_path / "home", tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    (home / "fleet").mkdir(parents=True)
    (home / "fleet" / "roster.yaml").write_text(ROSTER)
    env = {k: v for k, v in os.environ.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
    env |= {"MOSAIC_HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)}
    started = run_inv(["fleet.start"], env)
    assert started.returncode == 0, started.stderr
    yield env
    run_inv(["fleet.stop"], env)
    subprocess.run(["tmux", "-S", str(home / "fleet" / "run" / "tmux.sock"), "kill-server"], check=False)


def test_top_once_json_measures_plain_tmux_agents_by_their_processes(fleet: dict[str, str]) -> None:
    result = run_inv(["fleet.top", "--once", "--json", "--sort", "memory"], fleet)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["name"] for row in rows] == ["zbig", "small"]
    big, small = rows
    assert big["source"] == small["source"] == "processes"
    assert big["memory_bytes"] > 64 << 20 > small["memory_bytes"]
    assert big["memory_max"] is None  # no limit, so none shown
    assert big["state"] in ("running", "working", "idle")
    assert isinstance(big["uptime_s"], float)


def test_top_refuses_an_unknown_sort_key_in_one_line(fleet: dict[str, str]) -> None:
    result = run_inv(["fleet.top", "--once", "--sort", "colour"], fleet)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: --sort: unknown key 'colour'; use one of: name, state, cpu, memory, tasks, restarts, uptime"
    ]


def test_top_live_shows_rows_sorts_on_a_key_press_and_quits_with_q(fleet: dict[str, str], tmux: PrivateTmux) -> None:
    passed = {key: fleet[key] for key in ("MOSAIC_HOME", "XDG_RUNTIME_DIR")}
    passed["PYTHONPATH"] = str(REPO)
    tmux.start([sys.executable, "-m", "invoke", "fleet.top", "--sort", "name"], cwd=REPO, env=passed)

    def order() -> list[str]:
        return [line.split()[1] for line in tmux.capture().splitlines() if line.split()[1:2] in (["zbig"], ["small"])]

    eventually(lambda: order() == ["small", "zbig"] and "sorted by name" in tmux.capture(), "rows sorted by name")
    tmux.send_keys("m", enter=False)
    eventually(lambda: order() == ["zbig", "small"] and "sorted by memory" in tmux.capture(), "the memory sort")
    tmux.send_keys("s", enter=False)  # the next key after memory
    eventually(lambda: "sorted by tasks" in tmux.capture(), "the tasks sort")
    tmux.send_keys("q", enter=False)
    eventually(lambda: f"{EXIT_MARKER}0" in tmux.capture(), "top to quit on q")
