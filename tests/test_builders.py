"""Pure builders: argv lists, unit-file text and output parsers, tested without running anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleetlib import pane, systemd, tmux, transcript
from fleetlib.pane import PaneSpec
from fleetlib.procs import MARKER_ENV, marker
from fleetlib.roster import DEFAULT_STOP_TIMEOUT, Agent, parse_roster
from fleetlib.systemd import DEFAULT_UNITS, UnitNames
from fleetlib.units import (
    DROPIN_NAME,
    agent_dropin_text,
    agent_template_text,
    cgroup_mounts,
    dropin_environment,
    exec_line,
    exec_words,
    holder_unit_text,
    quote_word,
    unit_files,
)

SOCK = Path("/home/u/.config/mosaic/fleet/run/tmux.sock")
BASE_ENV = {"HOME": "/home/u", "PATH": "/opt/bin:/usr/bin", "LANG": "C.UTF-8"}
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'", ";": ";", " ": " "}


def systemd_words(value: str) -> list[str]:
    """Split an ``Exec*=`` value the way systemd does (for the words we emit): words
    separated by blanks, double quotes with C escapes, ``\\;`` a literal ``;``; then the
    specifier (``%%``) and variable (``$$``) unescaping."""
    words: list[str] = []
    i = 0
    while i < len(value):
        if value[i].isspace():
            i += 1
            continue
        word: list[str] = []
        while i < len(value) and not value[i].isspace():
            char = value[i]
            if char in "\"'":
                i += 1
                while value[i] != char:
                    if value[i] == "\\":
                        word.append(_ESCAPES[value[i + 1]])
                        i += 2
                    else:
                        word.append(value[i])
                        i += 1
                i += 1
            elif char == "\\":
                word.append(_ESCAPES[value[i + 1]])
                i += 2
            else:
                word.append(char)
                i += 1
        words.append("".join(word).replace("%%", "%").replace("$$", "$"))
    return words


def exec_argv(text: str, key: str = "ExecStart") -> list[str]:
    """The argv of the one ``key=`` line of a unit text (its ``-`` prefix dropped)."""
    lines = [line for line in text.splitlines() if line.startswith(f"{key}=")]
    assert len(lines) == 1, lines
    value = lines[0].removeprefix(f"{key}=").removeprefix("-")
    assert ";" not in value.split(), "a bare ';' would split the Exec line into two commands"
    return systemd_words(value)


# --------------------------------------------------------------------------- quoting


@pytest.mark.parametrize(
    "word",
    [
        "plain",
        "two words",
        "$HOME",
        "$$",
        "100%",
        "%i",
        'say "hi"',
        "back\\slash",
        "a;b",
        "a;",
        ";",
        "",
        "tab\there",
        "new\nline",
        "#{window_name}",
    ],
)
def test_quote_word_round_trips(word: str) -> None:
    quoted = quote_word(word)
    if word == ";":
        assert quoted == "\\;"
    assert "%" not in quoted.replace("%%", "")
    assert "$" not in quoted.replace("$$", "")
    assert systemd_words(quoted) == [word]


def test_exec_line_prefix_and_quoting() -> None:
    assert (
        exec_line("ExecStop", ["/usr/bin/tmux", "kill-server"], ignore_failure=True)
        == "ExecStop=-/usr/bin/tmux kill-server"
    )
    assert exec_line("ExecStart", ["/bin/echo", "a b", "50%"]) == 'ExecStart=/bin/echo "a b" "50%%"'
    assert exec_line("ExecStart", ["/bin/echo", ";", "$x"]) == 'ExecStart=/bin/echo \\; "$$x"'


# --------------------------------------------------------------------------- the agent template


def test_agent_template_requires_and_orders_after_the_holder() -> None:
    text = agent_template_text("roster.yaml")
    assert "Requires=mosaic-tmux-holder.service\n" in text
    assert "After=mosaic-tmux-holder.service\n" in text
    assert "WantedBy=default.target" in text
    assert "Wants=" not in text  # Wants= would leave agents "active" with no window


def test_agent_template_start_limit_and_restart_only_when_its_client_fails() -> None:
    text = agent_template_text("roster.yaml")
    assert "StartLimitIntervalSec=10\n" in text
    assert "StartLimitBurst=100\n" in text
    assert "Restart=on-failure\n" in text  # the agent's own pacing is the pane supervisor's
    assert "Type=simple\n" in text
    assert "Type=oneshot" not in text
    assert "ExecStart=" not in text  # the per-agent drop-in carries it


def test_agent_template_kills_its_whole_cgroup_with_a_hangup_and_sits_beside_the_holder() -> None:
    text = agent_template_text("roster.yaml")
    assert "KillMode=control-group\n" in text
    assert "SendSIGHUP=yes\n" in text
    assert f"TimeoutStopSec={DEFAULT_STOP_TIMEOUT:g}\n" in text
    assert f"Slice={DEFAULT_UNITS.slice}\n" in text
    assert "ExecStopPost" not in text  # one process per start: no extra tmux client
    assert "ExecStartPre" not in text


def test_template_and_dropin_name_their_source() -> None:
    assert "from /r/roster.yaml;" in agent_template_text("/r/roster.yaml")
    agent = Agent(name="a1", runtime="codex")
    assert "from /r/roster.yaml;" in agent_dropin_text(
        agent, "tmux", SOCK, cwd="/", environment=BASE_ENV, cgroup_mounts=(), source="/r/roster.yaml"
    )


# --------------------------------------------------------------------------- the holder


def test_holder_starts_tmux_under_env_i_with_exactly_the_base_environment() -> None:
    env = {**BASE_ENV, "ODD": 'v 50% $x "q";'}
    text = holder_unit_text("/usr/bin/tmux", SOCK, env, "roster.yaml", "/usr/bin/env", 15.0)
    argv = exec_argv(text)
    assert argv[:2] == ["/usr/bin/env", "-i"]
    assert argv[2 : 2 + len(env)] == [f"{key}={value}" for key, value in env.items()]
    rest = argv[2 + len(env) :]
    assert rest[:5] == ["/usr/bin/tmux", "-S", str(SOCK), "-f", "/dev/null"]
    assert rest[5:14] == ["new-session", "-d", "-s", "fleet", "-n", "_holder", "--", "sleep", "infinity"]
    assert "Environment=" not in text  # everything the server gets is on the env -i line


def test_holder_keeps_dead_panes_and_signals_the_agents_channel_when_a_pane_dies() -> None:
    argv = exec_argv(holder_unit_text("/usr/bin/tmux", SOCK, BASE_ENV, "r.yaml", "/usr/bin/env", 15.0))
    keep = argv.index("remain-on-exit")
    assert argv[keep - 2 : keep + 2] == ["set-option", "-wg", "remain-on-exit", "on"]
    assert argv[keep - 3] == ";"  # its own command, before any window exists
    hook = argv.index("pane-died")
    assert argv[hook - 2 : hook] == ["set-hook", "-g"]
    assert argv[hook + 1] == "run-shell -C 'wait-for -S fleet-agent-#{window_id}'"
    assert tmux.CHANNEL_FORMAT == "fleet-agent-#{window_id}"  # window ids are never reused by a server


def test_holder_unit_forks_restarts_and_stops_after_the_longest_agent() -> None:
    text = holder_unit_text("/usr/bin/tmux", SOCK, BASE_ENV, "roster.yaml", "/usr/bin/env", 37.5)
    assert "Type=forking\n" in text
    assert "Restart=always\n" in text
    assert "SendSIGHUP=yes\n" in text
    assert "TimeoutStopSec=37.5\n" in text
    assert f"Slice={DEFAULT_UNITS.slice}\n" in text
    assert "StartLimitBurst=100\n" in text
    assert "WorkingDirectory=~\n" in text
    assert exec_argv(text, "ExecStop") == ["/usr/bin/tmux", "-S", str(SOCK), "kill-server"]
    assert "ExecStop=-" in text  # a server that is already gone is not a failed stop


def test_holder_stop_timeout_is_the_longest_agent_stop_timeout_plus_a_margin(tmp_path: Path) -> None:
    text = "version: 1\nagents:\n  - {name: a, runtime: codex, stop_timeout: 42}\n  - {name: b, runtime: codex}\n"
    files = unit_files(
        parse_roster(text, str(tmp_path / "r.yaml")),
        tmux_bin="/usr/bin/tmux",
        socket=SOCK,
        environment=BASE_ENV,
        user_home=Path("/home/u"),
        units=DEFAULT_UNITS,
    )
    assert "TimeoutStopSec=47\n" in files["mosaic-tmux-holder.service"]


# --------------------------------------------------------------------------- the per-agent drop-in


def _spec(agent: Agent, cwd: str, mounts: tuple[str, ...] = ()) -> PaneSpec:
    return PaneSpec(
        name=agent.name,
        target=tmux.window_target(agent.name),
        tmux="/usr/bin/tmux",
        socket=str(SOCK),
        cwd=cwd,
        max_failures=agent.max_failures,
        failure_window=agent.failure_window,
        cgroup_mounts=mounts,
        unit=DEFAULT_UNITS.agent(agent.name),
    )


ODD = Agent(
    name="a1",
    runtime="custom",
    command=("my cli", "$(rm -rf /)"),
    args=("--x", "50%", "a;", ";", "$HOME"),
    env={"K": "v v", "P": "100% $y;"},
    stop_timeout=12.5,
    max_failures=4,
    failure_window=90,
)
ODD_CWD = "/work dir/50% $HOME;#{pane_id}"


def test_dropin_exec_start_is_one_tmux_client_that_creates_the_window_then_waits_for_its_channel() -> None:
    text = agent_dropin_text(
        ODD, "/usr/bin/tmux", SOCK, cwd=ODD_CWD, environment=BASE_ENV, cgroup_mounts=("/sys/fs/cgroup",), source="r"
    )
    argv = exec_argv(text)
    assert argv[:3] == ["/usr/bin/tmux", "-S", str(SOCK)]
    assert argv.count("new-window") == 1
    assert argv[0] == "/usr/bin/tmux"  # one client; the supervisor's own tmux calls are in its script
    # it waits on the new window's own channel (a late signal of a previous generation's
    # pane goes to that pane's window id, never to this one)
    assert argv[-6:] == [";", "run-shell", "-C", "-t", "=fleet:=a1", "wait-for fleet-agent-#{window_id}"]
    assert argv.index("new-window") < len(argv) - 6
    assert text.endswith("TimeoutStopSec=12.5\n")


def test_dropin_fails_a_unit_whose_server_no_longer_answers_after_its_client_ended() -> None:
    # A server that shut down cleanly ends the client with status 0: without this check
    # the unit would end "successfully" and never come back with the holder.
    text = agent_dropin_text(ODD, "/usr/bin/tmux", SOCK, cwd="/", environment=BASE_ENV, cgroup_mounts=(), source="r")
    assert exec_argv(text, "ExecStopPost") == ["/usr/bin/tmux", "-S", str(SOCK), "has-session", "-t", "=fleet"]
    assert "ExecStopPost=-" not in text  # its failure must count


def test_dropin_runs_the_pane_supervisor_from_the_run_dir_with_the_agent_argv_literally() -> None:
    text = agent_dropin_text(
        ODD, "/usr/bin/tmux", SOCK, cwd=ODD_CWD, environment=BASE_ENV, cgroup_mounts=("/sys/fs/cgroup",), source="r"
    )
    argv = exec_argv(text)
    spec = _spec(ODD, ODD_CWD, ("/sys/fs/cgroup",))
    window = argv[argv.index("new-window") : argv.index("pipe-pane") - 1]  # then the transcript's pipe
    dash = window.index("--")
    env = pane.agent_environment(BASE_ENV, marker("a1", str(SOCK)), ODD.env)
    expected = [tmux.literal(word) for word in pane.pane_argv(spec, ODD.argv(), SOCK.parent, env)]
    assert window[dash + 1 :] == expected
    assert window[dash + 1 : dash + 3] == ["/bin/sh", str(SOCK.parent / pane.SCRIPT_NAME)]
    params = window[dash + 3 : dash + 12]
    assert params == [
        "a1", "=fleet:=a1", "/usr/bin/tmux", str(SOCK), ODD_CWD, "4", "90", "mosaic-agent@a1.service", "/sys/fs/cgroup",
    ]  # fmt: skip
    # the agent's whole environment (the captured base, the roster's env, the marker last), then its argv
    entries = [f"{key}={value}" for key, value in BASE_ENV.items()]
    entries += ["K=v v", "P=100% $y\\;", f"{MARKER_ENV}={marker('a1', str(SOCK))}"]
    assert window[dash + 12 : dash + 12 + len(entries)] == entries
    rest = window[dash + 12 + len(entries) :]
    assert rest == ["--", "my cli", "$(rm -rf /)", "--x", "50%", "a\\;", "\\;", "$HOME"]


def test_dropin_environment_reads_back_what_the_dropin_gives_the_agent() -> None:
    text = agent_dropin_text(
        ODD, "/usr/bin/tmux", SOCK, cwd=ODD_CWD, environment=BASE_ENV, cgroup_mounts=(), source="r"
    )
    assert dropin_environment(text) == {**BASE_ENV, **ODD.env, MARKER_ENV: marker("a1", str(SOCK))}
    assert dropin_environment("[Service]\nExecStart=/usr/bin/tmux -S /s list-windows\n") is None
    assert dropin_environment('[Service]\nExecStart=/bin/sh "open\n') is None


@pytest.mark.parametrize("words", [["a", "b c", 'q"\\', "50%", "$x", ";", "x;", "\\;", "l\nt\t"], [], [""]])
def test_exec_words_reads_back_what_exec_line_writes(words: list[str]) -> None:
    assert exec_words(exec_line("ExecStart", words).removeprefix("ExecStart=")) == words


def test_dropin_passes_only_the_marker_to_the_window_and_no_tmux_cwd() -> None:
    argv = exec_argv(
        agent_dropin_text(ODD, "/usr/bin/tmux", SOCK, cwd=ODD_CWD, environment=BASE_ENV, cgroup_mounts=(), source="r")
    )
    window = argv[argv.index("new-window") : argv.index("--")]
    envs = [window[i + 1] for i, word in enumerate(window) if word == "-e"]
    # tmux would give the window the client's PATH over any -e; the supervisor gets the
    # environment as parameters, the window only the marker (so the supervisor carries it)
    assert envs == [f"{MARKER_ENV}={marker('a1', str(SOCK))}"]
    assert "-c" not in window  # tmux expands formats in -c; the supervisor enters the cwd itself
    assert window[window.index("-n") + 1] == "a1"
    assert window[window.index("-t") + 1] == "=fleet:"


def test_dropin_kills_a_leftover_window_and_counts_the_start() -> None:
    argv = exec_argv(
        agent_dropin_text(ODD, "/usr/bin/tmux", SOCK, cwd="/", environment=BASE_ENV, cgroup_mounts=(), source="r")
    )
    kill = argv.index("if-shell")
    assert argv[kill : kill + 7] == [
        "if-shell", "-F", "-t", "=fleet:", tmux.window_exists_format("a1"), "kill-window -t =fleet:=a1", ";",
    ]  # fmt: skip
    counter = argv.index("@fleet-starts-a1")
    assert argv[counter - 3 : counter + 2] == [
        "set-option",
        "-g",
        "-F",
        "@fleet-starts-a1",
        "#{e|+:#{@fleet-starts-a1},1}",
    ]
    assert kill < counter < argv.index("new-window")


def test_dropin_supervisor_joins_the_units_cgroup_on_each_mount() -> None:
    mounts = ("/sys/fs/cgroup", "/x y/systemd")
    argv = exec_argv(
        agent_dropin_text(ODD, "tmux", SOCK, cwd="/", environment=BASE_ENV, cgroup_mounts=mounts, source="r")
    )
    script_at = argv.index(str(SOCK.parent / pane.SCRIPT_NAME))
    assert argv[script_at + 8 : script_at + 10] == ["mosaic-agent@a1.service", "/sys/fs/cgroup:/x y/systemd"]
    without = exec_argv(
        agent_dropin_text(ODD, "tmux", SOCK, cwd="/", environment=BASE_ENV, cgroup_mounts=(), source="r")
    )
    assert without[script_at + 9] == ""


def test_unit_files_one_dropin_per_agent_home_as_default_cwd_and_resolved_tilde(tmp_path: Path) -> None:
    text = (
        "version: 1\nagents:\n  - {name: a, runtime: codex, cwd: ~/src}\n"
        "  - {name: b, runtime: claude, cwd: /srv/b}\n  - {name: c, runtime: codex}\n"
    )
    roster = parse_roster(text, str(tmp_path / "roster.yaml"))
    files = unit_files(
        roster,
        tmux_bin="/usr/bin/tmux",
        socket=SOCK,
        environment=BASE_ENV,
        user_home=Path("/home/u"),
        cgroup_mounts=("/sys/fs/cgroup",),
        units=DEFAULT_UNITS,
    )
    assert sorted(files) == [
        "app-mosaic.slice",
        "mosaic-agent@.service",
        f"mosaic-agent@a.service.d/{DROPIN_NAME}",
        f"mosaic-agent@b.service.d/{DROPIN_NAME}",
        f"mosaic-agent@c.service.d/{DROPIN_NAME}",
        "mosaic-tmux-holder.service",
    ]

    def cwd_of(name: str) -> str:
        argv = exec_argv(files[f"mosaic-agent@{name}.service.d/{DROPIN_NAME}"])
        return argv[argv.index(str(SOCK.parent / pane.SCRIPT_NAME)) + 5]

    assert cwd_of("a") == "/home/u/src"
    assert cwd_of("b") == "/srv/b"
    assert cwd_of("c") == "/home/u"  # no cwd: the home directory, as on the tmux backend
    assert exec_argv(files["mosaic-tmux-holder.service"])[2:5] == [f"{k}={v}" for k, v in BASE_ENV.items()]


# --------------------------------------------------------------------------- cgroup mounts

MOUNTINFO_UNIFIED = """\
22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/root rw
35 22 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
"""
MOUNTINFO_HYBRID = """\
22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/root rw
30 25 0:26 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid,nodev - cgroup cgroup rw,xattr,name=systemd
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev - cgroup cgroup rw,cpu,cpuacct
34 22 0:31 / /mnt/with\\040space rw - cgroup2 cgroup2 rw
"""


@pytest.mark.parametrize(
    ("mountinfo", "expected"),
    [
        (MOUNTINFO_UNIFIED, ("/sys/fs/cgroup",)),
        (
            MOUNTINFO_HYBRID,
            ("/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/cpu,cpuacct", "/mnt/with\\040space"),
        ),
        ("", ()),
        ("garbage\nmore garbage - x\n1 2 3 - cgroup2\n", ()),
    ],
)
def test_cgroup_mounts_from_mountinfo(mountinfo: str, expected: tuple[str, ...]) -> None:
    assert cgroup_mounts(mountinfo) == expected


# --------------------------------------------------------------------------- tmux builders


def test_tmux_targets_are_exact() -> None:
    assert tmux.window_target("a1") == "=fleet:=a1"
    assert tmux.kill_window_argv("tmux", SOCK, "a1")[-2:] == ["-t", "=fleet:=a1"]
    assert tmux.list_windows_argv("tmux", SOCK)[:6] == ["tmux", "-S", str(SOCK), "list-windows", "-t", "=fleet:"]
    assert tmux.list_windows_argv("tmux", SOCK)[-3:] == [";", "show-options", "-g"]


def test_agent_window_commands_run_the_supervisor_and_escape_trailing_semicolons() -> None:
    agent = Agent(name="a1", runtime="custom", command=("codex", "a;"))
    spec = _spec(agent, "/w")
    env = {"K": "x;", MARKER_ENV: "a1@/s"}
    commands = tmux.agent_window_commands(spec, agent.argv(), env=env, run_dir=Path("/r"))
    pipe = commands.index("pipe-pane")
    assert commands[pipe - 4 : pipe] == ["--", "codex", "a\\;", ";"]  # trailing ';' escaped for tmux's parser
    assert commands[commands.index("-e") + 1] == f"{MARKER_ENV}=a1@/s"
    dash = commands.index("--")
    assert commands[dash + 1 : pipe - 1] == [
        tmux.literal(w) for w in pane.pane_argv(spec, agent.argv(), Path("/r"), env)
    ]
    assert "K=x\\;" in commands[dash + 1 : pipe - 1]
    # the transcript's pipe, in the same sequence as new-window (see tests/test_transcript_tmux.py)
    assert commands[pipe:] == [
        "pipe-pane",
        "-O",
        "-t",
        "=fleet:=a1",
        transcript.pipe_shell_command(Path("/logs/a1.log")),
    ]
    assert commands[0] == "if-shell"  # no client prefix: composable into one longer client


def test_new_window_argv_is_the_prefixed_commands_then_the_wait_on_the_new_windows_channel() -> None:
    agent = Agent(name="a1", runtime="codex")
    spec = _spec(agent, "/w")
    argv = tmux.new_window_argv("/usr/bin/tmux", SOCK, spec, agent.argv(), env={}, run_dir=SOCK.parent)
    body = tmux.agent_window_commands(spec, agent.argv(), env={}, run_dir=SOCK.parent)
    assert argv == [
        "/usr/bin/tmux", "-S", str(SOCK),
        *body, ";", "run-shell", "-C", "-t", "=fleet:=a1", "wait-for fleet-agent-#{window_id}",
    ]  # fmt: skip


def test_new_session_commands_keep_dead_panes_server_wide() -> None:
    assert tmux.new_session_commands() == [
        "new-session",
        "-d",
        "-s",
        "fleet",
        "-n",
        "_holder",
        "--",
        "sleep",
        "infinity",
    ]
    assert tmux.keep_dead_panes_commands() == ["set-option", "-wg", "remain-on-exit", "on"]


@pytest.mark.parametrize(("word", "expected"), [("a", "a"), ("a;", "a\\;"), (";", "\\;"), ("a;b", "a;b"), ("", "")])
def test_literal_protects_only_a_trailing_semicolon(word: str, expected: str) -> None:
    assert tmux.literal(word) == expected


# --------------------------------------------------------------------------- parsing


def test_parse_windows_ten_fields_with_start_counters() -> None:
    output = (
        "_holder\t10\t0\t\t\t\t\t100\t\t\t%0\t0\t\t\t\t24 80\n"
        "a1\t11\t0\t\t\trunning\t\t1795931134\tidle\t1795931130.5\t%1\t1\t\thook\t1795931131.25\t40 120\n"
        "a10\t12\t1\t7\t7\tfailed\t5\t\t\t\t\t0\t\t\t\t\n"
        "a2\t13\t0\t\t3\trestarting\t2\t\tworking\tnan\t\t0\t\tscreen\tjunk\t\n"
        "a3\t14\t1\t\t126\tfailed\t1\t\t\t\t\t\t\t\t\t\n"
        "@fleet-starts-a1 3\n@fleet-starts-a10 1\n@fleet-starts-a2 junk\nstatus on\n"
    )
    windows = tmux.parse_windows(output)
    assert windows["a1"] == tmux.Window(
        "a1", 11, dead=False, starts=3, state="running", last_output=1795931134, activity="idle",
        activity_since=1795931130.5, pane_id="%1", piped=True, activity_source="hook", sent_at=1795931131.25,
        size="40 120",
    )  # fmt: skip
    assert windows["a1"].live_pid == 11
    assert windows["a10"] == tmux.Window("a10", 12, True, 7, 1, "failed", 5, 7)
    assert windows["a10"].live_pid is None
    assert windows["a2"] == tmux.Window(
        "a2", 13, False, None, None, "restarting", 2, 3, activity="working", activity_source="screen"
    )
    assert windows["a3"].dead_status == 126  # no pane status: the supervisor's recorded one
    assert windows["_holder"].starts is None


@pytest.mark.parametrize(
    "line",
    [
        "a1\t11\t0\t\t\t",  # six fields (an old format)
        "a1\t11\t0\t\t\t\t",  # seven (the format before activity)
        "a1\t11\t0\t\t\t\t\t\t\t",  # ten (before pane ids)
        "a1\t11\t0\t\t\t\t\t\t\t\t",  # eleven (before transcripts)
        "a1\t11\t0\t\t\t\t\t\t\t\t\t",  # twelve (before reasons)
        "a1\t11\t0\t\t\t\t\t\t\t\t\t\t",  # thirteen (before activity sources)
        "a1\t11\t0\t\t\t\t\t\t\t\t\t\t\t",  # fourteen (before the send record)
        "a1\t11\t0\t\t\t\t\t\t\t\t\t\t\t\t",  # fifteen (before the pane size)
        "a1\t11\t0\t\t\t\t\t\t\t\t\t\t\t\t\t\t",  # seventeen
        "a1",
        "",
    ],
)
def test_parse_windows_ignores_lines_of_another_shape(line: str) -> None:
    assert tmux.parse_windows(line + "\n") == {}


def test_parse_windows_treats_impossible_numbers_as_unknown() -> None:
    windows = tmux.parse_windows("a1\t99999999999999\t1\tx\t-3\t\tmany\tsoon\tidle\tinf\t%9\tyes\t\t\tnan\tx y\n")
    assert windows["a1"].pane_pid is None
    assert windows["a1"].dead_status is None
    assert windows["a1"].last_exit == -3
    assert windows["a1"].deaths == 0
    assert windows["a1"].last_output is None
    assert windows["a1"].activity_since is None
    assert windows["a1"].sent_at is None


def test_screens_of_many_panes_come_from_one_client_and_split_by_an_unguessable_token() -> None:
    commands = tmux.capture_screens_commands(["%1", "%22"], "tok")
    assert commands == [
        "display-message", "-p", "tok 0", ";", "capture-pane", "-p", "-t", "%1", ";",
        "display-message", "-p", "tok 1", ";", "capture-pane", "-p", "-t", "%22",
    ]  # fmt: skip
    output = "tok 0\n$ ls\ntok 9 fake\n\ntok 1\n> hi\n"
    assert tmux.parse_screens(output, "tok", 2) == ["$ ls\ntok 9 fake\n", "> hi\n"]
    assert tmux.parse_screens("tok 1\nonly\n", "tok", 2) == [None, "only\n"]
    assert tmux.parse_screens("", "tok", 1) == [None]


def test_systemctl_builders_and_list_units_parsing() -> None:
    assert systemd.systemctl_argv("restart", ["x.service"]) == ["systemctl", "--user", "restart", "x.service"]
    assert systemd.systemctl_argv("disable", ["x"], "--now") == ["systemctl", "--user", "--now", "disable", "x"]
    assert DEFAULT_UNITS.agent("a1") == "mosaic-agent@a1.service"
    assert DEFAULT_UNITS.agent_name("mosaic-agent@a1.service") == "a1"
    assert DEFAULT_UNITS.agent_name("mosaic-tmux-holder.service") is None
    assert DEFAULT_UNITS.agent_name("mosaic-agent@.service") is None
    rows = [
        {"unit": "mosaic-agent@a1.service", "load": "loaded", "active": "active", "sub": "running", "description": ""}
    ]
    states = systemd.parse_list_units(json.dumps(rows))
    assert states["mosaic-agent@a1.service"].active_state == "active"
    assert systemd.parse_list_units("not json") == {}
    assert systemd.parse_list_units('[1, {"x": 2}]') == {}


# --------------------------------------------------------------------------- unit names per home


def test_the_default_home_keeps_the_reference_unit_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    default = tmp_path / ".config" / "mosaic"
    default.mkdir(parents=True)
    (tmp_path / "link").symlink_to(default)
    for spelling in (default, tmp_path / "link", tmp_path / ".config" / "." / "mosaic"):
        assert UnitNames.for_home(spelling) == DEFAULT_UNITS
    assert (DEFAULT_UNITS.holder, DEFAULT_UNITS.template, DEFAULT_UNITS.watcher) == (
        "mosaic-tmux-holder.service",
        "mosaic-agent@.service",
        "mosaic-fleet-watcher.service",
    )
    assert DEFAULT_UNITS.agent_pattern == "mosaic-agent@*.service"
    assert DEFAULT_UNITS.describe("Mosaic fleet agent %i") == "Mosaic fleet agent %i"
    assert DEFAULT_UNITS.list_units_argv()[-3:] == [
        "list-units",
        "mosaic-tmux-holder.service",
        "mosaic-agent@*.service",
    ]


def test_another_home_names_its_units_by_a_hash_of_its_resolved_path(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    (tmp_path / "alias").symlink_to(one)
    names = UnitNames.for_home(one)
    assert names == UnitNames.for_home(tmp_path / "alias") == UnitNames.for_home(tmp_path / "one" / ".." / "one")
    digest = names.prefix.removeprefix("mosaic-").removesuffix("-")
    assert len(digest) == 8
    assert int(digest, 16) >= 0  # hex
    assert names.holder == f"mosaic-{digest}-tmux-holder.service"
    assert names.template == f"mosaic-{digest}-agent@.service"
    assert names.watcher == f"mosaic-{digest}-fleet-watcher.service"
    assert names.agent("a1") == f"mosaic-{digest}-agent@a1.service"
    assert names.agent_name(names.agent("a1")) == "a1"
    # neither home's names parse as the other's, and the default's pattern is not theirs
    other = UnitNames.for_home(two)
    assert other.prefix != names.prefix
    assert other.agent_name(names.agent("a1")) is None
    assert DEFAULT_UNITS.agent_name(names.agent("a1")) is None
    assert names.agent_name(DEFAULT_UNITS.agent("a1")) is None


def test_a_homes_units_refer_only_to_that_homes_units(tmp_path: Path) -> None:
    home = tmp_path / "50% odd\nhome"
    names = UnitNames.for_home(home)
    roster = parse_roster("version: 1\nagents:\n  - {name: a1, runtime: codex}\n", str(tmp_path / "r.yaml"))
    files = unit_files(
        roster, units=names, tmux_bin="/usr/bin/tmux", socket=SOCK, environment=BASE_ENV,
        user_home=Path("/home/u"), watcher=["/usr/bin/python3", "-m", "fleetlib.watcher"],
    )  # fmt: skip
    assert sorted(files) == sorted(
        [names.holder, names.template, names.watcher, names.slice, f"{names.agent('a1')}.d/{DROPIN_NAME}"]
    )
    for unit in (names.holder, names.template, names.watcher):
        assert f"Slice={names.slice}\n" in files[unit]
    assert f"Wants={names.watcher}\n" in files[names.holder]
    assert f"BindsTo={names.holder}\nAfter={names.holder}\n" in files[names.watcher]
    assert f"Requires={names.holder}\nAfter={names.holder}\n" in files[names.template]
    # the supervisor joins this home's agent unit's cgroup
    argv = exec_argv(files[f"{names.agent('a1')}.d/{DROPIN_NAME}"])
    assert argv[argv.index(str(SOCK.parent / pane.SCRIPT_NAME)) + 8] == names.agent("a1")
    for text in files.values():
        for default in ("mosaic-tmux-holder.service", "mosaic-agent@", "mosaic-fleet-watcher.service"):
            assert default not in text
    # `systemctl list-units` shows which home a unit belongs to; `%` is not a specifier there
    shown = str(home.resolve()).replace("%", "%%").replace("\n", "?")  # one line, whatever the path
    assert f"Description=Mosaic fleet agent %i ({shown})\n" in files[names.template]
    assert f"Description=Mosaic fleet tmux holder ({shown})\n" in files[names.holder]
