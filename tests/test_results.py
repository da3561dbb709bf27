"""Result types as data: every ``from_json`` rebuilds what ``to_json`` wrote (what another
host answers), and refuses an answer of another shape with a ValueError."""

from __future__ import annotations

from typing import Any

import pytest

from fleetlib.results import (
    AgentOutcome,
    Bootstrapped,
    Check,
    Checks,
    HostResult,
    HostsResult,
    InstallResult,
    OperationResult,
    Screen,
    SendOutcome,
    SendResult,
    StatusReport,
    TopRows,
    TranscriptText,
    Trusted,
    WaitReport,
    WaitRow,
)

OPERATION = OperationResult(
    "restart",
    "systemd",
    [AgentOutcome("a1", "restarted", 10, 11, 1.25), AgentOutcome("a2", "failed", 12, None, 3.0, "gone", 1, "out")],
    4.5,
    holder="unchanged",
    commands=[["systemctl", "--user", "restart", "x"]],
)
SAMPLES: list[Any] = [
    OPERATION,
    InstallResult("install", "tmux", written=["/a"], notes=["n"], stopped=["old"]),
    SendResult(5, True, False, 0.5, [SendOutcome("a1", "sent", True, 0.2), SendOutcome("a2", "failed", error="x")]),
    WaitReport("idle", False, 2.0, [WaitRow("a1", "idle", True), WaitRow("a2", "working", False)]),
    StatusReport(False, [{"name": "a1", "state": "failed", "pid": None}]),
    Checks([Check("roster", True, "ok"), Check("tmux", False, "missing", "install tmux")]),
    Bootstrapped("fleet 0.1.0", ["fleet-0.1.0-py3-none-any.whl"]),
    Trusted(["recorded ssh-ed25519 SHA256:x for h1"]),
    TopRows([{"name": "a1", "cpu_percent": 1.5}]),
    Screen("a1", "\x1b[31mred\x1b[0m <b>\n", 80, 24, "h2"),
    TranscriptText("a1", "line one\nline two", "h2"),
]


@pytest.mark.parametrize("result", SAMPLES, ids=lambda result: type(result).__name__)
def test_from_json_rebuilds_what_to_json_wrote(result: Any) -> None:
    rebuilt = type(result).from_json(result.to_json())
    assert rebuilt.to_json() == result.to_json()


def test_hosts_result_round_trips_with_typed_answers() -> None:
    hosts = HostsResult(
        "restart",
        [HostResult.answered("h1", OPERATION, 4.5), HostResult("h2", False, 10.0, error="no SSH answer within 10s")],
        12.0,
    )
    rebuilt = HostsResult.from_json(hosts.to_json(), OperationResult.from_json)
    assert rebuilt.to_json() == hosts.to_json()
    assert [h.host for h in rebuilt.failed] == ["h1", "h2"]  # h1 answered, but an agent failed
    assert rebuilt.answers()[0][1].failures[0].name == "a2"
    assert [row["host"] for row in rebuilt.agent_rows()] == ["h1", "h1"]


@pytest.mark.parametrize(
    ("kind", "answer"),
    [
        (OperationResult, []),
        (OperationResult, {"operation": "restart", "agents": [{"name": "a1", "action": "exploded"}]}),
        (OperationResult, {"operation": "restart", "agents": [], "holder": "exploded"}),
        (InstallResult, {"operation": "install", "backend": "tmux", "written": [1]}),
        (SendResult, {"characters": "5"}),
        (WaitReport, {"for": "idle", "ok": "yes"}),
        (StatusReport, {"all_up": True, "agents": [{"state": "idle"}]}),
        (Checks, {"checks": []}),
        (TopRows, [{"cpu_percent": 1}]),
        (Screen, {"agent": "a1", "host": "h1", "text": "x", "columns": 0, "rows": 24}),
        (Screen, {"agent": "a1", "host": "h1", "text": "x", "columns": 80, "rows": 10**9}),
        (Screen, {"agent": "a1", "host": "h1", "text": None, "columns": 80, "rows": 24}),
        (TranscriptText, {"agent": "a1", "text": "x"}),
    ],
)
def test_from_json_refuses_another_shape(kind: Any, answer: Any) -> None:
    with pytest.raises(ValueError, match=r"\w"):  # any one-line reason
        kind.from_json(answer)


def test_an_action_is_one_of_the_closed_set_and_a_dry_run_says_would() -> None:
    with pytest.raises(ValueError, match=r"^key 'action': unknown action 'exploded' \(expected one of: started, "):
        AgentOutcome.from_json({"name": "a1", "action": "exploded"})
    done = OperationResult(
        "restart", "tmux", [AgentOutcome("a", "restarted"), AgentOutcome("b", "unchanged")], 1.5, holder="stopped"
    )
    dry = done.as_dry_run([["tmux", "kill-server"]])
    assert ([o.action for o in dry.agents], dry.holder, dry.dry_run) == (
        ["would restart", "unchanged"],
        "would stop",
        True,
    )
    assert (dry.seconds, dry.commands) == (0.0, [["tmux", "kill-server"]])
    assert OperationResult.from_json(dry.to_json()).to_json() == dry.to_json()
