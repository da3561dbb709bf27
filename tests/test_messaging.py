"""Talking to agents through real tmux: literal delivery, verification, concurrency, errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetlib.messaging import accepted
from tests.conftest import REPO, kill_fleet_tmux, run_inv_concurrently
from tests.test_fleet_tmux import TmuxEnv

pytestmark = pytest.mark.tmux

# A small interactive agent: prints a prompt, reads lines, logs the raw bytes, and (in ack
# mode) acknowledges each line; in mute mode it reads and logs but never answers; in paste
# mode it acknowledges and asks for bracketed paste first, as agent TUIs do.
AGENT = """
import sys
log = open(sys.argv[1], "ab", buffering=0)
ack = sys.argv[2] in ("ack", "paste")
if sys.argv[2] == "paste":
    sys.stdout.write("\\033[?2004h")
sys.stdout.write("ready> "); sys.stdout.flush()
while True:
    line = sys.stdin.buffer.readline()
    if not line:
        break
    log.write(line)
    if ack:
        sys.stdout.write("ack %d\\nready> " % len(line)); sys.stdout.flush()
"""


@pytest.fixture
def menv(tmp_path: Path) -> Iterator[TmuxEnv]:
    env = TmuxEnv(tmp_path)
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    # The pasting agent is labelled with a runtime declared to take bracketed paste.
    agents = (("talker", "ack", "custom"), ("mute", "mute", "custom"), ("other", "ack", "custom"))
    body = "".join(
        f"  - name: {name}\n    runtime: {runtime}\n    command: [{json.dumps(sys.executable)}, {json.dumps(str(script))}, "
        f"{json.dumps(str(tmp_path / (name + '.log')))}, {mode}]\n"
        for name, mode, runtime in (*agents, ("paster", "paste", "claude"))
    )
    roster = env.home / "fleet" / "roster.yaml"
    roster.parent.mkdir(parents=True)
    roster.write_text("version: 1\nagents:\n" + body)
    env.inv_ok("fleet.start")
    for name in ("talker", "mute", "other", "paster"):
        wait_for(lambda n=name: "ready>" in env.inv_ok("fleet.logs", "--agent", n, "--lines", "5"))
    yield env
    kill_fleet_tmux(env.home)


def wait_for(check: object, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition never became true")


def received(env: TmuxEnv, name: str) -> bytes:
    path = env.log.parent / f"{name}.log"
    return path.read_bytes() if path.exists() else b""


AWKWARD = [
    "plain text",
    "it's \"quoted\" and 'single'",
    "$(rm -rf /) `id` ${HOME}",
    "a; b; trailing;",
    ";",
    "C-c",
    "Enter",
    "C-c Enter Escape Tab",
    "-starts-with-dash --flag",
    "ünïcödé ✓ 日本語 🚀",
    "back\\slash and tab\there",
    "#{pane_pid} %1 ~user",
    "x" * 1500,
]


@pytest.mark.parametrize("message", AWKWARD, ids=range(len(AWKWARD)))
def test_awkward_messages_arrive_byte_exact(menv: TmuxEnv, message: str) -> None:
    before = received(menv, "talker")
    out = menv.inv_ok("fleet.send", "--agent", "talker", "--message", message)
    assert "accepted" in out
    wait_for(lambda: len(received(menv, "talker")) > len(before))
    assert received(menv, "talker")[len(before) :] == message.encode() + b"\n"


def test_multi_line_message_from_stdin_arrives_byte_exact_in_one_paste(menv: TmuxEnv) -> None:
    message = "first line\nsecond $(line)\n\tthird; C-c\n"
    result = menv.inv("fleet.send", "--agent", "paster", "--message", "-", input=message)
    assert result.returncode == 0, result.stderr
    wait_for(lambda: received(menv, "paster").count(b"\n") >= 3)
    # One paste: the newlines inside it are text to the agent; only the final Enter submits.
    assert received(menv, "paster") == b"\x1b[200~first line\nsecond $(line)\n\tthird; C-c\x1b[201~\n"
    refused = menv.inv("fleet.send", "--agent", "talker", "--message", "-", input=message)
    assert refused.returncode == 2  # a custom runtime may take each newline as Enter
    assert "does not take bracketed paste" in refused.stderr
    assert received(menv, "talker") == b""


def test_verification_fails_with_the_pane_tail_when_the_agent_does_not_acknowledge(menv: TmuxEnv) -> None:
    result = menv.inv("fleet.send", "--agent", "mute", "--message", "are you there", "--timeout", "4")
    assert result.returncode == 1
    assert "did not accept the message within 4s" in result.stderr
    assert "are you there" in result.stderr  # the pane's last lines
    assert "Traceback" not in result.stderr
    wait_for(lambda: received(menv, "mute") == b"are you there\n")  # delivered, just not acknowledged
    assert "not verified" in menv.inv_ok("fleet.send", "--agent", "mute", "--message", "x", "--no-verify")


def test_concurrent_sends_to_one_agent_never_interleave(menv: TmuxEnv) -> None:
    messages = [letter * 400 for letter in "abcdef"]
    for code, _, err in run_inv_concurrently(
        [["fleet.send", "--agent", "talker", "--message", t] for t in messages], menv.env
    ):
        assert code == 0, err
    lines = received(menv, "talker").decode().splitlines()
    assert sorted(lines) == sorted(messages)


def test_broadcast_reaches_every_agent_and_reports_failures(menv: TmuxEnv) -> None:
    result = menv.inv("fleet.send", "--all", "--message", "hello all", "--timeout", "1")
    assert result.returncode == 1
    assert "mute:" in result.stderr
    for name in ("talker", "other", "mute"):
        wait_for(lambda n=name: received(menv, n) == b"hello all\n")


def test_stopped_unknown_or_dead_agents_fail_fast_with_one_line(menv: TmuxEnv) -> None:
    menv.inv_ok("fleet.stop", "--agent", "other")
    for args, fragment in (
        (("--agent", "other"), "agent 'other' is not running"),
        (("--agent", "ghost"), "unknown agent 'ghost'"),
        ((), "exactly one of --agent NAME or --all"),
    ):
        started = time.monotonic()
        result = menv.inv("fleet.send", "--message", "hi", *args)
        assert result.returncode == 2
        assert result.stderr.strip().count("\n") == 0
        assert fragment in result.stderr
        assert time.monotonic() - started < 60  # a liveness bound (no hang), not a timing target


def test_logs_show_the_pane_and_watch_needs_a_terminal(menv: TmuxEnv) -> None:
    menv.inv_ok("fleet.send", "--agent", "talker", "--message", "log me")
    logs = menv.inv_ok("fleet.logs", "--agent", "talker", "--lines", "20")
    assert "log me" in logs
    assert "ack 7" in logs
    for task in ("fleet.watch", "fleet.attach"):
        result = menv.inv(task, "--agent", "talker")
        assert result.returncode == 2
        assert "needs a terminal" in result.stderr


def test_accepted_rule() -> None:
    before = "ready> "
    assert accepted(before, "ready> hello\nack 6\nready> ", "hello")
    assert not accepted(before, "ready> hello\n", "hello")  # the terminal's echo alone
    assert not accepted(before, "ready> ", "hello")
    assert accepted(before, "ready> two\nlines\nack 6\nready> ", "two\nlines")
    assert accepted(before, "ready> hi\n  esc to interrupt", "hi", pattern="esc to interrupt")
    old = "ready> hello\nack 6\nready> "
    assert not accepted(old, old + "hello\n", "hello")  # an old acknowledgement does not count


def test_logs_follow_prints_new_output_as_it_appears(menv: TmuxEnv) -> None:
    follower = subprocess.Popen(
        [sys.executable, "-m", "invoke", "fleet.logs", "--agent", "talker", "--lines", "5", "--follow"],
        cwd=REPO,
        env=menv.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        while "ready>" not in follower.stdout.readline():
            pass  # the initial tail, up to the prompt (pytest-timeout bounds this)
        menv.inv_ok("fleet.send", "--agent", "talker", "--message", "follow me")
        seen = ""
        while "ack 10" not in seen:
            line = follower.stdout.readline()
            assert line, "the follower stopped before the new output arrived"
            seen += line
        assert "follow me" in seen
    finally:
        follower.terminate()
        follower.communicate(timeout=30)


@pytest.mark.parametrize(("task", "read_only"), [("fleet.watch", "1"), ("fleet.attach", "0")])
def test_watch_and_attach_use_a_private_view_on_a_real_terminal(menv: TmuxEnv, task: str, read_only: str) -> None:
    sock = str(menv.home / "fleet" / "run" / "tmux.sock")

    def clients() -> list[str]:
        out = subprocess.run(
            ["tmux", "-S", sock, "list-clients", "-F", "#{client_name} #{client_session} #{client_readonly} #{window_name}"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        return out.stdout.split("\n")[:-1] if out.returncode == 0 else []

    before = subprocess.run(
        ["tmux", "-S", sock, "display", "-p", "-t", "=fleet:", "#{window_name}"],
        capture_output=True,
        text=True,
        check=True,
    )
    # `script` gives the task a real pseudo-terminal, as a person's shell would.
    command = f"{sys.executable} -m invoke {task} --agent other"
    viewer = subprocess.Popen(
        ["script", "-qec", command, "/dev/null"],
        cwd=REPO,
        env=menv.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: len(clients()) == 1)
        name, session, readonly, window = clients()[0].split()
        assert session.startswith("fleetview")
        assert (readonly, window) == (read_only, "other")
        after = subprocess.run(
            ["tmux", "-S", sock, "display", "-p", "-t", "=fleet:", "#{window_name}"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert after.stdout == before.stdout  # the fleet session's own current window is untouched
        subprocess.run(["tmux", "-S", sock, "detach-client", "-t", name], check=True)
        assert viewer.wait(timeout=30) == 0
        sessions = subprocess.run(
            ["tmux", "-S", sock, "list-sessions", "-F", "#{session_name}"], capture_output=True, text=True, check=True
        )
        assert sessions.stdout.split() == ["fleet"]  # the view went away with its client
    finally:
        viewer.kill()
        viewer.wait()


# --------------------------------------------------------------------------- the starter roster's shell


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[TmuxEnv]:
    """The fleet `roster.init` writes (one agent ``coder0``, runtime ``shell``: ``sh -i``), running."""
    env = TmuxEnv(tmp_path)
    env.inv_ok("roster.init")
    env.inv_ok("fleet.start")
    wait_for(lambda: "#" in env.inv_ok("fleet.logs", "--agent", "coder0", "--screen", "--lines", "5"))
    yield env
    env.inv("fleet.stop")


def run_fleet(env: TmuxEnv, *args: str | bytes, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    """`inv` with raw bytes in its arguments and on its stdin (what a shell can pass)."""
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args], cwd=REPO, env=env.env, input=stdin, capture_output=True, timeout=300,
        check=False,
    )  # fmt: skip


def screen(env: TmuxEnv) -> str:
    return env.inv_ok("fleet.logs", "--agent", "coder0", "--screen", "--lines", "50")


def test_a_multi_line_send_to_the_shell_runs_nothing_and_says_why(shell: TmuxEnv) -> None:
    # Defect: `printf 'echo FIRST\necho SECOND' | fleet send --agent a1 --message -` ran the
    # first line alone: sh never asks for bracketed paste, so each newline was an Enter.
    refused = run_fleet(shell, "fleet.send", "--agent", "coder0", "--message", "-", stdin=b"echo FIRST\necho SECOND")
    assert refused.returncode == 2, refused
    error = refused.stderr.decode().strip()
    assert len(error.splitlines()) == 1
    assert error.startswith("error: agent 'coder0' (runtime 'shell') does not take bracketed paste"), error
    assert "nothing was sent" in error
    assert "accepted" in shell.inv_ok("fleet.send", "--agent", "coder0", "--message", "echo MARK-$((6*7))")
    wait_for(lambda: "MARK-42" in screen(shell).replace("MARK-$((6*7))", ""))
    assert "FIRST" not in screen(shell)


@pytest.mark.parametrize("where", ["argv", "stdin"])
def test_a_message_that_is_not_utf8_is_one_line_and_nothing_is_sent(shell: TmuxEnv, where: str) -> None:
    # Defect: `--message $'echo \xff'` (or the same bytes on stdin) ended in a traceback.
    message, stdin = (b"echo BAD-\xff", b"") if where == "argv" else (b"-", b"echo BAD-\xff\n")
    refused = run_fleet(shell, "fleet.send", "--agent", "coder0", "--message", message, stdin=stdin)
    assert refused.returncode == 2, refused
    error = refused.stderr.decode(errors="replace").strip()
    assert error.splitlines() == [error]
    assert error.startswith("error: the message is not valid UTF-8 (byte 0xff at character 9)"), error
    assert "BAD-" not in screen(shell)
