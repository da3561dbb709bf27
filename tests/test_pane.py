"""The pane supervisor script, run for real under /bin/sh (dash on Debian) without tmux.

``tmux`` is a recorder: a small shell script that appends its argv to a file, one line per
call, so each test sees exactly which window options the supervisor would have set.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import pty
import re
import shlex
import shutil
import signal
import string
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetlib import pane
from fleetlib.pane import CWD_FAILED, NOT_FOUND, PaneSpec
from fleetlib.tmux import window_target
from tests.conftest import alive


@dataclass
class Recorder:
    """A fake ``tmux`` binary and the file it appends each call's argv to."""

    path: Path
    log: Path

    @classmethod
    def install(cls, directory: Path) -> Recorder:
        directory.mkdir(parents=True, exist_ok=True)
        log = directory / "calls.log"
        path = directory / "tmux"
        # Each argument as "A<arg>\0", each call ended by "E\0": unambiguous for any argv.
        path.write_text(f"#!/bin/sh\n{{ printf 'A%s\\0' \"$@\"; printf 'E\\0'; }} >> {shlex.quote(str(log))}\n")
        path.chmod(0o755)
        return cls(path, log)

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        calls: list[list[str]] = [[]]
        for item in self.log.read_bytes().decode().split("\0")[:-1]:
            if item == "E":
                calls.append([])
            else:
                calls[-1].append(item.removeprefix("A"))
        return calls[:-1]

    def states(self) -> list[str]:
        """The ``@fleet-state`` value each call set, in order."""
        found = []
        for call in self.calls():
            for i, word in enumerate(call):
                if word == pane.STATE_OPTION:
                    found.append(call[i + 1])
        return found

    def options(self, call: list[str]) -> dict[str, str]:
        return {word: call[i + 1] for i, word in enumerate(call) if word.startswith("@fleet-")}


@dataclass
class Supervised:
    root: Path
    run_dir: Path
    tmux: Recorder

    def spec(self, name: str = "a1", *, cwd: str | None = None, **overrides: object) -> PaneSpec:
        values: dict[str, object] = {
            "name": name,
            "target": window_target(name),
            "tmux": str(self.tmux.path),
            "socket": str(self.root / "tmux.sock"),
            "cwd": cwd if cwd is not None else str(self.root),
            "max_failures": 5,
            "failure_window": 60.0,
        }
        values.update(overrides)
        return PaneSpec(**values)  # type: ignore[arg-type]

    def argv(self, spec: PaneSpec, agent: Sequence[str]) -> list[str]:
        return pane.pane_argv(spec, agent, self.run_dir)

    def run(self, spec: PaneSpec, agent: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(spec, agent), capture_output=True, text=True, timeout=timeout, check=False, env=_env()
        )


def _env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}


@pytest.fixture
def sup(tmp_path: Path) -> Supervised:
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    pane.install_script(run_dir)
    return Supervised(tmp_path, run_dir, Recorder.install(tmp_path / "bin dir"))


def test_the_script_is_valid_posix_sh_for_dash() -> None:
    subprocess.run(["dash", "-n", "-c", pane.SCRIPT], check=True, timeout=10)
    subprocess.run(["/bin/sh", "-n", "-c", pane.SCRIPT], check=True, timeout=10)


def test_install_script_writes_once_and_repairs_a_changed_copy(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    assert pane.install_script(run_dir)
    assert not pane.install_script(run_dir)
    path = pane.script_path(run_dir)
    assert path.read_text() == pane.SCRIPT
    assert path.stat().st_mode & 0o777 == 0o600
    path.write_text("exit 0\n")
    assert pane.install_script(run_dir)
    assert path.read_text() == pane.SCRIPT


def test_pane_argv_passes_every_parameter_as_its_own_word(sup: Supervised) -> None:
    spec = sup.spec(
        "a1",
        cwd="/w d",
        max_failures=4,
        failure_window=2.5,
        unit="mosaic-agent@a1.service",
        cgroup_mounts=("/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd"),
    )
    assert sup.argv(spec, ["codex", "--x"]) == [
        "/bin/sh", str(pane.script_path(sup.run_dir)), "a1", "=fleet:=a1", str(sup.tmux.path),
        str(sup.root / "tmux.sock"), "/w d", "4", "3", "mosaic-agent@a1.service",
        "/sys/fs/cgroup/unified:/sys/fs/cgroup/systemd", "--", "codex", "--x",
    ]  # fmt: skip
    assert sup.argv(sup.spec(failure_window=0.2), ["x"])[8] == "1"  # a window of at least 1 s
    assert sup.argv(sup.spec(), ["x"])[9:11] == ["", ""]  # tmux backend: no unit, no cgroup join


def test_missing_command_prints_command_not_found_exits_127_and_is_failed_at_once(sup: Supervised) -> None:
    done = sup.run(sup.spec(), ["no-such-agent-binary", "--flag"])
    assert done.returncode == NOT_FOUND
    assert "fleet: no-such-agent-binary: command not found" in done.stderr
    assert "giving up" in done.stderr
    calls = sup.tmux.calls()
    assert len(calls) == 1  # recorded once, never retried
    assert calls[0][:2] == ["-S", str(sup.root / "tmux.sock")]
    assert sup.tmux.options(calls[0]) == {
        "@fleet-exit": "127",
        "@fleet-state": "failed",
        "@fleet-deaths": "1",
        "@fleet-reason": "",
    }
    targets = [calls[0][i + 1] for i, word in enumerate(calls[0]) if word == "-t"]
    assert targets == ["=fleet:=a1"] * 4


def test_crash_loop_restarts_with_growing_delays_then_gives_up_failed(sup: Supervised) -> None:
    runs = sup.root / "runs"
    agent = ["sh", "-c", 'date +%s.%N >> "$0"; echo "crashing now"; exit 3', str(runs)]
    began = time.monotonic()
    done = sup.run(sup.spec(max_failures=3, failure_window=600), agent)
    elapsed = time.monotonic() - began
    assert done.returncode == 3
    starts = [float(line) for line in runs.read_text().split()]
    assert len(starts) == 3
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert 0.9 <= gaps[0] < 1.9, gaps  # 1 s
    assert 1.9 <= gaps[1] < 2.9, gaps  # then 2 s
    assert elapsed < 6
    assert "restarting in 1s (exit 1 of 3 allowed in 600s)" in done.stderr
    assert "restarting in 2s (exit 2 of 3 allowed in 600s)" in done.stderr
    assert "exited with status 3; 3 exit(s) in 600s: giving up" in done.stderr
    assert sup.tmux.states() == ["restarting", "running", "restarting", "running", "failed"]
    last = sup.tmux.options(sup.tmux.calls()[-1])
    assert last == {"@fleet-exit": "3", "@fleet-state": "failed", "@fleet-deaths": "3", "@fleet-reason": ""}
    deaths = [sup.tmux.options(call).get("@fleet-deaths") for call in sup.tmux.calls()]
    assert deaths == ["1", None, "2", None, "3"]


def test_exits_outside_the_failure_window_do_not_add_up(sup: Supervised) -> None:
    """With a 1 s window, exits 1 s and 2 s apart never count 2 in one window, so
    max_failures=2 does not give up; the third run ends the test by stopping its supervisor."""
    runs = sup.root / "runs"
    script = 'echo x >> "$0"; [ "$(wc -l < "$0")" -ge 3 ] && kill -TERM "$PPID"; exit 5'
    done = sup.run(sup.spec(max_failures=2, failure_window=1), ["sh", "-c", script, str(runs)])
    assert done.returncode == 5
    assert len(runs.read_text().split()) == 3
    assert "giving up" not in done.stderr
    assert sup.tmux.states() == ["restarting", "running", "restarting", "running"]


def test_missing_cwd_fails_with_126_naming_the_path_and_never_runs_the_agent(sup: Supervised) -> None:
    cwd = str(sup.root / "gone dir")
    ran = sup.root / "ran"
    done = sup.run(sup.spec(cwd=cwd), ["sh", "-c", 'touch "$0"', str(ran)])
    assert done.returncode == CWD_FAILED
    assert f"fleet: agent a1: cannot enter working directory {cwd} (missing or not a directory)" in done.stderr
    assert not ran.exists()
    calls = sup.tmux.calls()
    assert len(calls) == 1
    assert sup.tmux.options(calls[0]) == {
        "@fleet-exit": "126",
        "@fleet-state": "failed",
        "@fleet-deaths": "1",
        "@fleet-reason": "",
    }


def test_a_file_as_cwd_is_refused_like_a_missing_one(sup: Supervised) -> None:
    not_a_dir = sup.root / "file"
    not_a_dir.write_text("")
    assert sup.run(sup.spec(cwd=str(not_a_dir)), ["true"]).returncode == CWD_FAILED


@pytest.mark.parametrize(
    "name",
    ["has # hash", "spaces  and\ttab", "$(touch pwned)", "`touch pwned`", 'quote\'s "dq"', "-leading-dash", "a;b|c&"],
)
def test_cwd_is_entered_literally(sup: Supervised, name: str) -> None:
    cwd = sup.root / name
    cwd.mkdir()
    out = sup.root / "pwd.out"
    done = sup.run(sup.spec(cwd=str(cwd), max_failures=1), ["sh", "-c", 'pwd > "$0"', str(out)])
    assert done.returncode == 0, done.stderr
    assert out.read_text() == f"{cwd}\n"
    assert not (sup.root / "pwned").exists()
    assert not (cwd / "pwned").exists()


def test_agent_argv_reaches_the_agent_word_for_word(sup: Supervised) -> None:
    out = sup.root / "args.out"
    words = ["a b", "$(id)", "*", "--", "", "'", '"', "\\", "-e", "x;"]
    done = sup.run(sup.spec(max_failures=1), ["sh", "-c", 'printf "%s\\0" "$@" > "$0"', str(out), *words])
    assert done.returncode == 0, done.stderr
    assert out.read_text().split("\0")[:-1] == words


def test_the_agents_exec_is_recorded_after_the_header_naming_supervisor_and_agent(sup: Supervised) -> None:
    # The agent reads the record as its first act: it is there already, and names the
    # agent's parent (the supervisor) and the agent itself, as the header does.
    record = pane.exec_record_path(sup.run_dir, "a1")
    seen = sup.root / "seen"
    script = 'printf "%s %s|%s\\n" "$PPID" "$$" "$(cat "$1")" > "$0"'
    done = sup.run(sup.spec(max_failures=1), ["sh", "-c", script, str(seen), str(record)])
    assert done.returncode == 0, done.stderr
    ids, _, recorded = seen.read_text().strip().partition("|")
    assert recorded == ids
    supervisor, agent = (int(word) for word in ids.split())
    read = pane.exec_record(sup.run_dir, "a1")
    assert read is not None
    assert (read.supervisor, read.agent) == (supervisor, agent)
    # When it was written: just before the exec, so no later than the agent's first act.
    assert read.written_at == record.stat().st_mtime_ns / 1e9 <= seen.stat().st_mtime_ns / 1e9
    assert f"pid {agent} size " in done.stdout  # the header's pid is the recorded agent's


def test_a_start_runs_no_date_and_its_header_tells_the_utc_time(sup: Supervised) -> None:
    # The header's time comes from builtins (the kernel's boot time plus the uptime): a
    # `date` on the window's PATH is never run, and the time is right to the second (the
    # boot time is whole seconds, so one second either way).
    spy = sup.root / "spy"
    spy.mkdir()
    called = sup.root / "date-called"
    (spy / "date").write_text(f'#!/bin/sh\n: > {shlex.quote(str(called))}\nexec /bin/date "$@"\n')
    (spy / "date").chmod(0o755)
    env = {**_env(), "PATH": f"{spy}:{_env()['PATH']}"}
    before = time.time()
    done = subprocess.run(
        sup.argv(sup.spec(max_failures=1), ["true"]), env=env, capture_output=True, text=True, timeout=30, check=False
    )
    after = time.time()
    assert done.returncode == 0, done.stderr
    assert not called.exists()
    found = re.search(r"generation started (\S+) pid \d+ size ", done.stdout)
    assert found is not None, done.stdout
    stamp = datetime.strptime(found[1], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    assert math.floor(before) - 1 <= stamp <= after + 1


@pytest.mark.parametrize("text", ["", "12", "1 2 3", "x 2", "-1 2", "0 5", "5 99999999999", "1\n2\n" + "9" * 100])
def test_an_exec_record_that_is_not_what_the_supervisor_writes_is_no_record(tmp_path: Path, text: str) -> None:
    pane.exec_record_path(tmp_path, "a1").write_text(text)
    assert pane.exec_record(tmp_path, "a1") is None


def test_an_exec_record_is_never_read_through_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").write_text("10 20\n")
    pane.exec_record_path(tmp_path, "a1").symlink_to(tmp_path / "elsewhere")
    assert pane.exec_record(tmp_path, "a1") is None
    pane.exec_record_path(tmp_path, "a2").mkdir()
    assert pane.exec_record(tmp_path, "a2") is None
    assert pane.exec_record(tmp_path, "missing") is None


# A hang-up kills the supervisor itself at once (no trap): its agent gets the hang-up of
# its session from the kernel (a window), here from the test's killpg.
@pytest.mark.parametrize(
    ("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGHUP, -signal.SIGHUP), (signal.SIGINT, 130)]
)
def test_a_stop_signal_during_a_run_ends_the_supervisor_without_a_restart(
    sup: Supervised, spawned: list[subprocess.Popen[bytes]], signum: int, status: int
) -> None:
    runs = sup.root / "runs"
    agent = ["sh", "-c", 'echo "$$" >> "$0"; exec sleep 30', str(runs)]
    proc = subprocess.Popen(
        sup.argv(sup.spec(), agent),
        start_new_session=True,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    spawned.append(proc)
    _wait_for(lambda: runs.exists() and runs.read_text().strip() != "")
    os.killpg(proc.pid, signum)  # as a stop does: every process of the agent
    assert proc.wait(timeout=10) == status
    time.sleep(1.5)  # longer than the first restart delay: nothing may start again
    assert len(runs.read_text().split()) == 1
    assert sup.tmux.calls() == []  # a stop is not an exit to record


def test_a_hang_up_of_its_terminal_ends_the_supervisor_and_its_agent_at_once(sup: Supervised) -> None:
    # As a window does when its tmux server dies (kill-server, SIGKILL, OOM): the pty's
    # master closes. Defect: the supervisor trapped the hang-up and waited for its agent,
    # which (a `sleep`: no terminal reads) never heard of it; both ran on for ever.
    runs = sup.root / "runs"
    argv = sup.argv(sup.spec(), ["sh", "-c", 'echo "$$" >> "$0"; exec sleep 300', str(runs)])
    pid, master = pty.fork()  # the child leads a session whose controlling terminal is the pty
    if pid == 0:
        try:
            os.execve(argv[0], argv, _env())  # noqa: S606 - the pane's argv, as tmux runs it
        finally:
            os._exit(127)
    try:
        _wait_for(lambda: runs.exists() and runs.read_text().strip() != "")
        agent = int(runs.read_text())
        os.close(master)
        ended: list[int] = []
        _wait_for(lambda: bool(ended.append(os.waitpid(pid, os.WNOHANG)[1]) or ended[-1]))
        assert os.WIFSIGNALED(ended[-1])
        assert os.WTERMSIG(ended[-1]) == signal.SIGHUP
        _wait_for(lambda: not alive(agent))
        assert sup.tmux.calls() == []  # nothing recorded, nothing restarted
    finally:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def test_a_stop_signal_during_the_restart_delay_ends_it_without_another_run(
    sup: Supervised, spawned: list[subprocess.Popen[bytes]]
) -> None:
    runs = sup.root / "runs"
    agent = ["sh", "-c", 'echo run >> "$0"; exit 4', str(runs)]
    spec = sup.spec(max_failures=10, failure_window=600)
    proc = subprocess.Popen(sup.argv(spec, agent), start_new_session=True, env=_env(), stderr=subprocess.DEVNULL)
    spawned.append(proc)
    _wait_for(lambda: sup.tmux.states() == ["restarting"])
    os.killpg(proc.pid, signal.SIGTERM)  # the supervisor is in `sleep 1`
    assert proc.wait(timeout=10) == 4
    assert len(runs.read_text().split()) == 1
    assert sup.tmux.states() == ["restarting"]


def test_joins_the_units_cgroup_on_every_mount(sup: Supervised) -> None:
    own = _own_cgroup()
    mounts = [sup.root / "mnt one", sup.root / "mnt two"]
    procs = []
    for mount in mounts:
        unit_dir = Path(f"{mount}{own.rsplit('/', 1)[0]}") / "mosaic-agent@a1.service"
        unit_dir.mkdir(parents=True)
        procs.append(unit_dir / "cgroup.procs")
    pid_file = sup.root / "pid"
    spec = sup.spec(max_failures=1, unit="mosaic-agent@a1.service", cgroup_mounts=tuple(str(m) for m in mounts))
    done = sup.run(spec, ["sh", "-c", 'echo "$PPID" > "$0"', str(pid_file)])
    assert done.returncode == 0, done.stderr
    supervisor = pid_file.read_text().strip()
    assert [p.read_text().strip() for p in procs] == [supervisor, supervisor]


def test_a_cgroup_it_cannot_join_does_not_stop_the_agent(sup: Supervised) -> None:
    out = sup.root / "ran"
    spec = sup.spec(max_failures=1, unit="mosaic-agent@a1.service", cgroup_mounts=(str(sup.root / "nowhere"),))
    done = sup.run(spec, ["sh", "-c", 'touch "$0"', str(out)])
    assert done.returncode == 0
    assert out.exists()
    assert done.stderr.startswith("fleet: agent a1 exited with status 0")  # nothing about the cgroup


@pytest.mark.parametrize("socket", ["/run/fleet/tmux.sock", "/odd,dir/tmux.sock"])
def test_under_systemd_the_supervisor_ends_its_units_wait_as_it_exits(sup: Supervised, socket: str) -> None:
    """tmux 3.3a can report a pane's exit (and fire pane-died) only at its next SIGCHLD, so
    the supervisor signals its window's channel itself, on the server that made its pane."""
    spec = sup.spec(unit="mosaic-agent@a1.service", cgroup_mounts=(str(sup.root / "nowhere"),))
    env = {**_env(), "TMUX": f"{socket},4242,0", "TMUX_PANE": "%7"}
    argv = sup.argv(spec, ["no-such-agent-binary"])
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30, check=False)
    assert done.returncode == NOT_FOUND  # the exit status is the supervisor's, not the signal's
    recorded, ended = sup.tmux.calls()
    assert sup.tmux.options(recorded)["@fleet-state"] == "failed"  # recorded before the unit ends
    assert ended == [
        "-S", str(sup.root / "tmux.sock"), "if-shell", "-F", "-t", "%7", "#{==:#{pid},4242}",
        f"run-shell -C -t %7 'wait-for -S {pane.CHANNEL_FORMAT}'",
    ]  # fmt: skip


def test_outside_systemd_or_tmux_the_supervisor_signals_nothing(sup: Supervised) -> None:
    tmux_env = {"TMUX": "/run/fleet/tmux.sock,4242,0", "TMUX_PANE": "%7"}
    unit = {"unit": "mosaic-agent@a1.service", "cgroup_mounts": (str(sup.root / "nowhere"),)}
    for overrides, extra in (({}, tmux_env), (unit, {})):
        sup.tmux.log.unlink(missing_ok=True)
        argv = sup.argv(sup.spec(**overrides), ["no-such-agent-binary"])
        subprocess.run(argv, capture_output=True, env={**_env(), **extra}, timeout=30, check=False)
        assert len(sup.tmux.calls()) == 1  # the exit record only


def test_a_units_wait_ends_with_its_supervisor_even_without_the_pane_died_hook(tmp_path: Path) -> None:
    """On a real tmux server that never fires pane-died, the client waiting on the window's
    channel (as an agent unit's main process does) returns once the supervisor gives up."""
    tmux = shutil.which("tmux")
    if tmux is None:
        pytest.skip("tmux is not installed")
    socket = tmp_path / "tmux.sock"
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    pane.install_script(run_dir)
    base = [tmux, "-S", str(socket), "-f", "/dev/null"]
    subprocess.run(
        [*base, "new-session", "-d", "-s", "fleet", "-n", "_holder", "sleep", "600", ";",
         "set-option", "-wg", "remain-on-exit", "on"],
        check=True, timeout=30,
    )  # fmt: skip
    try:
        spec = PaneSpec(
            name="a1", target=window_target("a1"), tmux=tmux, socket=str(socket), cwd=str(tmp_path),
            max_failures=1, failure_window=60, cgroup_mounts=(str(tmp_path / "nowhere"),),
            unit="mosaic-agent@a1.service",
        )  # fmt: skip
        argv = pane.pane_argv(spec, ["no-such-agent-binary"], run_dir)
        waited = subprocess.run(
            [*base, "new-window", "-d", "-t", "=fleet:", "-n", "a1", "--", *argv, ";",
             "run-shell", "-C", "-t", window_target("a1"), f"wait-for {pane.CHANNEL_FORMAT}"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert waited.returncode == 0, waited.stderr
        shown = [*base, "display-message", "-p", "-t", window_target("a1"), "#{@fleet-state}"]
        assert subprocess.run(shown, capture_output=True, text=True, timeout=30, check=True).stdout.strip() == "failed"
    finally:
        subprocess.run([*base, "kill-server"], capture_output=True, timeout=30, check=False)


def _own_cgroup() -> str:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return line[3:]
    raise AssertionError("no cgroup v2 line in /proc/self/cgroup (needs a unified or hybrid hierarchy)")


def _wait_for(condition: object, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# --------------------------------------------------------------------------- generated names and paths

_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=16)
_FILE_NAME = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/"), min_size=1, max_size=16
).filter(lambda s: s not in (".", "..") and len(s.encode()) < 200)
_NAME = st.text(string.ascii_lowercase + string.digits + "_-", min_size=1, max_size=12).filter(
    lambda s: s[0] not in "_-"
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=_TEXT, cwd_name=_FILE_NAME, bin_name=_FILE_NAME, socket_name=_FILE_NAME, words=st.lists(_TEXT, max_size=5))
def test_generated_names_paths_and_argv_pass_through_literally(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    cwd_name: str,
    bin_name: str,
    socket_name: str,
    words: list[str],
) -> None:
    root = tmp_path_factory.mktemp("gen")
    run_dir = root / "run"
    run_dir.mkdir(mode=0o700)
    pane.install_script(run_dir)
    recorder = Recorder.install(root / bin_name)
    cwd = root / cwd_name
    cwd.mkdir(exist_ok=True)
    out = root / "out"
    spec = PaneSpec(
        name=name,
        target=window_target(name),
        tmux=str(recorder.path),
        socket=str(root / socket_name),
        cwd=str(cwd),
        max_failures=1,
        failure_window=60,
    )
    agent = ["sh", "-c", 'pwd > "$0"; for a; do printf "%s\\0" "$a"; done > "$0.args"', str(out), *words]
    done = subprocess.run(
        pane.pane_argv(spec, agent, run_dir), capture_output=True, timeout=20, check=False, env=_env()
    )
    stderr = done.stderr.decode()  # bytes: text mode would turn a "\r" in a name into "\n"
    assert done.returncode == 0, stderr
    assert out.read_bytes().decode() == f"{cwd}\n"
    assert Path(f"{out}.args").read_bytes().decode().split("\0")[:-1] == words
    assert f"fleet: agent {name} exited with status 0" in stderr
    (call,) = recorder.calls()
    assert call[:2] == ["-S", str(root / socket_name)]
    assert [call[i + 1] for i, word in enumerate(call) if word == "-t"] == [window_target(name)] * 4


@settings(max_examples=25, deadline=None)
@given(name=_NAME, mounts=st.lists(_FILE_NAME.filter(lambda s: ":" not in s), max_size=3))
def test_generated_unit_and_mount_parameters_keep_the_script_working(name: str, mounts: list[str]) -> None:
    spec = PaneSpec(
        name=name,
        target=window_target(name),
        tmux="/nonexistent/tmux",
        socket="/nonexistent/sock",
        cwd="/",
        max_failures=1,
        failure_window=1,
        unit=f"mosaic-agent@{name}.service",
        cgroup_mounts=tuple(f"/nonexistent/{m}" for m in mounts),
    )
    argv = pane.pane_argv(spec, ["true"], Path("/nonexistent-run"))
    script = pane.SCRIPT
    done = subprocess.run(
        ["dash", "-c", script, "supervise.sh", *argv[2:]], capture_output=True, text=True, timeout=10, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == f"fleet: agent {name} exited with status 0; 1 exit(s) in 1s: giving up\n"
