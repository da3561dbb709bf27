"""Pure builders: argv lists, unit-file text and output parsers, tested without running anything."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from fleetlib import systemd, tmux
from fleetlib.roster import Agent, parse_roster
from fleetlib.units import agent_dropin_text, agent_template_text, exec_line, holder_unit_text, quote_word, unit_files

SOCK = Path("/home/u/.config/mosaic/fleet/run/tmux.sock")


def systemd_unquote(line: str) -> list[str]:
    """Undo quote_word the way systemd reads an Exec line (for the words we emit)."""
    words = shlex.split(line.replace("\\;", "';'"))
    return [w.replace("%%", "%").replace("$$", "$") for w in words]


@pytest.mark.parametrize(
    "word",
    ["plain", "two words", "$HOME", "100%", 'say "hi"', "back\\slash", "a;b", ";", "", "tab\there", "#{window_name}"],
)
def test_quote_word_round_trips(word: str) -> None:
    quoted = quote_word(word)
    if word == ";":
        assert quoted == "\\;"
        return
    assert "%" not in quoted.replace("%%", "")
    assert "$" not in quoted.replace("$$", "")
    assert systemd_unquote(quoted.replace("\\t", "\t")) == [word]


def test_exec_line_prefix_and_quoting() -> None:
    assert (
        exec_line("ExecStop", ["/usr/bin/tmux", "kill-server"], ignore_failure=True)
        == "ExecStop=-/usr/bin/tmux kill-server"
    )
    assert exec_line("ExecStart", ["/bin/echo", "a b", "50%"]) == 'ExecStart=/bin/echo "a b" "50%%"'


def test_agent_template_requires_and_orders_after_the_holder() -> None:
    text = agent_template_text("/usr/bin/tmux", SOCK, "roster.yaml")
    assert "Requires=mosaic-tmux-holder.service\n" in text
    assert "After=mosaic-tmux-holder.service\n" in text
    assert "Restart=always\n" in text
    assert "StartLimitBurst=100\n" in text
    assert "Type=oneshot" not in text
    assert 'ExecStart=/usr/bin/tmux -S /home/u/.config/mosaic/fleet/run/tmux.sock wait-for "fleet-agent-%i"' in text
    assert (
        'ExecStopPost=-/usr/bin/tmux -S /home/u/.config/mosaic/fleet/run/tmux.sock kill-window -t "=fleet:=%i"' in text
    )
    assert "WantedBy=default.target" in text


def test_holder_unit_runs_no_login_shell_and_restarts() -> None:
    text = holder_unit_text("/usr/bin/tmux", SOCK, "/opt/bin:/usr/bin", "roster.yaml")
    assert "Type=forking\n" in text
    assert "-f /dev/null new-session -d -s fleet -n _holder -- sleep infinity" in text
    assert "Environment=PATH=/opt/bin:/usr/bin\n" in text
    assert "Restart=always\n" in text


def test_agent_dropin_carries_command_args_cwd_and_env_literally() -> None:
    agent = Agent(name="a1", runtime="custom", command=("my cli", "$(rm -rf /)"), args=("--x", "50%"), env={"K": "v v"})
    line = agent_dropin_text(agent, "/usr/bin/tmux", SOCK, cwd="/work dir", source="r.yaml").splitlines()[-1]
    assert line.startswith("ExecStartPre=/usr/bin/tmux -S ")
    argv = systemd_unquote(line.removeprefix("ExecStartPre="))
    assert argv[argv.index("-c") + 1] == "/work dir"
    assert argv[argv.index("-e") + 1] == "K=v v"
    assert argv[-4:] == ["my cli", "$(rm -rf /)", "--x", "50%"]
    assert argv[argv.index("new-window") - 1] == ";"


def test_unit_files_one_dropin_per_agent_and_resolved_cwd(tmp_path: Path) -> None:
    text = "version: 1\nagents:\n  - {name: a, runtime: codex, cwd: ~/src}\n  - {name: b, runtime: claude, cwd: rel}\n"
    roster = parse_roster(text, str(tmp_path / "roster.yaml"))
    files = unit_files(roster, tmux_bin="/usr/bin/tmux", socket=SOCK, path_env="/usr/bin", user_home=Path("/home/u"))
    assert sorted(files) == [
        "mosaic-agent@.service",
        "mosaic-agent@a.service.d/50-fleet-roster.conf",
        "mosaic-agent@b.service.d/50-fleet-roster.conf",
        "mosaic-tmux-holder.service",
    ]
    assert " -c /home/u/src " in files["mosaic-agent@a.service.d/50-fleet-roster.conf"]
    assert f" -c {tmp_path}/rel " in files["mosaic-agent@b.service.d/50-fleet-roster.conf"]


def test_tmux_targets_are_exact() -> None:
    assert tmux.window_target("a1") == "=fleet:=a1"
    assert tmux.kill_window_argv("tmux", SOCK, "a1")[-2:] == ["-t", "=fleet:=a1"]
    assert tmux.list_windows_argv("tmux", SOCK)[:6] == ["tmux", "-S", str(SOCK), "list-windows", "-t", "=fleet:"]


def test_systemd_panes_run_the_agent_itself_and_the_holder_hook_signals_its_exit() -> None:
    argv = tmux.new_window_argv("/usr/bin/tmux", SOCK, "a1", ["codex", "a;"], cwd=None, env={})
    assert argv[-3:] == ["--", "codex", "a\\;"]  # trailing ';' escaped for tmux's parser
    holder = tmux.new_session_argv("/usr/bin/tmux", SOCK)
    assert "pane-died" in holder
    assert (
        holder[holder.index("pane-died") + 1] == "run-shell -C 'wait-for -S fleet-agent-#{window_name}' ; kill-window"
    )
    assert holder[holder.index("-wg") - 1 : holder.index("-wg") + 3] == ["set-option", "-wg", "remain-on-exit", "on"]


def test_tmux_backend_pane_wrapper_records_the_exit_status() -> None:
    argv = tmux.agent_window_commands(
        "a1",
        ["codex"],
        cwd=None,
        env={},
        tmux="/usr/bin/tmux",
        socket=Path("/a b/tmux.sock"),
        on_exit=tmux.record_exit("a1"),
    )
    script = argv[argv.index("-c") + 1]
    assert script == (
        '"$@"; status=$?; /usr/bin/tmux -S \'/a b/tmux.sock\' set-option -w -t =fleet:=a1 @fleet-exit "$status"; exit $status'
    )
    assert argv[-2:] == ["fleet-agent-a1", "codex"]


def test_parse_windows_with_start_counters() -> None:
    output = "_holder\t10\t0\t\t\na1\t11\t0\t\t\na10\t12\t1\t\t7\n@fleet-starts-a1 3\n@fleet-starts-a10 1\nstatus on\n"
    windows = tmux.parse_windows(output)
    assert windows["a1"] == tmux.Window("a1", 11, dead=False, starts=3)
    assert windows["a10"].dead
    assert windows["a10"].dead_status == 7
    assert windows["_holder"].starts is None


def test_systemctl_builders_and_list_units_parsing() -> None:
    assert systemd.systemctl_argv("restart", ["x.service"]) == ["systemctl", "--user", "restart", "x.service"]
    assert systemd.systemctl_argv("disable", ["x"], "--now") == ["systemctl", "--user", "--now", "disable", "x"]
    assert systemd.agent_unit("a1") == "mosaic-agent@a1.service"
    assert systemd.agent_name("mosaic-agent@a1.service") == "a1"
    assert systemd.agent_name("mosaic-tmux-holder.service") is None
    rows = [
        {"unit": "mosaic-agent@a1.service", "load": "loaded", "active": "active", "sub": "running", "description": ""}
    ]
    states = systemd.parse_list_units(json.dumps(rows))
    assert states["mosaic-agent@a1.service"].active_state == "active"
    assert systemd.parse_list_units("not json") == {}
