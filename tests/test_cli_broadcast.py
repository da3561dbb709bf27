"""fleetlib.broadcast: one message to many agents, a result per agent, every one attempted."""

from __future__ import annotations

from dataclasses import dataclass, field

from fleetlib.broadcast import send_to
from fleetlib.errors import FleetError, FleetOperationError


@dataclass
class Runner:
    dry_run: bool = False


@dataclass
class StubMessenger:
    """Messenger.send's contract: returns on success, raises FleetError (2: not there) or
    FleetOperationError (1: not accepted, with the pane's last lines after a newline)."""

    runner: Runner = field(default_factory=Runner)
    sent: list[tuple[str, str, bool, float]] = field(default_factory=list)

    def send(self, name: str, message: str, *, verify: bool, timeout: float, answer: bool = False) -> str:
        self.sent.append((name, message, verify, timeout))
        if name == "gone":
            raise FleetError(f"agent {name!r} is not running")
        if name == "deaf":
            raise FleetOperationError(f"agent {name!r} did not accept the message within 2s; last lines:\n> hi\n$")
        return "ok"


def test_every_agent_is_attempted_and_each_failure_kept() -> None:
    messenger = StubMessenger()
    result = send_to(messenger, ["a", "gone", "deaf", "b"], "hi", verify=True, timeout=2.0)  # type: ignore[arg-type]
    assert [name for name, *_ in messenger.sent] == ["a", "gone", "deaf", "b"]
    assert [(o.name, o.action, o.verified, o.exit_code) for o in result.agents] == [
        ("a", "sent", True, 0),
        ("gone", "failed", False, 2),
        ("deaf", "failed", False, 1),
        ("b", "sent", True, 0),
    ]
    assert not result.ok
    deaf = result.agents[2]
    assert deaf.error == "agent 'deaf' did not accept the message within 2s; last lines:"
    assert deaf.output == "> hi\n$"
    data = result.to_json()
    assert set(data) == {"operation", "ok", "dry_run", "characters", "verify", "seconds", "agents"}
    assert (data["operation"], data["characters"], data["verify"]) == ("send", 2, True)
    assert all(
        set(a) == {"name", "action", "verified", "seconds", "error", "output", "exit_code"} for a in data["agents"]
    )


def test_dry_run_and_unverified_sends() -> None:
    dry = send_to(StubMessenger(Runner(dry_run=True)), ["a"], "x", verify=True, timeout=1.0)  # type: ignore[arg-type]
    assert (dry.agents[0].action, dry.agents[0].verified, dry.dry_run) == ("would send", False, True)
    blind = send_to(StubMessenger(), ["a"], "x", verify=False, timeout=1.0)  # type: ignore[arg-type]
    assert (blind.agents[0].action, blind.agents[0].verified) == ("sent", False)
