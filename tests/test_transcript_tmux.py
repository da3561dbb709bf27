"""Transcripts on a real tmux server: capture from the first byte, a stalled writer never
blocks an agent, rotation while the agent writes loses nothing, generations across
restarts (tmux backend, through `inv fleet.*`), and `fleet logs` on the transcript."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleetlib import pane, tmux, transcript
from fleetlib.pane import PaneSpec
from fleetlib.paths import FleetPaths
from fleetlib.rundir import ensure_private_dir
from fleetlib.transcript import HEADER_RE
from fleetlib.watcher import Watcher
from fleetlib.watcher_config import WatchedAgent, WatcherConfig
from tests.conftest import InvUser, eventually
from tests.test_fleet_tmux import TmuxEnv

pytestmark = pytest.mark.tmux


@dataclass
class Server:
    """The fleet's private tmux server, driven with the product's own window commands."""

    paths: FleetPaths

    def tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = ["tmux", "-S", str(self.paths.tmux_socket), "-f", "/dev/null", *args]
        return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)

    def start(self) -> None:
        ensure_private_dir(self.paths.run_dir, "run dir")
        transcript.ensure_log_dir(self.paths)
        pane.install_script(self.paths.run_dir)
        self.tmux(*tmux.new_session_commands(), ";", *tmux.keep_dead_panes_commands())

    def window(self, name: str, argv: list[str]) -> None:
        """Create (or replace) the agent's window exactly as the tmux backend does (the
        old window's processes are killed first, as the engine's stop would)."""
        self.kill_panes(tmux.window_target(name))
        spec = PaneSpec(
            name=name,
            target=tmux.window_target(name),
            tmux="tmux",
            socket=str(self.paths.tmux_socket),
            cwd=str(self.paths.home),
            max_failures=5,
            failure_window=60,
        )
        self.tmux(*tmux.agent_window_commands(spec, argv, env={}, run_dir=self.paths.run_dir))

    def kill_panes(self, target: str | None = None) -> None:
        """SIGKILL the process group of every pane (of ``target``): a pane's supervisor
        outlives a bare kill-window or kill-server while its agent does not read the tty."""
        where = ["-t", target] if target else ["-a"]
        listed = self.tmux("list-panes", *where, "-F", "#{pane_pid}", check=False).stdout.split()
        kill_groups(listed)

    def stop(self) -> None:
        self.kill_panes()
        self.tmux("kill-server", check=False)

    def screen(self, name: str) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-t", tmux.window_target(name), "-S", "-50", check=False).stdout

    def rotate_tick(self, watcher: Watcher, name: str, *, max_bytes: int, keep: int) -> None:
        """What ``watcher`` does about transcripts in one of its ticks, for the window ``name``."""
        log = transcript.log_path(self.paths, name)
        agent = WatchedAgent(name=name, runtime="custom", log=str(log), log_max_bytes=max_bytes, log_keep=keep)
        config = WatcherConfig(tmux="tmux", socket=str(self.paths.tmux_socket), home=str(self.paths.home),
                               agents={name: agent})  # fmt: skip
        shown = self.tmux("display", "-p", "-t", tmux.window_target(name), "#{pane_id} #{pane_pipe}").stdout.split()
        watcher._rotate(config, {name: tmux.Window(name, 1, False, pane_id=shown[0], piped=shown[1] == "1")})

    def pipe_readers(self, log: Path) -> list[int]:
        """Pids of the writers (the pipes' readers) the server started that append to ``log``."""
        server = int(self.tmux("display-message", "-p", "#{pid}").stdout)
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                out = os.readlink(entry / "fd" / "1")
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == server and stat.split(" (", 1)[1].startswith("perl)") and out == str(log):
                found.append(int(entry.name))
        return found


def kill_groups(pids: list[str]) -> None:
    for pid in pids:
        if pid.isdigit():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(pid), signal.SIGKILL)  # a pane's process is its group's leader


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    made = Server(FleetPaths.resolve(tmp_path / "home"))
    made.paths.home.mkdir()
    made.start()
    yield made
    made.stop()


def log_text(path: Path) -> str:
    return path.read_bytes().decode("utf-8", "replace") if path.exists() else ""


def test_the_transcript_holds_the_first_byte_of_every_new_window(server: Server) -> None:
    """The pipe is set in the same tmux command sequence as new-window: an agent whose
    first action is printing a marker has it in the transcript, every time."""
    log = transcript.log_path(server.paths, "first")
    for attempt in range(20):
        marker = f"FIRST-BYTE-MARKER-{attempt:02d}"
        server.window("first", ["sh", "-c", f"printf '{marker}\\n'; exec sleep 1000"])
        eventually(lambda m=marker: m in server.screen("first"), f"{marker} on the screen")  # type: ignore[misc]
        # The whole line: tmux may hand the pipe the text and its line end in two writes.
        eventually(lambda m=marker: f"{m}\r\n" in log_text(log), f"{marker} in the transcript", limit=10)
        current = transcript.read(server.paths, "first", lines=10).splitlines()
        assert HEADER_RE.fullmatch(current[0]), current  # the generation's header comes first...
        assert current[1:] == [marker]  # ...then the agent's very first line
    text = transcript.read_path(log, lines=100_000, generation="all")
    assert [line for line in text.splitlines() if line.startswith("FIRST-BYTE")] == [
        f"FIRST-BYTE-MARKER-{i:02d}" for i in range(20)
    ]
    assert len(HEADER_RE.findall(text)) == 20


def test_the_header_names_the_agents_own_pid_and_command(server: Server) -> None:
    server.window("pid", ["sh", "-c", 'echo "my pid is $$"; exec sleep 1000', "arg0"])
    log = transcript.log_path(server.paths, "pid")
    eventually(lambda: re.search(r"my pid is \d+\r?\n", log_text(log)) is not None, "the agent's whole line")
    header, line = transcript.read(server.paths, "pid", lines=10).splitlines()
    match = HEADER_RE.fullmatch(header)
    assert match is not None
    assert line == f"my pid is {match['pid']}"
    assert match["command"] == 'sh -c echo "my pid is $$"; exec sleep 1000 arg0'
    assert abs(time.mktime(time.strptime(match["time"], "%Y-%m-%dT%H:%M:%SZ")) - time.mktime(time.gmtime())) < 60


@pytest.mark.timeout(240)
def test_a_stalled_transcript_writer_never_blocks_the_agent(server: Server, tmp_path: Path) -> None:
    """SIGSTOP the pane's transcript writer while the agent writes a few MB: the agent finishes and
    its last line is on the screen; after SIGCONT the transcript is complete."""
    go, done = tmp_path / "go", tmp_path / "done"
    count = 200_000  # about 6 MB with the pane's \r\n
    writer = (
        "import os, sys, time\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.02)\n"
        f"out = sys.stdout\nfor i in range({count}): out.write(f'transcript line {{i:07d}}\\n')\n"
        "out.write('LAST-LINE-OF-THE-AGENT\\n'); out.flush()\n"
        f"open({str(done)!r}, 'w').close()\ntime.sleep(1000)\n"
    )
    (tmp_path / "writer.py").write_text(writer)  # a one-line command, so a one-line header
    server.window("loud", [sys.executable, str(tmp_path / "writer.py")])
    log = transcript.log_path(server.paths, "loud")
    eventually(lambda: len(server.pipe_readers(log)) == 1, "the pane's writer")
    (reader,) = server.pipe_readers(log)
    os.kill(reader, signal.SIGSTOP)
    try:
        began = time.monotonic()
        go.touch()
        eventually(done.exists, "the agent finished writing while its transcript writer was stopped", limit=120)
        elapsed = time.monotonic() - began
        eventually(lambda: "LAST-LINE-OF-THE-AGENT" in server.screen("loud"), "the last line on the screen")
        stalled_size = log.stat().st_size
        assert stalled_size < count * 10  # the writer really was stalled: most of it sat in tmux's buffer
        print(
            f"\nagent wrote {count} lines in {elapsed:.2f}s with its writer stopped; transcript then {stalled_size} B"
        )
    finally:
        os.kill(reader, signal.SIGCONT)
    eventually(lambda: b"LAST-LINE-OF-THE-AGENT" in log.read_bytes(), "the transcript caught up", limit=120)
    lines = transcript.read(server.paths, "loud", lines=count + 10).splitlines()
    assert lines[1:-1] == [f"transcript line {i:07d}" for i in range(count)]
    assert lines[-1] == "LAST-LINE-OF-THE-AGENT"


@pytest.mark.timeout(240)
def test_rotation_while_the_agent_writes_loses_no_line_and_keeps_at_most_keep_files(
    server: Server, tmp_path: Path
) -> None:
    count = 6000
    writer = (
        "import sys, time\n"
        f"for i in range({count}):\n"
        "    sys.stdout.write(f'rotating line {i:06d}\\n'); sys.stdout.flush()\n"
        "    if i % 20 == 0: time.sleep(0.01)\n"
        "print('WRITER-DONE', flush=True); time.sleep(1000)\n"
    )
    (tmp_path / "writer.py").write_text(writer)
    server.window("rot", [sys.executable, str(tmp_path / "writer.py")])
    log = transcript.log_path(server.paths, "rot")
    eventually(log.exists, "the pane's writer opened the transcript")
    (writer_pid,) = server.pipe_readers(log)
    max_bytes, rotations = 16 * 1024, 0
    deadline = time.monotonic() + 120
    # Rotation is a rename only, as the watcher does it: the pane's pipe is never replaced
    # (tmux drops what it queued for a pipe it replaces: lines went missing that way).
    while b"WRITER-DONE" not in (log.read_bytes() if log.exists() else b""):
        assert time.monotonic() < deadline, "the writer never reopened the transcript after a rotation"
        if transcript.needs_rotation(log, max_bytes):
            transcript.rotate(log, 100)
            rotations += 1
        time.sleep(0.02)
    assert server.pipe_readers(log) == [writer_pid], "one writer, the same, from start to end"
    assert rotations >= 5, rotations
    lines = transcript.read(server.paths, "rot", lines=count + 10, generation="all").splitlines()
    assert lines[0].startswith("==> fleet: generation started")
    assert lines[1:-1] == [f"rotating line {i:06d}" for i in range(count)]
    assert lines[-1] == "WRITER-DONE"
    for _ in range(3):
        transcript.rotate(log, 3)
        server.tmux("send-keys", "-t", tmux.window_target("rot"), "x")  # the tty echoes it: a chunk
        eventually(log.exists, "the writer reopened the transcript")
    rotated = sorted(p.name for p in log.parent.iterdir() if p.name.startswith("rot.log."))
    assert rotated == ["rot.log.1", "rot.log.2", "rot.log.3"]


def test_a_writer_that_stays_in_the_renamed_file_is_found_and_replaced(server: Server, tmp_path: Path) -> None:
    """A pane piped by an older fleet (``exec cat >> log``) never follows a rotation: it
    grew ``<name>.log.1`` without bound while ``<name>.log`` never came back."""
    go = tmp_path / "go"
    script = f"while [ ! -e {go} ]; do echo tick-tick-tick-tick-tick-tick; sleep 0.01; done; exec sleep 1000"
    server.window("old", ["sh", "-c", script])
    log = transcript.log_path(server.paths, "old")
    server.tmux("pipe-pane", "-O", "-t", tmux.window_target("old"), f"exec cat >> {log}")  # the old writer
    eventually(lambda: log.exists() and log.stat().st_size >= 2048, "the old writer wrote")
    transcript.rotate(log, 2)
    eventually(lambda: transcript.writer_left_behind(log, 2048), "the old writer kept to the renamed file")
    assert not log.exists()
    server.tmux(*transcript.repipe_commands("old", log))  # what the watcher does then
    eventually(log.exists, "the new writer opened the transcript")
    assert not transcript.writer_left_behind(log, 2048)
    go.touch()


def test_a_stalled_writer_across_the_watchers_rotation_keeps_its_pipe_and_loses_no_line(
    server: Server, tmp_path: Path
) -> None:
    """The writer is stopped (a stalled disk) while the agent prints and the watcher rotates:
    ``<name>.log`` stays absent and ``<name>.log.1`` is past twice log_max_bytes, as with a
    ``cat`` left behind, but nothing appends to it. The watcher took it for left behind and
    replaced the live pipe, and tmux dropped every line it held for the stopped writer."""
    go, done = tmp_path / "go", tmp_path / "done"
    first, count = 1000, 20_000
    (tmp_path / "agent.py").write_text(
        "import os, sys, time\n"
        f"for i in range({first}): sys.stdout.write(f'numbered line {{i:06d}}\\n')\n"
        "sys.stdout.flush()\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.02)\n"
        f"for i in range({first}, {count}): sys.stdout.write(f'numbered line {{i:06d}}\\n')\n"
        "sys.stdout.write('AGENT-DONE\\n'); sys.stdout.flush()\n"
        f"open({str(done)!r}, 'w').close(); time.sleep(1000)\n"
    )
    server.window("busy", [sys.executable, str(tmp_path / "agent.py")])
    log = transcript.log_path(server.paths, "busy")
    eventually(lambda: f"numbered line {first - 1:06d}" in log_text(log), "the first lines in the transcript")
    (reader,) = server.pipe_readers(log)
    seen = Watcher(server.paths.run_dir)
    os.kill(reader, signal.SIGSTOP)
    try:
        go.touch()
        eventually(done.exists, "the agent printed everything while its writer was stopped", limit=60)
        for _ in range(3):  # the watcher's ticks: the first rotates, the others look for a left-behind writer
            server.rotate_tick(seen, "busy", max_bytes=4096, keep=3)
    finally:
        os.kill(reader, signal.SIGCONT)

    def stream() -> str:
        return "".join(log_text(part) for part in [transcript.rotated(log, 1), log])

    # Settled once the last line is in, or the stopped writer ended (its pipe was replaced).
    def writers() -> list[int]:
        return server.pipe_readers(transcript.rotated(log, 1)) + server.pipe_readers(log)

    eventually(lambda: "AGENT-DONE" in stream() or reader not in writers(), "the writer caught up", limit=60)
    numbers = [int(n) for n in re.findall(r"numbered line (\d{6})", stream())]
    assert numbers == list(range(count)), f"{count - len(numbers)} lines missing"
    assert server.pipe_readers(log) == [reader], "the same writer, its pipe never replaced"


def test_the_watcher_makes_a_removed_logs_dir_again_and_the_transcript_resumes(server: Server, tmp_path: Path) -> None:
    """The logs directory is removed while an agent runs: its writer ends at its next chunk
    (it never creates directories). The watcher renewed the pipe every tick into the
    missing directory, each new writer ended at once: no transcript until a restart."""
    server.window("lost", ["sh", "-c", "i=0; while :; do i=$((i+1)); echo counted-$i; sleep 0.02; done"])
    log = transcript.log_path(server.paths, "lost")
    eventually(lambda: "counted-3" in log_text(log), "the first lines")
    shutil.rmtree(log.parent)

    def piped() -> str:
        return server.tmux("display", "-p", "-t", tmux.window_target("lost"), "#{pane_pipe}").stdout.strip()

    eventually(lambda: piped() == "0", "the writer ended, tmux closed the pipe")
    server.rotate_tick(Watcher(server.paths.run_dir), "lost", max_bytes=1 << 20, keep=1)
    eventually(lambda: len(re.findall(r"counted-\d+", log_text(log))) >= 3, "the transcript resumed")
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700


def test_a_transcript_path_with_shell_and_tmux_specials(tmp_path: Path) -> None:
    odd = Server(FleetPaths.resolve(tmp_path / "h #{pane_id} '$(x)' ;"))
    odd.paths.home.mkdir()
    odd.start()
    try:
        odd.window("odd", ["sh", "-c", "echo odd-path-ok; exec sleep 1000"])
        log = transcript.log_path(odd.paths, "odd")
        eventually(lambda: "odd-path-ok" in log_text(log), "the line in the transcript at the odd path")
        assert sorted(p.name for p in log.parent.iterdir()) == ["odd.log"]
    finally:
        odd.stop()


# --------------------------------------------------------------------------- through `inv fleet.*`


@pytest.fixture
def tuser(tmp_path: Path) -> Iterator[TmuxEnv]:
    user = TmuxEnv(tmp_path)
    yield user
    Server(FleetPaths.resolve(user.home)).stop()


def crash_once_roster(flag: Path) -> str:
    """One agent that prints its generation, crashes the first time (flag present), and
    runs on the second."""
    script = (
        'echo "generation-output pid $$"; '
        f'if [ -e {flag} ]; then rm {flag}; echo "dying now"; exit 42; fi; echo "second run up"; exec sleep 100000'
    )
    return f"version: 1\nagents:\n  - name: gen\n    runtime: custom\n    command: [sh, -c, {json.dumps(script)}]\n"


def lines_in(log: Path) -> list[str]:
    if not log.exists():  # the pipe's writer has not created it yet
        return []
    return transcript.read_path(log, lines=100_000, generation="all").splitlines()


def check_generations_across_restarts(user: InvUser, home: Path, flag: Path, *, in_place: bool = False) -> None:
    """Shared by both backends: an in-pane restart after a crash, then a `fleet restart`
    that replaces the window (``in_place``: the systemd backend renews the agent in its
    window); the transcript keeps every generation."""
    log = home / "fleet" / "logs" / "gen.log"
    user.inv("fleet.start")  # fails: the agent crashes during its start grace
    eventually(lambda: lines_in(log).count("second run up") == 1, "the supervisor restarted the agent")
    current = user.inv_ok("fleet.logs", "--agent", "gen").splitlines()
    previous = user.inv_ok("fleet.logs", "--agent", "gen", "--generation", "previous").splitlines()
    old_header, new_header = HEADER_RE.fullmatch(previous[0]), HEADER_RE.fullmatch(current[0])
    assert old_header is not None
    assert new_header is not None
    old_pid, new_pid = old_header["pid"], new_header["pid"]
    assert previous[1:3] == [f"generation-output pid {old_pid}", "dying now"]
    assert "exited with status 42; restarting in 1s" in previous[-1]  # the supervisor's own line
    assert current[1:] == [f"generation-output pid {new_pid}", "second run up"]

    user.inv_ok("fleet.restart", "--agent", "gen")  # a new run: in a new window, or in place
    eventually(lambda: lines_in(log).count("second run up") == 2, "the restarted agent's output")
    after = user.inv_ok("fleet.logs", "--agent", "gen").splitlines()
    before = user.inv_ok("fleet.logs", "--agent", "gen", "--generation", "previous").splitlines()
    assert before[: len(current)] == current  # the generation the restart ended (then how it was stopped)
    assert HEADER_RE.fullmatch(after[0])["pid"] not in (old_pid, new_pid)  # type: ignore[index]
    assert after[2] == "second run up"
    everything = user.inv_ok("fleet.logs", "--agent", "gen", "--generation", "all").splitlines()
    assert [line for line in everything if line.startswith("generation-output")] == [
        f"generation-output pid {old_pid}",
        f"generation-output pid {new_pid}",
        after[1],
    ]
    screen = [line.strip() for line in user.inv_ok("fleet.logs", "--agent", "gen", "--screen").splitlines()]
    assert "second run up" in screen
    # A new window shows the new run only; a run renewed in place follows the old ones on its pane.
    assert ("dying now" in screen) is in_place
    assert (home / "fleet" / "logs").stat().st_mode & 0o777 == 0o700


def test_generations_across_restarts_on_the_tmux_backend(tuser: TmuxEnv, tmp_path: Path) -> None:
    flag = tmp_path / "crash-once"
    flag.write_text("")
    tuser.write_roster(crash_once_roster(flag))
    check_generations_across_restarts(tuser, tuser.home, flag)


def test_fleet_logs_without_a_transcript_and_with_an_odd_file(tuser: TmuxEnv) -> None:
    tuser.write_roster("version: 1\nagents:\n  - name: a1\n    runtime: shell\n")
    missing = tuser.inv("fleet.logs", "--agent", "a1")
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        f"error: no transcript for a1 yet ({tuser.home}/fleet/logs/a1.log does not exist)"
    ]
    logs = tuser.home / "fleet" / "logs"
    logs.mkdir(mode=0o700)
    for plant in (os.mkfifo, os.mkdir):
        path = logs / "a1.log"
        plant(path)
        result = subprocess.run(
            [sys.executable, "-m", "invoke", "fleet.logs", "--agent", "a1"],
            env=tuser.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "not a regular file" in result.stderr
        path.rmdir() if path.is_dir() else path.unlink()
    for flags, message in [
        (["--generation", "older"], "error: --generation: 'older' is not one of current, previous, all"),
        (["--screen", "--generation", "all"], "error: --generation reads the transcript"),
        (["--follow", "--generation", "previous"], "error: --follow shows new output"),
    ]:
        result = tuser.inv("fleet.logs", "--agent", "a1", *flags)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines()[0].startswith(message), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def _inode(path: Path) -> int | None:
    """The inode of the regular file at ``path``; None for anything else (or nothing)."""
    with contextlib.suppress(FileNotFoundError):
        info = path.lstat()
        return info.st_ino if stat.S_ISREG(info.st_mode) else None
    return None


def test_an_odd_rotated_file_never_stops_rotation_and_doctor_names_it(tuser: TmuxEnv, tmp_path: Path) -> None:
    """A symlink at ``<name>.log.1`` once turned rotation off for good (the transcript grew
    without bound, `fleet logs` failed, doctor passed): now the watcher removes the link
    (never what it points to) and rotates on, a directory is skipped, and doctor names both."""
    counter = "i=0; while :; do i=$((i+1)); echo line-$i-padding-padding-padding-padding; sleep 0.01; done"
    tuser.write_roster(
        "version: 1\nagents:\n  - name: log\n    runtime: custom\n"
        f"    command: [sh, -c, {json.dumps(counter)}]\n    log_max_bytes: 8192\n    log_keep: 2\n"
    )
    logs = tuser.home / "fleet" / "logs"
    ensure_private_dir(logs, "logs")
    target = tmp_path / "outside"
    target.write_text("secret\n")
    (logs / "log.log.1").symlink_to(target)
    (logs / "log.log.2").mkdir()

    def transcripts_check() -> dict[str, object]:
        checks = json.loads(tuser.inv("fleet.doctor", "--backend", "tmux", "--json").stdout)
        return next(check for check in checks if check["name"] == "transcripts")

    check = transcripts_check()
    assert check["ok"] is False
    assert f"{logs}/log.log.1 is a symlink" in str(check["detail"])
    assert f"{logs}/log.log.2 is a directory" in str(check["detail"])
    assert f"rm -r {logs}/log.log.2" in str(check["fix"])
    try:
        tuser.inv_ok("fleet.start")
        # The link goes, the newest rotated file takes its index, the next one skips the directory.
        eventually(lambda: _inode(logs / "log.log.1") and _inode(logs / "log.log.3"), "rotation past both")
        assert target.read_text() == "secret\n"  # never written through, never removed
        assert tuser.inv_ok("fleet.logs", "--agent", "log", "--lines", "3").count("line-") == 3
        assert "line-" in tuser.inv_ok("fleet.logs", "--agent", "log", "--generation", "all", "--lines", "3")
        oldest = _inode(logs / "log.log.3")
        eventually(lambda: _inode(logs / "log.log.3") not in (None, oldest), "rotation goes on")
        assert {path.name for path in logs.iterdir()} <= {"log.log", "log.log.1", "log.log.2", "log.log.3"}
        check = transcripts_check()
        assert check["ok"] is False
        assert f"{logs}/log.log.2 is a directory" in str(check["detail"])
        assert "log.log.1" not in str(check["detail"])
    finally:
        tuser.inv("fleet.stop")


def test_fleet_logs_follow_prints_new_lines_across_a_rotation(server: Server, tmp_path: Path) -> None:
    roster = server.paths.roster
    roster.write_text("version: 1\nagents:\n  - name: tail\n    runtime: shell\n")
    go = tmp_path / "go"
    script = f"echo first; while [ ! -e {go} ]; do sleep 0.05; done; echo second; sleep 1; echo third; exec sleep 1000"
    server.window("tail", ["sh", "-c", script])
    log = transcript.log_path(server.paths, "tail")
    eventually(lambda: "first" in lines_in(log), "the first line")
    env = {k: v for k, v in os.environ.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
    follower = subprocess.Popen(
        [sys.executable, "-m", "invoke", "fleet.logs", "--agent", "tail", "--follow", "--backend", "tmux"],
        env={**env, "MOSAIC_HOME": str(server.paths.home)},
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        seen = [follower.stdout.readline().rstrip("\n") for _ in range(2)]
        assert HEADER_RE.fullmatch(seen[0])
        assert seen[1] == "first"
        transcript.rotate(log, 2)  # between "first" and "second": the follower must switch files
        go.touch()
        assert [follower.stdout.readline().rstrip("\n") for _ in range(2)] == ["second", "third"]
    finally:
        follower.send_signal(signal.SIGINT)  # how a user ends it: Ctrl-C, exit 0
        _, errors = follower.communicate(timeout=30)
    assert follower.returncode == 0, errors


def test_a_pane_whose_writer_died_shows_unpiped_and_repipe_resumes_its_transcript(
    server: Server, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    script = f"echo before; while [ ! -e {go} ]; do echo tick; sleep 0.05; done; echo after; exec sleep 1000"
    server.window("w", ["sh", "-c", script])
    log = transcript.log_path(server.paths, "w")
    eventually(lambda: "before" in lines_in(log), "the first line")

    def piped() -> str:
        return server.tmux(
            "display-message", "-p", "-t", tmux.window_target("w"), transcript.PIPED_FORMAT
        ).stdout.strip()

    assert piped() == "1"
    (reader,) = server.pipe_readers(log)
    os.kill(reader, signal.SIGKILL)  # as a write error (full disk) ends it
    # tmux notices on its next write into the pipe (the pane prints a tick every 50 ms)
    eventually(lambda: piped() == "0", "tmux noticed the pipe's writer is gone")
    server.tmux(*transcript.repipe_commands("w", log))
    assert piped() == "1"
    go.touch()
    eventually(lambda: "after" in lines_in(log), "the transcript resumed")
    kept = transcript.read(server.paths, "w", lines=10_000).splitlines()
    assert kept[1] == "before"
    assert kept[-1] == "after"
    assert set(kept[2:-1]) == {"tick"}
