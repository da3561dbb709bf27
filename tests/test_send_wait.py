"""`fleet send` and `fleet wait` mean what a script needs (issue 20, "send and wait").

One tmux fleet for the module (starting one costs seconds), with an agent for each case:
``sh1`` an interactive shell, ``bad`` a command that fails at once and is given up on,
``loop`` one that keeps exiting (its supervisor's back-off sleep is paused with SIGSTOP
while a test needs it ``restarting``, so the state cannot move under the test), ``off``
one that is never started (``stopped``), and the Claude-like and Codex-like fakes, whose
menus move their cursor with the arrow keys, take a digit typed as a key, and ignore a
bracketed paste (as the real Codex sign-in menu does).

The witnesses are the agents' own screens, read with tmux directly: a turn is over when
the shell printed what only its last command prints; nothing was typed when a later
accepted message shows without the refused text before it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, eventually
from tests.test_fleet_tmux import TmuxEnv

pytestmark = pytest.mark.tmux

AGENTS = REPO / "tests" / "fake_agents"
DONE = "DONE-42"  # what `echo DONE-$((40+2))` prints: never part of the echoed command line


class SendEnv(TmuxEnv):
    def screen(self, name: str) -> str:
        socket = self.home / "fleet" / "run" / "tmux.sock"
        argv = ["tmux", "-S", str(socket), "capture-pane", "-p", "-J", "-S", "-200", "-t", f"=fleet:={name}"]
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout

    def interrupt(self, name: str) -> None:
        """Ctrl-C in the agent's pane (ends a shell's running command)."""
        socket = self.home / "fleet" / "run" / "tmux.sock"
        subprocess.run(["tmux", "-S", str(socket), "send-keys", "-t", f"=fleet:={name}", "C-c"], check=True)


@pytest.fixture(scope="module")
def senv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SendEnv]:
    env = SendEnv(tmp_path_factory.mktemp("send"))
    fakes = "".join(
        f"  - name: {name}\n    runtime: {runtime}\n"
        f"    command: [{json.dumps(sys.executable)}, {json.dumps(str(AGENTS / script))}]\n"
        for name, runtime, script in (("cl", "claude", "claude_like.py"), ("cx", "codex", "codex_like.py"))
    )
    roster = env.home / "fleet" / "roster.yaml"
    roster.parent.mkdir(parents=True)
    roster.write_text(
        "version: 1\nagents:\n"
        "  - name: sh1\n    runtime: shell\n"
        "  - name: bad\n    runtime: custom\n    command: [sh, -c, 'exit 3']\n    max_failures: 1\n"
        "  - name: loop\n    runtime: custom\n    command: [sh, -c, 'exit 1']\n"
        "    max_failures: 1000\n    failure_window: 100000\n"
        "  - name: down1\n    runtime: shell\n" + fakes
    )
    for name in ("sh1", "cl", "cx", "loop", "bad"):
        started = env.inv("fleet.start", "--agent", name)
        assert started.returncode in (0, 1), started.stderr  # bad (and loop) fail their start
    eventually(lambda: env.row("bad")["state"] == "failed", "bad given up on")
    env.inv_ok("fleet.wait", "--agent", "sh1", "--for", "idle", "--timeout", "60")
    yield env
    env.inv("fleet.stop")
    subprocess.run(["tmux", "-S", str(env.home / "fleet" / "run" / "tmux.sock"), "kill-server"], check=False)


def _proc_stat(pid: int | str) -> tuple[str, str, int] | None:
    """(command name, state letter, parent pid) of a process, from /proc; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return stat[stat.index("(") + 1 : stat.rindex(")")], fields[0], int(fields[1])


def _backoff_sleep(supervisor: int) -> int | None:
    """The supervisor's own live `sleep` child (its back-off between two runs), if it has one."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            found = _proc_stat(entry)
            if found is not None and found[0] == "sleep" and found[2] == supervisor and found[1] != "Z":
                return int(entry)
    return None


@contextlib.contextmanager
def restarting(env: SendEnv) -> Iterator[None]:
    """``loop`` held in its back-off (``restarting``) until the block ends: its supervisor
    set the state before it started the sleep, and cannot go on before the sleep ends."""
    found: list[int] = []

    def paused() -> bool:
        pid = env.row("loop")["pid"]
        sleeper = _backoff_sleep(pid) if isinstance(pid, int) else None
        if sleeper is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(sleeper, signal.SIGSTOP)
            found.append(sleeper)
        stat = _proc_stat(sleeper)
        return stat is not None and stat[1] == "T"  # stopped, not ended: it cannot end now

    eventually(paused, "loop's back-off sleep paused")
    try:
        assert env.row("loop")["state"] == "restarting"
        yield
    finally:
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def test_send_then_wait_for_idle_waits_for_the_turn_and_send_wait_does_both(senv: SendEnv) -> None:
    # `echo START` makes the send accepted at once; the turn goes on for 3 s after it.
    senv.inv_ok("fleet.send", "--agent", "sh1", "--message", "echo START; sleep 3; echo DONE-$((40+2))")
    senv.inv_ok("fleet.wait", "--agent", "sh1", "--for", "idle", "--timeout", "60")
    assert DONE in senv.screen("sh1"), senv.screen("sh1")

    out = senv.inv_ok(
        "fleet.send", "--agent", "sh1", "--message", "echo AGAIN; sleep 3; echo FIN-$((6*7))", "--wait", "idle"
    )
    assert "FIN-42" in senv.screen("sh1"), senv.screen("sh1")
    assert "accepted" in out
    assert "idle" in out

    # A wait that times out says so with wait's exit code (1).
    slow = senv.inv(
        "fleet.send", "--agent", "sh1", "--message", "echo SLOW; sleep 30", "--wait", "idle", "--timeout", "3"
    )
    assert slow.returncode == 1, (slow.stdout, slow.stderr)
    assert "timed out" in slow.stderr
    assert "Traceback" not in slow.stderr
    senv.interrupt("sh1")
    senv.inv_ok("fleet.wait", "--agent", "sh1", "--for", "idle", "--timeout", "60")


def test_send_is_refused_with_exit_2_to_an_agent_that_is_not_running(senv: SendEnv) -> None:
    for name, state in (("bad", "failed"), ("down1", "stopped")):
        refused = senv.inv("fleet.send", "--agent", name, "--message", "hello")
        assert refused.returncode == 2, (name, refused.stdout, refused.stderr)
        assert state in refused.stderr
        assert "Traceback" not in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr

    with restarting(senv):
        refused = senv.inv("fleet.send", "--agent", "loop", "--message", "typed-between-generations")
        assert refused.returncode == 2, (refused.stdout, refused.stderr)
        assert "restarting" in refused.stderr
        assert "Traceback" not in refused.stderr
        everyone = senv.inv("fleet.send", "--all", "--message", "echo to-all-$((1+1))")
        assert everyone.returncode == 2, (everyone.stdout, everyone.stderr)
        assert "sent" in everyone.stdout
        assert "sh1" in everyone.stdout
        for name, state in (("loop", "restarting"), ("bad", "failed"), ("down1", "stopped")):
            assert any(name in line and state in line for line in everyone.stderr.splitlines()), everyone.stderr
        assert "refused" in everyone.stderr
    eventually(lambda: "to-all-2" in senv.screen("sh1"), "the message to every running agent")
    assert "typed-between-generations" not in senv.screen("loop")
    senv.inv_ok("fleet.wait", "--agent", "sh1", "--for", "idle", "--timeout", "60")


def test_logs_screen_of_an_agent_that_is_not_running_says_so_in_one_line(senv: SendEnv) -> None:
    # It used to be tmux's own words: "cannot read agent 'down1''s pane: can't find window: down1".
    shown = senv.inv("fleet.logs", "--agent", "down1", "--screen")
    assert shown.returncode == 2, (shown.stdout, shown.stderr)
    assert shown.stderr.splitlines() == [
        "error: agent 'down1' is not running (it has no window), so it has no screen to show; "
        "its transcript: `inv fleet.logs --agent down1`"
    ]


def test_send_dry_run_on_a_running_agent_says_what_it_would_do_and_types_nothing(senv: SendEnv) -> None:
    dry = senv.inv("fleet.send", "--agent", "sh1", "--message", "echo DRY-$((2+3))", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would send" in dry.stdout
    senv.inv_ok("fleet.send", "--agent", "sh1", "--message", "echo WET-$((2+3))")
    screen = senv.screen("sh1")
    assert "WET-5" in screen, screen
    assert "DRY" not in screen, screen
    refused = senv.inv("fleet.send", "--agent", "bad", "--message", "x", "--dry-run")
    assert refused.returncode == 2
    assert "failed" in refused.stderr
    senv.inv_ok("fleet.wait", "--agent", "sh1", "--for", "idle", "--timeout", "60")


def test_wait_on_an_agent_that_is_down_ends_at_once_naming_its_state(senv: SendEnv) -> None:
    # Without the fix each of these sits out its whole --timeout (the test's own timeout fails it).
    for name, state in (("bad", "failed"), ("down1", "stopped")):
        for wanted in ("waiting", "idle"):
            waited = senv.inv("fleet.wait", "--agent", name, "--for", wanted, "--timeout", "600")
            assert waited.returncode == 1, (waited.stdout, waited.stderr)
            assert f"{name} is {state}" in waited.stderr
            assert "Traceback" not in waited.stderr
        senv.inv_ok("fleet.wait", "--agent", name, "--for", state, "--timeout", "60")
    every = senv.inv("fleet.wait", "--all", "--for", "idle", "--timeout", "600", "--json")
    assert every.returncode == 1
    assert json.loads(every.stdout)["ok"] is False


@pytest.mark.parametrize(("name", "chosen"), [("cl", "denied"), ("cx", "denied")])
def test_answer_selects_the_menu_entry_asked_for_with_keys(senv: SendEnv, name: str, chosen: str) -> None:
    senv.inv_ok("fleet.wait", "--agent", name, "--for", "idle", "--timeout", "60")
    senv.inv_ok("fleet.send", "--agent", name, "--message", "ask")
    senv.inv_ok("fleet.wait", "--agent", name, "--for", "waiting", "--timeout", "30")

    wrong = senv.inv("fleet.send", "--agent", name, "--answer", "--message", "7")
    assert wrong.returncode == 2, (wrong.stdout, wrong.stderr)
    assert "1-2" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    assert senv.row(name)["state"] == "waiting"

    out = senv.inv_ok("fleet.send", "--agent", name, "--answer", "--message", "2")
    assert "2" in out
    assert "accepted" in out
    eventually(lambda: chosen in senv.screen(name), f"{name} took entry 2")
    assert "approved" not in senv.screen(name), senv.screen(name)
    senv.inv_ok("fleet.wait", "--agent", name, "--for", "idle", "--timeout", "30")
