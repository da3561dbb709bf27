"""Issue 14 attacked as a careless user and a hostile neighbour would: a frozen watcher, a
damaged or planted ``watcher.json``, notification commands that hang or leave processes
behind, an answer sent to an agent that asks nothing, odd files where transcripts belong,
bad ``fleet wait`` flags, two fleets side by side.

The promise under test: bad input never changes data, never hangs, never prints a
traceback; it is one line on stderr and the documented exit code. Witnesses are the test's
own: /proc scans, the pane's screen read with tmux directly, the files themselves.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fleetlib import tmux, transcript, watcher
from fleetlib.activity import Debouncer, Transition
from fleetlib.runner import DryRunRunner
from fleetlib.watcher import Watcher, WatcherConfig, read_config
from tests.conftest import REPO, run_inv, watcher_pids
from tests.test_fleet_tmux import TmuxEnv

AGENTS = REPO / "tests" / "fake_agents"
LIMIT_S = 60.0  # a liveness bound: the system must get there on its own, not a timing target


# --------------------------------------------------------------------------- helpers


def eventually(check: Callable[[], bool], what: str, limit: float = LIMIT_S) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"never happened within {limit}s: {what}")


def _argv(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    """Alive and not a zombie, read from /proc."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def with_env(variable: bytes) -> list[int]:
    """Live processes whose environment holds ``variable`` (``KEY=value``)."""
    found = []
    for pid in _pids():
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if variable in environ and _alive(pid):
            found.append(pid)
    return found


def writers_into(directory: Path) -> list[int]:
    """Live processes writing (stdout) into a file of ``directory``: the transcript `cat`s."""
    found = []
    for pid in _pids():
        try:
            target = os.readlink(f"/proc/{pid}/fd/1")
        except OSError:
            continue
        if target.startswith(f"{directory}/") and _alive(pid):
            found.append(pid)
    return found


class Fleet(TmuxEnv):
    """A tmux-backend fleet of fake runtimes in a private home."""

    def agents(self, body: str) -> None:
        path = self.home / "fleet" / "roster.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("version: 1\nagents:\n" + body)

    def claude(self, name: str, extra: str = "") -> str:
        command = json.dumps([sys.executable, str(AGENTS / "claude_like.py")])
        return f"  - name: {name}\n    runtime: claude\n    command: {command}\n{extra}"

    @property
    def socket(self) -> Path:
        return self.home / "fleet" / "run" / "tmux.sock"

    def tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["tmux", "-S", str(self.socket), *args], capture_output=True, text=True, check=False)

    def screen(self, name: str) -> str:
        return self.tmux("capture-pane", "-p", "-t", f"=fleet:={name}").stdout


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    made = Fleet(tmp_path)
    yield made
    for pid in watcher_pids(made.home):  # a test may leave it stopped: let it die with the server
        os.kill(pid, signal.SIGCONT)
    made.inv("fleet.stop")
    made.tmux("kill-server")


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


pytestmark = pytest.mark.tmux


# --------------------------------------------------------------------------- a frozen watcher


def test_a_frozen_watcher_never_leaves_status_or_wait_with_a_stale_state(fleet: Fleet) -> None:
    # Defect: the watcher's records on the windows were trusted however old; with the
    # watcher SIGSTOPped (or killed for good), `status` kept showing `idle` for an agent
    # that asked a question, and `fleet wait --for waiting` timed out while it was.
    fleet.agents(fleet.claude("cl"))
    fleet.inv_ok("fleet.start")
    fleet.inv_ok("fleet.wait", "--agent", "cl", "--for", "idle", "--timeout", "60")
    eventually(lambda: len(watcher_pids(fleet.home)) == 1, "one watcher")
    frozen = watcher_pids(fleet.home)[0]
    os.kill(frozen, signal.SIGSTOP)
    try:
        fleet.inv_ok("fleet.send", "--agent", "cl", "--message", "ask")  # send reads the screen itself
        eventually(lambda: "Do you want to proceed?" in fleet.screen("cl"), "the question on the screen")
        waited = fleet.inv("fleet.wait", "--agent", "cl", "--for", "waiting", "--timeout", "30")
        assert waited.returncode == 0, waited.stderr
        assert fleet.row("cl")["state"] == "waiting"
        assert Path(f"/proc/{frozen}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"  # still frozen
    finally:
        os.kill(frozen, signal.SIGCONT)
    fleet.inv_ok("fleet.send", "--agent", "cl", "--message", "1", "--answer")
    fleet.inv_ok("fleet.wait", "--agent", "cl", "--for", "idle", "--timeout", "60")


def test_a_frozen_tmux_server_makes_send_fail_in_one_line_not_hang(fleet: Fleet) -> None:
    # Defect: every tmux client of `send` waited up to 300 s, so a send to a fleet whose
    # server was stopped hung for five minutes and then said the agent was "not running".
    fleet.agents(fleet.claude("cl"))
    fleet.inv_ok("fleet.start")
    fleet.inv_ok("fleet.wait", "--agent", "cl", "--for", "idle", "--timeout", "60")
    server = int(fleet.tmux("display", "-p", "#{pid}").stdout)
    os.kill(server, signal.SIGSTOP)
    try:
        began = time.monotonic()
        result = run_inv(["fleet.send", "--agent", "cl", "--message", "hi", "--timeout", "3"], fleet.env, timeout=120)
        elapsed = time.monotonic() - began
    finally:
        os.kill(server, signal.SIGCONT)
    assert result.returncode == 1, result.stderr
    assert "did not answer" in result.stderr
    assert "not running" not in result.stderr
    assert "Traceback" not in result.stderr
    assert elapsed < 60, elapsed
    assert "you said: hi" not in fleet.screen("cl")  # nothing was typed


# --------------------------------------------------------------------------- --answer


def test_an_answer_is_never_typed_into_an_agent_that_asks_nothing(fleet: Fleet) -> None:
    # Defect: `send --answer` to an idle agent typed the answer as a new message: the
    # "1" meant for a question that was gone became a prompt the agent worked on.
    fleet.agents(fleet.claude("cl"))
    fleet.inv_ok("fleet.start")
    fleet.inv_ok("fleet.wait", "--agent", "cl", "--for", "idle", "--timeout", "60")
    refused = fleet.inv("fleet.send", "--agent", "cl", "--message", "1", "--answer", "--timeout", "5")
    assert refused.returncode == 1, refused.stdout
    assert "not asking anything" in refused.stderr
    assert "Traceback" not in refused.stderr
    time.sleep(1.5)  # a typed message would show by now
    assert "you said: 1" not in fleet.screen("cl")
    assert "❯ 1" not in fleet.screen("cl")  # noqa: RUF001 - the fake's prompt character

    # The answer still goes through while the question is there.
    fleet.inv_ok("fleet.send", "--agent", "cl", "--message", "ask")
    fleet.inv_ok("fleet.wait", "--agent", "cl", "--for", "waiting", "--timeout", "30")
    assert "accepted" in fleet.inv_ok("fleet.send", "--agent", "cl", "--message", "1", "--answer")
    eventually(lambda: "approved" in fleet.screen("cl"), "the answer taken")


# --------------------------------------------------------------------------- watcher.json


def test_a_directory_at_watcher_json_is_one_line_naming_it_and_nothing_starts(fleet: Fleet) -> None:
    # Defect: the atomic rename failed and the message named a random temp file
    # (".watcher.json.5cc3sepv.tmp: Is a directory"), exit 1, with no way to fix it.
    fleet.agents(fleet.claude("cl"))
    config = fleet.home / "fleet" / "run" / "watcher.json"
    config.parent.mkdir(parents=True, mode=0o700)
    config.mkdir()
    line = one_line_error(fleet.inv("fleet.start"), 2)
    assert str(config) in line
    assert ".tmp" not in line
    assert "rm -r" in line
    assert fleet.tmux("list-sessions").returncode != 0  # no server: nothing was started
    assert config.is_dir()
    assert [p.name for p in config.parent.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_a_planted_watcher_json_is_replaced_by_a_private_file_and_its_target_kept(
    fleet: Fleet, tmp_path: Path, kind: str
) -> None:
    # Defect: the new file inherited the planted node's permission bits (a symlink to a
    # 0644 file made watcher.json, with every notification command, 0644).
    fleet.agents(fleet.claude("cl"))
    config = fleet.home / "fleet" / "run" / "watcher.json"
    config.parent.mkdir(parents=True, mode=0o700)
    target = tmp_path / "elsewhere.json"
    target.write_text("not yours")
    target.chmod(0o644)
    if kind == "symlink":
        config.symlink_to(target)
    else:
        os.mkfifo(config, 0o644)
    started = run_inv(["fleet.start"], fleet.env, timeout=LIMIT_S)  # a FIFO must not block it
    assert started.returncode == 0, started.stderr
    info = config.lstat()
    assert stat.S_ISREG(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert json.loads(config.read_text())["agents"][0]["name"] == "cl"
    assert target.read_text() == "not yours"
    fleet.inv_ok("fleet.wait", "--agent", "cl", "--for", "idle", "--timeout", "60")


GOOD = {
    "version": 1,
    "tmux": "tmux",
    "socket": "/run/x/tmux.sock",
    "home": "/home/x",
    "agents": [
        {
            "name": "a",
            "runtime": "claude",
            "on_state_change": ["notify-send", "fleet"],
            "log": "/home/x/fleet/logs/a.log",
            "log_max_bytes": 4096,
            "log_keep": 1,
        }
    ],
}


def _agent(**changes: object) -> dict[str, object]:
    return {**GOOD, "agents": [{**GOOD["agents"][0], **changes}]}  # type: ignore[dict-item]


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(_agent(log_max_bytes=10**30)).replace(str(10**30), "1e400"),  # inf: OverflowError
        "[" * 100_000 + "]" * 100_000,  # RecursionError
        json.dumps(_agent(on_state_change="notify")),  # a string, not an argv list
        json.dumps(_agent(on_state_change=["a\u0000b"])),
        json.dumps(_agent(log_keep=-3)),
        json.dumps(_agent(log_keep=True)),
        json.dumps(_agent(log_max_bytes=0)),  # would rotate every 5 s, pushing out old files
        json.dumps({**GOOD, "agents": [{"name": "a", "runtime": "c", "log": "/x"}]}),  # no log_max_bytes
        json.dumps(_agent(log_max_bytes=5000.5)),
        json.dumps(_agent(name=7)),
        json.dumps({**GOOD, "agents": [["a"]]}),
        json.dumps({**GOOD, "agents": None}),
        json.dumps({**GOOD, "tmux": None}),
        json.dumps({**GOOD, "version": 2}),
        "\xff\xfe garbage",
        "",
        json.dumps(_agent(stop_timeout=0)),
        json.dumps(_agent(stop_timeout=True)),
        json.dumps(_agent(stop_timeout="10")),
        json.dumps(_agent(stop_timeout=10**30)).replace(str(10**30), "1e400"),
    ],
    ids=[
        "inf",
        "deeply-nested",
        "command-a-string",
        "command-with-nul",
        "negative-keep",
        "bool-keep",
        "zero-max-bytes",
        "missing-max-bytes",
        "float-max-bytes",
        "name-a-number",
        "agent-a-list",
        "agents-null",
        "tmux-null",
        "version-2",
        "not-json",
        "empty",
        "zero-stop-timeout",
        "bool-stop-timeout",
        "string-stop-timeout",
        "inf-stop-timeout",
    ],
)
def test_a_damaged_watcher_json_is_refused_whole_and_never_raises(tmp_path: Path, text: str) -> None:
    (tmp_path / "watcher.json").write_text(text, errors="surrogateescape")
    assert read_config(tmp_path) is None


def test_what_the_fleet_writes_is_read_back(tmp_path: Path) -> None:
    (tmp_path / "watcher.json").write_text(json.dumps(GOOD))
    config = read_config(tmp_path)
    assert config is not None
    agent = config.agents["a"]
    assert (agent.on_state_change, agent.log_max_bytes, agent.log_keep) == (("notify-send", "fleet"), 4096, 1)
    assert agent.stop_timeout == 10.0  # a file written before stop timeouts were in it: the roster's default
    (tmp_path / "watcher.json").write_text(json.dumps(_agent(stop_timeout=2.5)))
    config = read_config(tmp_path)
    assert config is not None
    assert config.agents["a"].stop_timeout == 2.5


def test_a_damaged_watcher_json_keeps_the_last_good_one_and_is_said_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "watcher.json"
    path.write_text(json.dumps(GOOD))
    seen = Watcher(tmp_path)
    seen._reload()
    good = seen.config
    assert isinstance(good, WatcherConfig)
    path.unlink()
    os.mkfifo(path)  # never opened for reading, so never blocks
    for _ in range(3):
        seen._reload()
    assert seen.config == good
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1, said
    assert str(path) in said[0]
    assert "fleet start" in said[0]


# --------------------------------------------------------------------------- notifications


def _hanging_watcher(tmp_path: Path, command: list[str], marker: str, timeout: float) -> Watcher:
    (tmp_path / "watcher.json").write_text(json.dumps(_agent(on_state_change=command)))
    made = Watcher(tmp_path, environ={**os.environ, "ADV_MARK": marker}, notify_timeout=timeout)
    made._reload()
    return made


@pytest.mark.parametrize(
    "command",
    [
        ["sh", "-c", "sleep 300; :"],  # the shell waits for its child: killing the shell alone leaves it
        ["sh", "-c", "sleep 300 & exit 0"],  # exits at once, leaves a background process behind
        ["sh", "-c", "setsid sleep 300 & exit 0"],  # ... in a session (and process group) of its own
    ],
    ids=["child", "background", "setsid"],
)
def test_a_notification_command_is_ended_with_everything_it_started(tmp_path: Path, command: list[str]) -> None:
    # Defect: only the command's own pid was killed after the timeout, and a command that
    # had exited was forgotten: its children lived on, one more per notification.
    marker = f"ADV_MARK={uuid.uuid4().hex}".encode()
    seen = _hanging_watcher(tmp_path, command, marker.decode().split("=", 1)[1], timeout=1.0)
    assert seen.config is not None
    seen._notify(seen.config, watcher.Notice("a", "idle", "waiting", "screen"))
    eventually(lambda: any(_argv(pid)[:1] == ["sleep"] for pid in with_env(marker)), "the command's sleep", 10)
    time.sleep(1.2)
    seen._reap()
    eventually(lambda: not with_env(marker), "every process of the notification gone", 10)
    assert seen.running == []


@pytest.mark.parametrize(
    "command",
    [["sh", "-c", "sleep 300; :"], ["sh", "-c", "setsid sh -c 'trap \"\" TERM; sleep 300; :' & sleep 300; :"]],
    ids=["child", "setsid-ignoring-term"],
)
def test_a_watcher_that_ends_ends_its_notification_commands(tmp_path: Path, command: list[str]) -> None:
    marker = f"ADV_MARK={uuid.uuid4().hex}".encode()
    seen = _hanging_watcher(tmp_path, command, marker.decode().split("=", 1)[1], timeout=600)
    assert seen.config is not None
    seen._notify(seen.config, watcher.Notice("a", "idle", "waiting", "screen"))
    eventually(
        lambda: sum(_argv(pid)[:1] == ["sleep"] for pid in with_env(marker)) == command[2].count("sleep"),
        "every sleep",
        10,
    )
    seen._reap()
    assert len(seen.running) == 1  # within its time: left alone
    seen.end_notifications()
    eventually(lambda: not with_env(marker), "every process of the notification gone", 10)


def test_a_new_watcher_takes_over_the_notifications_a_killed_one_left(tmp_path: Path) -> None:
    # A watcher killed outright (SIGKILL, a crash) runs no clean-up: the one that replaces
    # it finds what the old one started, counts it against the cap and ends it in time.
    marker = f"ADV_MARK={uuid.uuid4().hex}".encode()
    old = _hanging_watcher(tmp_path, ["sh", "-c", "setsid sleep 300 & exit 0"], marker.decode().split("=", 1)[1], 600)
    assert old.config is not None
    old._notify(old.config, watcher.Notice("a", "idle", "waiting", "screen"))
    eventually(lambda: any(_argv(pid)[:1] == ["sleep"] for pid in with_env(marker)), "the escaped sleep", 10)
    new = _hanging_watcher(tmp_path, ["true"], marker.decode().split("=", 1)[1], timeout=1.0)
    new.max_notifications = 1
    new._reap()
    assert new.config is not None
    new._notify(new.config, watcher.Notice("a", "idle", "waiting", "screen"))
    assert len(new.running) == 1  # the old one's notification counts: the cap (1) holds
    time.sleep(1.2)
    new._reap()
    eventually(lambda: not with_env(marker), "the old watcher's notification ended", 10)
    for notification in old.running:  # reaped as init would reap a killed watcher's children
        assert notification.proc is not None
        notification.proc.wait(timeout=10)


def _capped_watcher(tmp_path: Path, command: list[str], marker: str) -> Watcher:
    """A watcher whose notifications never time out here, at most 3 at once."""
    seen = _hanging_watcher(tmp_path, command, marker, timeout=600)
    seen.max_notifications = 3
    return seen


def _ask(seen: Watcher, index: int) -> None:
    """Agent ``a`` asks once more, after the watcher collected what ended (as a tick does)."""
    assert seen.config is not None
    seen._reap()
    seen._notify(seen.config, watcher.Notice("a", "idle", "waiting", f"question {index}"))


@pytest.mark.parametrize(
    "command", [["sleep", "300"], ["sh", "-c", "setsid sleep 300 & exit 0"]], ids=["hanging", "setsid"]
)
def test_hanging_notification_commands_never_pile_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    # Defect: every transition started one more command, however many still hung (a
    # notifier stuck on a dead bus, an agent asking every few seconds): processes without bound.
    # Then: a command that left a `setsid` process behind no longer counted.
    marker = f"ADV_MARK={uuid.uuid4().hex}".encode()
    seen = _capped_watcher(tmp_path, command, marker.decode().split("=", 1)[1])
    try:
        for index in range(10):
            _ask(seen, index)
            eventually(lambda: all(_argv(pid)[:1] == ["sleep"] for pid in with_env(marker)), "only sleeps left", 10)
        eventually(lambda: len(with_env(marker)) == 3, "three commands running", 10)
        assert len(with_env(marker)) == 3  # and no more
        said = capsys.readouterr().err.strip().splitlines()
        assert len(said) == 7
        assert "not telling that a is waiting" in said[0]
    finally:
        seen.end_notifications()
    eventually(lambda: not with_env(marker), "every command ended", 10)


def test_a_notification_whose_leftover_cleared_its_environment_still_counts_until_its_time(tmp_path: Path) -> None:
    # Defect: a command was counted only while /proc showed a process carrying its marker,
    # so one whose leftover cleared its environment (`env -i`), or was caught in the middle
    # of an exec (no environment shown for an instant), no longer counted: one more command
    # ran. The witness is the command line the test chose, not the marker.
    unique = str(uuid.uuid4().int % 900_000 + 100_000)
    command = ["sh", "-c", f"setsid env -i sleep {unique} & exit 0"]

    def leftovers() -> list[int]:
        return [pid for pid in _pids() if _argv(pid) == ["sleep", unique] and _alive(pid)]

    seen = _capped_watcher(tmp_path, command, uuid.uuid4().hex)
    try:
        for index in range(6):
            _ask(seen, index)
            want = min(index + 1, 3)
            eventually(lambda want=want: len(leftovers()) == want, "the leftover of every command started", 10)
        assert len(leftovers()) == 3
        seen.notify_timeout = 0.0  # past their time: nothing can find them to end them, they are let go
        seen._reap()
        assert seen.running == []
    finally:
        for pid in leftovers():
            os.kill(pid, signal.SIGKILL)
        seen.end_notifications()


def test_a_watcher_out_of_descriptors_says_so_and_tells_the_next_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fault: no descriptor left for a notification's witness pipe (EMFILE). That change goes
    # untold, in one line; the watcher neither crashes nor counts a command that never ran.
    marker = f"ADV_MARK={uuid.uuid4().hex}".encode()
    seen = _capped_watcher(tmp_path, ["sleep", "300"], marker.decode().split("=", 1)[1])

    def no_descriptors() -> tuple[int, int]:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    try:
        monkeypatch.setattr(watcher.os, "pipe", no_descriptors)
        _ask(seen, 0)
        monkeypatch.undo()
        assert seen.running == []
        assert capsys.readouterr().err.strip().splitlines() == [
            "fleet watcher: cannot run 'sleep': Too many open files"
        ]
        _ask(seen, 1)
        eventually(lambda: len(with_env(marker)) == 1, "the next change told", 10)
    finally:
        seen.end_notifications()


@pytest.mark.parametrize("escape", ["", "setsid "], ids=["child", "setsid"])
def test_fleet_stop_leaves_no_watcher_writer_or_hung_notification_behind(fleet: Fleet, escape: str) -> None:
    marker = uuid.uuid4().hex
    hook = json.dumps(["sh", "-c", f": {marker}; {escape}sleep 7777; :"])
    fleet.agents(fleet.claude("cl", f"    on_state_change: {hook}\n"))
    fleet.inv_ok("fleet.start")
    fleet.inv_ok("fleet.wait", "--agent", "cl", "--for", "idle", "--timeout", "60")
    fleet.inv_ok("fleet.send", "--agent", "cl", "--message", "ask")
    notified = f"FLEET_HOME={fleet.home}".encode()
    eventually(lambda: any(_argv(pid) == ["sleep", "7777"] for pid in with_env(notified)), "the hung notification")
    logs = fleet.home / "fleet" / "logs"
    assert watcher_pids(fleet.home)
    assert writers_into(logs)
    fleet.inv_ok("fleet.stop")
    eventually(lambda: not watcher_pids(fleet.home), "no watcher")
    eventually(lambda: not writers_into(logs), "no transcript writer")
    eventually(lambda: not with_env(notified), "no notification process", 10)


@pytest.mark.parametrize("whole", [True, False], ids=["fleet", "one-agent"])
def test_a_stopped_transcript_writer_never_outlives_stop(fleet: Fleet, whole: bool) -> None:
    # Defect: a SIGSTOPped `cat` (the README's own slow-disk experiment) stayed stopped
    # for ever after `fleet stop`: its parent, the tmux server, was gone and no hang-up
    # reaches a process that leads its own session.
    fleet.agents(fleet.claude("cl") + fleet.claude("c2"))
    fleet.inv_ok("fleet.start")
    logs = fleet.home / "fleet" / "logs"
    eventually(lambda: len(writers_into(logs)) == 2, "a writer per agent")
    mine = [pid for pid in writers_into(logs) if os.readlink(f"/proc/{pid}/fd/1") == str(logs / "cl.log")]
    assert len(mine) == 1
    os.kill(mine[0], signal.SIGSTOP)
    try:
        fleet.inv_ok("fleet.stop", *([] if whole else ["--agent", "cl"]))
        eventually(lambda: not _alive(mine[0]), "the stopped writer gone", 20)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(mine[0], signal.SIGCONT)  # never leave a stopped process behind
    if not whole:
        assert fleet.row("c2")["process_state"] == "running"
        assert len(writers_into(logs)) == 1  # c2's writer untouched


def test_a_missing_notification_command_is_one_line_and_the_watcher_keeps_watching(fleet: Fleet) -> None:
    fleet.agents(fleet.claude("cl", "    on_state_change: [/nonexistent/notify]\n"))
    fleet.inv_ok("fleet.start")
    fleet.inv_ok("fleet.wait", "--agent", "cl", "--for", "idle", "--timeout", "60")
    pid = watcher_pids(fleet.home)
    fleet.inv_ok("fleet.send", "--agent", "cl", "--message", "ask")
    fleet.inv_ok("fleet.wait", "--agent", "cl", "--for", "waiting", "--timeout", "30")
    eventually(lambda: "cannot run '/nonexistent/notify'" in fleet.screen("_watcher"), "the line in its window")
    assert "Traceback" not in fleet.screen("_watcher")
    fleet.inv_ok("fleet.send", "--agent", "cl", "--message", "1", "--answer")
    fleet.inv_ok("fleet.wait", "--agent", "cl", "--for", "idle", "--timeout", "30")
    assert watcher_pids(fleet.home) == pid  # the same watcher, never restarted


# --------------------------------------------------------------------------- two fleets


def test_stopping_one_fleet_never_touches_the_other_fleets_watcher(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = Fleet(tmp_path / "a"), Fleet(tmp_path / "b")
    try:
        for each in (first, second):
            each.agents(each.claude("cl"))
            each.inv_ok("fleet.start")
        eventually(lambda: len(watcher_pids(first.home)) == len(watcher_pids(second.home)) == 1, "two watchers")
        kept = watcher_pids(second.home)
        first.inv_ok("fleet.stop")
        eventually(lambda: not watcher_pids(first.home), "the first watcher gone")
        time.sleep(1.5)
        assert watcher_pids(second.home) == kept
        second.inv_ok("fleet.send", "--agent", "cl", "--message", "ask")
        second.inv_ok("fleet.wait", "--agent", "cl", "--for", "waiting", "--timeout", "30")
    finally:
        for each in (first, second):
            each.inv("fleet.stop")
            each.tmux("kill-server")


# --------------------------------------------------------------------------- flags and odd files


@pytest.mark.parametrize(
    "args",
    [
        ["--agent", "cl", "--for", "idle", "--timeout", "nan"],
        ["--agent", "cl", "--for", "idle", "--timeout", "inf"],
        ["--agent", "cl", "--for", "idle", "--timeout", "-1"],
        ["--agent", "cl", "--for", "idle", "--timeout", "0"],
        ["--agent", "cl", "--for", "idle", "--timeout", "abc"],
        ["--agent", "cl", "--for", "sleeping"],
        ["--agent", "cl"],
        ["--agent", "cl", "--all", "--for", "idle"],
        ["--for", "idle"],
        ["--agent", "nobody", "--for", "idle"],
    ],
)
def test_fleet_wait_refuses_bad_flags_in_one_line(fleet: Fleet, args: list[str]) -> None:
    fleet.agents(fleet.claude("cl"))
    line = one_line_error(run_inv(["fleet.wait", *args], fleet.env, timeout=LIMIT_S), 2)
    assert line.startswith("error: ")


def test_fleet_wait_for_a_stopped_agent_times_out_naming_its_state(fleet: Fleet) -> None:
    fleet.agents(fleet.claude("cl"))
    result = run_inv(["fleet.wait", "--agent", "cl", "--for", "idle", "--timeout", "1"], fleet.env, timeout=LIMIT_S)
    assert "cl is stopped" in one_line_error(result, 1)
    assert fleet.tmux("list-sessions").returncode != 0  # a wait starts nothing


def claude_cl_with_logs_dir(fleet: Fleet) -> Path:
    """A roster of one Claude agent ``cl`` and its fleet's (private) logs directory, made."""
    fleet.agents(fleet.claude("cl"))
    logs = fleet.home / "fleet" / "logs"
    logs.mkdir(parents=True, mode=0o700)
    return logs


def put_odd_file(path: Path, kind: str, target: Path) -> None:
    """Put at ``path`` what ``kind`` names: a ``fifo``, a ``directory`` or a ``symlink`` to ``target``."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        assert kind == "symlink", kind
        path.symlink_to(target)


@pytest.mark.parametrize("kind", ["fifo", "directory", "symlink"])
def test_an_odd_file_at_a_transcript_path_is_one_line_never_a_hang(fleet: Fleet, tmp_path: Path, kind: str) -> None:
    logs = claude_cl_with_logs_dir(fleet)
    (tmp_path / "other").write_text("==> fleet: generation started x pid 1: y\nsecret\n")
    put_odd_file(logs / "cl.log", kind, tmp_path / "other")
    for extra in ([], ["--generation", "previous"], ["--generation", "all"]):
        line = one_line_error(run_inv(["fleet.logs", "--agent", "cl", *extra], fleet.env, timeout=LIMIT_S), 2)
        assert str(logs) in line
        assert "secret" not in line


@pytest.mark.parametrize("kind", ["fifo", "directory", "symlink"])
def test_an_odd_file_at_a_rotated_name_is_skipped_never_followed(fleet: Fleet, tmp_path: Path, kind: str) -> None:
    # Defect: an odd <name>.log.N made every `fleet logs` exit 2, even for the current generation.
    logs = claude_cl_with_logs_dir(fleet)
    (logs / "cl.log").write_text("==> fleet: generation started x pid 1: y\nnow\n")
    (tmp_path / "other").write_text("==> fleet: generation started x pid 0: y\nsecret\n")
    put_odd_file(logs / "cl.log.1", kind, tmp_path / "other")
    for extra in ([], ["--generation", "all"]):
        shown = run_inv(["fleet.logs", "--agent", "cl", *extra], fleet.env, timeout=LIMIT_S)
        assert (shown.returncode, shown.stdout.splitlines()[1:]) == (0, ["now"]), shown.stderr
    previous = run_inv(["fleet.logs", "--agent", "cl", "--generation", "previous"], fleet.env, timeout=LIMIT_S)
    assert "secret" not in one_line_error(previous, 1)  # no previous generation: the odd file is not read


@pytest.mark.parametrize("kind", ["symlink", "fifo", "directory"])
def test_an_odd_file_at_a_transcript_path_stops_start_before_anything_is_written(
    fleet: Fleet, tmp_path: Path, kind: str
) -> None:
    # Defect: the window's `cat >> cl.log` followed a symlink there and appended the
    # agent's output to its target (a ~/.bashrc, say); a FIFO blocked the writer while
    # tmux buffered without bound; a directory failed again every time the watcher renewed it.
    logs = claude_cl_with_logs_dir(fleet)
    target = tmp_path / "bashrc"
    target.write_text("keep me\n")
    log = logs / "cl.log"
    put_odd_file(log, kind, target)
    line = one_line_error(run_inv(["fleet.start"], fleet.env, timeout=LIMIT_S), 2)
    assert str(log) in line
    assert fleet.tmux("list-sessions").returncode != 0  # nothing started
    time.sleep(0.5)
    assert target.read_text() == "keep me\n"


@pytest.mark.parametrize("kind", ["file", "symlink"])
def test_a_logs_dir_that_is_not_a_directory_stops_start_in_one_line(fleet: Fleet, tmp_path: Path, kind: str) -> None:
    fleet.agents(fleet.claude("cl"))
    logs = fleet.home / "fleet" / "logs"
    if kind == "file":
        logs.write_text("keep me")
    else:
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        logs.symlink_to(tmp_path / "elsewhere")
    line = one_line_error(run_inv(["fleet.start"], fleet.env, timeout=LIMIT_S), 2)
    assert str(logs) in line
    assert fleet.tmux("list-sessions").returncode != 0
    if kind == "file":
        assert logs.read_text() == "keep me"
    else:
        assert list((tmp_path / "elsewhere").iterdir()) == []


# --------------------------------------------------------------------------- transcripts


def test_following_a_line_that_never_ends_stays_bounded(tmp_path: Path) -> None:
    # Defect: a partial line was held back (and copied on every poll) until its newline:
    # an agent redrawing one line with "\r" for hours grew `fleet logs --follow` for ever.
    path = tmp_path / "a.log"
    path.write_bytes(b"start\n")
    follower = transcript._Follower(path)
    try:
        shown = 0
        with path.open("ab") as out:
            for _ in range(8):
                out.write(b"\r" + b"x" * (512 * 1024))
                out.flush()
                shown += len(follower.poll())
                assert len(follower.pending) <= transcript.PENDING_CAP
        assert shown > 0  # the long line was shown, not held back for good
    finally:
        follower.close()


def test_a_transcript_that_cannot_be_rotated_is_said_once_and_nothing_is_renamed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Defect: "cannot rotate" was printed every 5 s for as long as the odd file stayed
    # (17 000 journal lines a day under systemd).
    log = tmp_path / "a.log"
    os.mkfifo(log)
    (tmp_path / "a.log.1").write_bytes(b"old\n")
    (tmp_path / "watcher.json").write_text(json.dumps(_agent(log=str(log), log_keep=2)))
    seen = Watcher(tmp_path)
    seen._reload()
    assert seen.config is not None
    windows = {"a": tmux.Window("a", 1, False, pane_id="%1", piped=True)}
    for _ in range(4):
        seen._rotate(seen.config, windows)
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1, said
    assert "is a FIFO" in said[0]
    assert (tmp_path / "a.log.1").read_bytes() == b"old\n"  # nothing renamed
    assert not (tmp_path / "a.log.2").exists()


def test_a_directory_at_a_rotated_name_is_skipped_and_said_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Defect: any odd file at <name>.log.N stopped rotation for good (the transcript grew
    # without bound). A directory is left alone and skipped; rotation goes on.
    log = tmp_path / "a.log"
    (tmp_path / "a.log.1").mkdir()
    (tmp_path / "watcher.json").write_text(json.dumps(_agent(log=str(log), log_keep=2)))
    seen = Watcher(tmp_path, runner=DryRunRunner(echo=lambda _: None))  # no tmux: the repipe is not run
    seen._reload()
    assert seen.config is not None
    windows = {"a": tmux.Window("a", 1, False, pane_id="%1", piped=True)}
    for round_ in range(4):
        log.write_bytes(b"%d\n" % round_ + b"x" * 8192)
        seen._rotate(seen.config, windows)
        assert not log.exists()
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1, said
    assert f"{tmp_path}/a.log.1 is a directory" in said[0]
    assert (tmp_path / "a.log.1").is_dir()
    assert sorted(p.name for p in tmp_path.glob("a.log.*")) == ["a.log.1", "a.log.2", "a.log.3"]
    assert (tmp_path / "a.log.2").read_bytes().startswith(b"3\n")  # the newest first, past the directory
    assert (tmp_path / "a.log.3").read_bytes().startswith(b"2\n")


# --------------------------------------------------------------------------- the clock


def test_a_clock_stepped_back_never_holds_a_state_back_until_it_catches_up() -> None:
    # Defect: the debounce measured from a time in the future: after the wall clock stepped
    # back an hour, the new state was held back for that hour.
    debouncer = Debouncer(1.0)
    debouncer.observe("idle", 10_000.0)
    assert debouncer.observe("working", 10_000.5) is None
    assert debouncer.observe("working", 6_400.0) is None  # stepped back: the debounce starts again
    assert debouncer.observe("working", 6_401.5) == Transition("idle", "working", 6_400.0)
