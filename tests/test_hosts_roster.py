"""Several hosts without SSH: the roster's hosts model and its errors, the per-host roster
parts, the version guard's shell text (run under sh), the fan-out's bounds and batches,
and the command line's bad input (one line, exit 2, no traceback)."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fleetlib.controller import HostResult, fan_out, in_batches
from fleetlib.errors import FleetError, RosterError
from fleetlib.hosts import SshTarget, parse_target
from fleetlib.remote import MISSING_EXIT, SKEW_EXIT, Deadline, HostError, version_guarded
from fleetlib.roster import parse_roster
from tests.conftest import run_module

HOSTS = """\
version: 1
hosts:
  gpu1: alice@10.0.0.5:2222
  gpu2:
    ssh: build-box
    identity_file: ~/.ssh/fleet_ed25519
    backend: tmux
agents:
  - name: a1
    runtime: shell
  - name: b1
    runtime: shell
    host: gpu1
    env: {TOKEN: "s3cret"}
  - name: c1
    runtime: codex
    host: gpu2
"""


def test_hosts_parse_strings_and_mappings() -> None:
    roster = parse_roster(HOSTS, "r.yaml")
    assert roster.hosts["gpu1"].ssh == SshTarget("10.0.0.5", "alice", 2222)
    assert roster.hosts["gpu1"].backend == "auto"
    assert roster.hosts["gpu2"].ssh == SshTarget("build-box")
    assert roster.hosts["gpu2"].identity_file == "~/.ssh/fleet_ed25519"
    assert roster.hosts["gpu2"].backend == "tmux"
    assert [a.host for a in roster.agents] == ["local", "gpu1", "gpu2"]
    assert roster.host_names() == ["local", "gpu1", "gpu2"]


def test_roster_without_hosts_is_a_one_machine_fleet() -> None:
    roster = parse_roster("version: 1\nagents:\n  - {name: a1, runtime: shell}\n", "r.yaml")
    assert roster.hosts == {}
    assert roster.agents[0].host == "local"
    assert "host" not in roster.agents[0].to_dict()


def test_host_part_is_a_plain_roster_of_that_hosts_agents() -> None:
    roster = parse_roster(HOSTS, "r.yaml")
    text = roster.host_text("gpu1")
    part = parse_roster(text, "part.yaml")
    assert part.hosts == {}
    assert part.names() == ["b1"]
    assert part.agents[0].host == "local"
    assert part.agents[0].env == {"TOKEN": "s3cret"}
    assert roster.for_host("local").names() == ["a1"]


@pytest.mark.parametrize(
    ("snippet", "line", "expected"),
    [
        ("hosts:\n  local: x@y\n", 3, "hosts.local: 'local' is this machine"),
        ("hosts:\n  Big: x@y\n", 3, "hosts.Big: invalid host name 'Big'"),
        ("hosts:\n  h1: 'x@y:99999'\n", 3, "hosts.h1: invalid port 99999"),
        ("hosts:\n  h1: '-oProxyCommand=evil'\n", 3, "hosts.h1: invalid SSH target"),
        (
            "hosts:\n  h1: {ssh: x@y, backed: tmux}\n",
            3,
            "hosts.h1.backed: unknown key 'backed'; did you mean 'backend'?",
        ),
        (
            "hosts:\n  h1: {ssh: x@y, backend: tmx}\n",
            3,
            "hosts.h1.backend: unknown backend 'tmx'; did you mean 'tmux'?",
        ),
        ("hosts:\n  h1: {backend: tmux}\n", 3, "hosts.h1: missing required key 'ssh'"),
        ("hosts:\n  h1: 22\n", 3, "hosts.h1: must be a string"),
    ],
)
def test_bad_hosts_are_one_line_with_file_and_line(snippet: str, line: int, expected: str) -> None:
    text = "version: 1\n" + snippet + "agents: []\n"
    with pytest.raises(RosterError) as caught:
        parse_roster(text, "r.yaml")
    message = str(caught.value)
    assert message.startswith(f"r.yaml:{line}: "), message
    assert expected in message
    assert "\n" not in message


def test_unknown_host_of_an_agent_names_file_line_and_did_you_mean() -> None:
    text = HOSTS.replace("host: gpu2", "host: gpu3")
    with pytest.raises(RosterError) as caught:
        parse_roster(text, "r.yaml")
    assert str(caught.value).startswith("r.yaml:17: agents[2].host: unknown host 'gpu3'; did you mean 'gpu2'?")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("h", SshTarget("h")),
        ("u@h", SshTarget("h", "u")),
        ("u@10.1.2.3:2200", SshTarget("10.1.2.3", "u", 2200)),
        ("u@[::1]:22", SshTarget("::1", "u", 22)),
    ],
)
def test_parse_target(text: str, expected: SshTarget) -> None:
    assert parse_target(text) == expected


# --------------------------------------------------------------------------- the version guard


def _venv_with(home: Path, version: str | None) -> None:
    venv = home / ".local/share/fleet/venv"
    (venv / "bin").mkdir(parents=True)
    site = venv / "lib/python3.11/site-packages"
    site.mkdir(parents=True)
    if version is not None:
        (site / f"fleet-{version}.dist-info").mkdir()
    fleet = venv / "bin/fleet"
    fleet.write_text('#!/bin/sh\nprintf "%s|" "$@"\n')
    fleet.chmod(0o755)


@pytest.mark.parametrize(
    ("installed", "code", "stdout", "stderr"),
    [
        ("1.2.3", 0, "status|--json|a b|", ""),
        ("1.2.0", SKEW_EXIT, "", "1.2.0\n"),
        (None, MISSING_EXIT, "", ""),
    ],
)
def test_version_guard_runs_fleet_only_at_the_same_version(
    tmp_path: Path, installed: str | None, code: int, stdout: str, stderr: str
) -> None:
    _venv_with(tmp_path, installed)
    command = version_guarded("1.2.3", ["status", "--json", "a b"])
    done = subprocess.run(
        ["sh", "-c", command],
        check=False,
        env={"HOME": str(tmp_path), "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
    )
    assert (done.returncode, done.stdout, done.stderr) == (code, stdout, stderr)


def _watched(tmp_path: Path, fleet_script: str) -> subprocess.Popen[str]:
    """The version guard's `until_stdin_closes` command under sh, with a fake fleet."""
    _venv_with(tmp_path, "1.2.3")
    fleet = tmp_path / ".local/share/fleet/venv/bin/fleet"
    fleet.write_text(f"#!/bin/sh\n{fleet_script}\n")
    return subprocess.Popen(
        ["sh", "-c", version_guarded("1.2.3", ["logs", "--follow"], until_stdin_closes=True)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={"HOME": str(tmp_path), "PATH": os.environ["PATH"]},
        text=True,
    )


def test_a_watched_command_ends_when_its_input_closes(tmp_path: Path) -> None:
    """What keeps a remote follow from outliving its controller: closing the channel's
    input (stdin here) ends the command. The wait is a liveness bound."""
    with _watched(tmp_path, 'echo "following $*"; exec sleep 1000') as watched:
        assert watched.stdin is not None
        assert watched.stdout is not None
        assert watched.stdout.readline() == "following logs --follow\n"
        watched.stdin.close()
        assert watched.wait(timeout=30) == 128 + 15  # SIGTERM


def test_a_watched_command_that_ends_by_itself_answers_with_its_status(tmp_path: Path) -> None:
    with _watched(tmp_path, "exit 7") as watched:
        assert watched.wait(timeout=30) == 7  # its input still open: the watchdog does not hold it up
        assert watched.stdout is not None
        assert watched.stdout.read() == ""


# --------------------------------------------------------------------------- fan-out


def test_fan_out_runs_hosts_at_once_and_a_stuck_host_fails_alone() -> None:
    release = threading.Event()
    running: list[str] = []

    def job(host: str) -> object:
        running.append(host)
        if host == "stuck":
            release.wait(30)
        if host == "refusing":
            raise HostError("connection refused")
        return {"ok": True}

    started = time.monotonic()
    results = fan_out(["a", "stuck", "refusing", "b"], job, deadline=0.5)
    release.set()
    assert time.monotonic() - started < 10  # bounded by the deadline, not the stuck host
    by_host = {r.host: r for r in results}
    assert [r.host for r in results] == ["a", "stuck", "refusing", "b"]
    assert by_host["a"].ok
    assert by_host["b"].ok
    assert not by_host["stuck"].ok
    assert "no answer within 0.5s" in (by_host["stuck"].error or "")
    assert by_host["refusing"].error == "connection refused"
    assert sorted(running) == ["a", "b", "refusing", "stuck"]


def test_a_deadline_is_one_budget_for_every_step() -> None:
    now = [100.0]
    deadline = Deadline(3.0, clock=lambda: now[0])
    assert deadline.remaining() == 3.0
    now[0] += 2.5  # connecting took 2.5 s: the command gets what is left
    assert deadline.remaining() == 0.5
    now[0] += 1.0
    assert deadline.remaining() <= 0
    assert deadline.seconds == 3.0  # what messages name


def test_batches_stop_at_the_first_failing_batch() -> None:
    def job(host: str) -> object:
        if host == "h3":
            raise FleetError("boom")
        return {"ok": True}

    results = in_batches(["h1", "h2", "h3", "h4", "h5"], 2, job, deadline=5)
    assert [(r.host, r.ok, r.attempted) for r in results] == [
        ("h1", True, True),
        ("h2", True, True),
        ("h3", False, True),
        ("h4", True, True),
        ("h5", False, False),
    ]
    assert results[-1] == HostResult("h5", False, 0.0, error="not attempted: batch with h3 failed", attempted=False)


# --------------------------------------------------------------------------- command line


def _fleet(tmp_path: Path, *args: str, roster_text: str = HOSTS) -> subprocess.CompletedProcess[str]:
    roster = tmp_path / "roster.yaml"
    roster.write_text(roster_text)
    return subprocess.run(
        ["fleet", *args, "--home", str(tmp_path), "--roster", str(roster)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "INVOKE_FLEET_KNOWN_HOSTS": str(tmp_path / "known_hosts")},
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("restart", "--batch", "0"), "error: --batch: must be at least 1, not 0"),
        (("restart", "--batch", "x"), "error: --batch: 'x' is not a whole number"),
        (("status", "--host-timeout", "abc"), "error: --host-timeout: 'abc' is not a number of seconds"),
        (("restart", "--host-timeout", "0"), "error: --host-timeout: must be a finite number of seconds > 0"),
        (("hosts.bootstrap", "--host", "gpu9"), "error: unknown host 'gpu9'; did you mean 'gpu"),
        (("hosts.trust", "--host", "gpu"), "error: unknown host 'gpu'"),
        (("send", "--agent", "b1", "--all", "--message", "x"), "error: give exactly one of --agent NAME or --all"),
        # Durations have a maximum (a week): 1e10 s used to pass and crash the fan-out (OverflowError).
        (("restart", "--timeout", "1e10"), "error: --timeout: must be at most 604800 seconds (a week), not '1e10'"),
        (("start", "--lock-timeout", "604801"), "error: --lock-timeout: must be at most 604800 seconds (a week)"),
        (("status", "--host-timeout", "1e10"), "error: --host-timeout: must be at most 604800 seconds (a week)"),
        (("wait", "--all", "--for", "running", "--timeout", "1e10"), "error: --timeout: must be at most 604800"),
        (("send", "--agent", "b1", "--message", "x", "--timeout", "1e10"), "error: --timeout: must be at most"),
        # With hosts, a bad --backend used to fail the local part only, after the hosts had acted.
        (("restart", "--backend", "bogus"), "error: unknown backend 'bogus'"),
        (("status", "--backend", "bogus"), "error: unknown backend 'bogus'"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, args: tuple[str, ...], expected: str) -> None:
    done = _fleet(tmp_path, *args)
    assert done.returncode == 2, done
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith(expected), done.stderr
    assert "Traceback" not in done.stderr


LOCAL_ONLY = "version: 1\nagents:\n  - name: a1\n    runtime: shell\n"


@pytest.mark.parametrize("task", ["start", "restart", "stop", "status"])
@pytest.mark.parametrize("value", ["abc", "0", "1e10"])
def test_host_timeout_is_checked_without_hosts_before_anything(tmp_path: Path, task: str, value: str) -> None:
    """Defect: without hosts, `--host-timeout abc` was never looked at (and `restart` went
    ahead and started the agent). Every flag is checked first, hosts or not."""
    socket = tmp_path / "fleet" / "run" / "tmux.sock"
    try:
        done = _fleet(tmp_path, task, "--backend", "tmux", "--host-timeout", value, roster_text=LOCAL_ONLY)
        assert done.returncode == 2, done
        assert done.stdout == ""
        assert done.stderr.startswith("error: --host-timeout: "), done.stderr
        assert len(done.stderr.splitlines()) == 1, done.stderr
        assert not socket.exists()  # nothing started: no tmux server for this home
    finally:
        if socket.exists():
            subprocess.run(["tmux", "-S", str(socket), "kill-server"], check=False, capture_output=True)


def test_fan_out_takes_the_longest_deadline_without_overflow() -> None:
    """A deadline beyond what a thread join accepts (`threading.TIMEOUT_MAX`) is waited as
    "forever", never an OverflowError."""
    results = fan_out(["a", "b"], lambda host: {"ok": True}, deadline=1e300)
    assert [(r.host, r.ok) for r in results] == [("a", True), ("b", True)]


def test_unknown_host_in_the_roster_is_one_line_before_anything(tmp_path: Path) -> None:
    done = _fleet(tmp_path, "restart", roster_text=HOSTS.replace("host: gpu1", "host: gpu"))
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1
    assert "roster.yaml:13: agents[1].host: unknown host 'gpu'; did you mean 'gpu" in lines[0]


def test_hosts_list(tmp_path: Path) -> None:
    done = _fleet(tmp_path, "hosts.list")
    assert done.returncode == 0, done
    assert done.stdout.split("\n")[0].split() == ["HOST", "SSH", "BACKEND", "AGENTS"]
    assert ["gpu1", "alice@10.0.0.5:2222", "auto", "1"] in [line.split() for line in done.stdout.splitlines()]


def test_watch_runs_openssh_with_a_tty_strict_keys_and_no_prompts(tmp_path: Path) -> None:
    from fleetlib.group import ssh_argv
    from fleetlib.remote import HostLink, RemoteSettings

    roster = parse_roster(HOSTS, "r.yaml")
    settings = RemoteSettings(known_hosts=tmp_path / "known", timeout=5, version="1.2.3")
    argv = ssh_argv(HostLink(roster.hosts["gpu1"], settings), "REMOTE")
    assert argv == [
        "ssh",
        "-t",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={tmp_path / 'known'}",
        "-p",
        "2222",
        "alice@10.0.0.5",
        "REMOTE",
    ]
    with_key = ssh_argv(HostLink(roster.hosts["gpu2"], settings), "REMOTE")
    assert with_key[-4:] == ["-i", os.path.expanduser("~/.ssh/fleet_ed25519"), "build-box", "REMOTE"]


def _expand(command: str, host: str, port: int) -> list[str]:
    """What OpenSSH runs for a ProxyCommand: its tokens expanded once, then split by the shell."""
    tokens = {"h": host, "p": str(port), "%": "%"}
    return shlex.split(re.sub(r"%(.)", lambda m: tokens[m.group(1)], command))


def test_watch_through_jump_hosts_checks_every_hop_like_the_host(tmp_path: Path) -> None:
    """OpenSSH's ProxyJump would give the hops none of the -o options (default known_hosts, a
    possible prompt): each hop is an `ssh -W` of its own with the same strict options, even
    with a '%' in a path (each nesting level expands tokens once)."""
    from fleetlib.group import ssh_argv
    from fleetlib.remote import HostLink, RemoteSettings

    known = tmp_path / "k%h nown"
    strict = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}"]
    link = HostLink(parse_roster(HOSTS, "r.yaml").hosts["gpu1"], RemoteSettings(known, 5, "1.2.3"))
    argv = ssh_argv(link, "REMOTE", [SshTarget("bastion", "bob", 22), SshTarget("inner", None, 2200)])
    assert argv[:8] == ["ssh", "-t", *strict]
    assert argv[8] == "-o"
    assert argv[-4:] == ["-p", "2222", "alice@10.0.0.5", "REMOTE"]
    # the host is reached through `inner`, `inner` through `bastion`
    outer = _expand(argv[9].removeprefix("ProxyCommand="), "10.0.0.5", 2222)
    assert outer[: len(strict) + 2] == ["ssh", *strict, "-o"]
    assert outer[len(strict) + 3 :] == ["-p", "2200", "-W", "[10.0.0.5]:2222", "--", "inner"]
    inner = _expand(outer[len(strict) + 2].removeprefix("ProxyCommand="), "inner", 2200)
    assert inner == [
        "ssh",
        *strict,
        "-o",
        "ProxyJump=none",
        "-l",
        "bob",
        "-p",
        "22",
        "-W",
        "[inner]:2200",
        "--",
        "bastion",
    ]
    assert ssh_argv(link, "REMOTE") == ssh_argv(link, "REMOTE", [])  # no hops: no ProxyCommand


def test_watch_without_a_terminal_is_one_line(tmp_path: Path) -> None:
    done = _fleet(tmp_path, "watch", "--agent", "b1")
    assert done.returncode == 2
    assert done.stderr == "error: watch needs a terminal (stdin and stdout)\n"


def test_a_host_failure_is_one_line_whatever_the_exception_says() -> None:
    """Defect (CI): a library exception whose message spans lines (invoke's CommandTimedOut,
    ThreadException) became several stderr lines for one host."""

    def job(host: str) -> object:
        if host == "bug":
            raise RuntimeError("\nCommand did not complete within 3 seconds!\n\nCommand: 'fleet status'\n")
        raise HostError("no answer from h\nwithin 3s")

    results = {r.host: r for r in fan_out(["bug", "host"], job, deadline=5)}
    assert results["bug"].error == "internal error: RuntimeError: Command did not complete within 3 seconds!"
    assert results["host"].error == "no answer from h"


# --------------------------------------------------------------------------- Fabric optional, start-up

# Run the `fleet` program with Fabric and paramiko hidden from the import system, as in an
# install without the `hosts` extra.
WITHOUT_FABRIC = """\
import sys
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("fabric", "paramiko"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Hide())
from fleetctl.program import main
sys.argv[0] = "fleet"
main()
"""


@pytest.mark.parametrize("args", [("status",), ("restart",), ("hosts.trust",), ("doctor",), ("top", "--once")])
def test_a_roster_with_hosts_without_fabric_says_how_to_install_it(tmp_path: Path, args: tuple[str, ...]) -> None:
    roster = tmp_path / "roster.yaml"
    roster.write_text(HOSTS)
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_FABRIC, *args, "--home", str(tmp_path), "--roster", str(roster)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done
    assert done.stderr.splitlines() == [
        f"error: {roster} names hosts, which needs Fabric (fabric is not installed); "
        "install it with: pip install 'fleet[hosts]'"
    ], done.stderr
    assert done.stdout == ""


def test_a_roster_without_hosts_runs_without_fabric(tmp_path: Path) -> None:
    roster = tmp_path / "roster.yaml"
    roster.write_text(LOCAL_ONLY)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            WITHOUT_FABRIC,
            "hosts.list",
            "--json",
            "--home",
            str(tmp_path),
            "--roster",
            str(roster),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done
    assert [row["host"] for row in json.loads(done.stdout)] == ["local"]


def test_the_fleet_and_hosts_task_modules_import_no_library_at_start_up() -> None:
    """Start-up (issue 22): importing the task modules loads only fleetlib's modules of
    constants and plain dataclasses; the library proper comes with the task that runs."""
    code = (
        "import sys\n"
        "import fleetctl.fleet_tasks, fleetctl.hosts_tasks, fleetctl.top_tasks\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith(('fleetlib', 'fabric', 'paramiko', 'rich')))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60)
    allowed = {
        "fleetlib",
        "fleetlib.defaults",
        "fleetlib.errors",
        "fleetlib.hosts",
        "fleetlib.paths",
        "fleetlib.results",
    }
    assert set(done.stdout.split()) <= allowed, done.stdout


def test_top_sort_names_are_the_librarys() -> None:
    from fleetctl.top_tasks import SORT_NAMES
    from fleetlib.top import SORT_KEYS

    assert tuple(SORT_KEYS) == SORT_NAMES


HOSTS_LOCAL_AGENTS = "version: 1\nhosts:\n  gpu1: alice@10.0.0.5\nagents:\n  - {name: a1, runtime: shell}\n"


def test_wait_with_hosts_gives_this_machine_the_backend_and_unit_dir_asked_for(tmp_path: Path) -> None:
    """Defect: with hosts, `wait` dropped --backend and --unit-dir for this machine's agents
    (it waited on the default backend). No agent is on gpu1, so no SSH is needed."""
    units = tmp_path / "units"
    args = ("wait", "--all", "--for", "running", "--timeout", "1", "--backend", "systemd", "--unit-dir", str(units))
    done = _fleet(tmp_path, *args, roster_text=HOSTS_LOCAL_AGENTS)
    assert done.returncode == 1, done
    assert done.stderr.splitlines() == [
        f"error: local: fleet units are not installed in {units}; run `fleet install`",
        "error: wait failed on 1 host(s): local",
    ]


def test_a_hosts_result_names_the_fleet_programs_commands_on_stdout_too(tmp_path: Path) -> None:
    """Defect: with hosts, `fleet send --all` printed a refused agent's hint as
    "`inv fleet.start --agent a1`" (only stderr was spelled for the `fleet` program)."""
    roster = tmp_path / "roster.yaml"
    roster.write_text(HOSTS_LOCAL_AGENTS)
    args = ["send", "--all", "--message", "x", "--home", str(tmp_path), "--roster", str(roster)]
    done = run_module("fleetctl", args, {**os.environ, "INVOKE_FLEET_KNOWN_HOSTS": str(tmp_path / "known_hosts")})
    assert done.returncode in (1, 2), done
    assert "a1" in done.stdout, done
    assert "`fleet start --agent a1`" in done.stdout, done.stdout
    assert "`inv " not in done.stdout + done.stderr


def test_bootstrap_reaches_every_host_before_it_builds_and_builds_nothing_when_none_answers(tmp_path: Path) -> None:
    """Building the wheels takes seconds to minutes; a host that cannot be reached used to
    be said only after it. Nothing listens on ports 1 and 9 here: refused at once."""
    for port in (1, 9):  # the premise: nothing listens there
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0
    roster = (
        "version: 1\nhosts:\n  h1: 127.0.0.1:1\n  h2: nobody@127.0.0.1:9\nagents:\n  - {name: a1, runtime: shell}\n"
    )
    done = _fleet(tmp_path, "hosts.bootstrap", roster_text=roster)
    assert done.returncode == 1, done
    assert done.stderr.splitlines() == [
        "error: h1: cannot connect to 127.0.0.1:1: connection refused (is sshd running?)",
        "error: h2: cannot connect to nobody@127.0.0.1:9: connection refused (is sshd running?)",
        "error: bootstrap failed on 2 host(s): h1, h2",
    ]  # no "building wheels ..." line: nothing was built
