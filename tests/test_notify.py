"""Notifications that say what happened: the roster's ``notify`` Apprise URLs reach a
target the test controls (a local HTTP server behind Apprise's ``json://``), naming the
agent and "needs input" or "done"; a bad URL is one line at load; a URL's password is
never shown (status, errors, the watcher's output).

The witness is the HTTP server itself: what Apprise posted to it (title, message, the
basic-auth password it carried), not anything the fleet says about itself.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fleetlib import notify, watcher
from fleetlib.roster import parse_roster
from tests.conftest import InvRunner, eventually
from tests.test_activity_fleet import Fleet, fleet  # noqa: F401 - its fixture: both backends

PASSWORD = "hunter2-s3cret"  # noqa: S105 - what must never be shown


class Target:
    """A local HTTP server standing in for a phone: it records every JSON notification
    Apprise posts; ``/fail`` answers 500 (a service that refuses)."""

    def __init__(self) -> None:
        received: list[dict[str, str]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                auth = base64.b64decode(self.headers.get("Authorization", "Basic ").split()[-1]).decode()
                received.append({"path": self.path, "auth": auth, "title": data["title"], "body": data["message"]})
                self.send_response(500 if self.path.startswith("/fail") else 200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str = "") -> str:
        return f"json://fleet:{PASSWORD}@127.0.0.1:{self.port}/{path}"

    def titles(self, path: str = "/") -> list[str]:
        return [item["title"] for item in self.received if item["path"] == path]


@pytest.fixture
def target() -> Iterator[Target]:
    made = Target()
    yield made
    made.server.shutdown()
    made.server.server_close()


# --------------------------------------------------------------------------- what is told, how it reads


@pytest.mark.parametrize(
    ("old", "new", "event"),
    [
        ("working", "waiting", "needs input"),
        ("idle", "waiting", "needs input"),
        ("working", "idle", "done"),
        (None, "idle", None),  # came up: nothing was done
        ("waiting", "idle", None),  # a question went away without a turn being seen
        ("idle", "working", None),
        ("working", "exited", "exited"),
        (None, "failed", "failed"),
    ],
)
def test_which_transitions_notify(old: str | None, new: str, event: str | None) -> None:
    assert notify.event_of(old, new) == event


def test_the_body_names_agent_host_states_and_keeps_the_end_of_long_text() -> None:
    screen = "\n".join(f"line {i}" for i in range(40)) + "\n\n   \n"
    body = notify.body_of("coder3", "box", "working", "waiting", "", screen)
    assert body.splitlines()[0] == "coder3 on box: working -> waiting"
    assert body.splitlines()[1:] == [f"line {i}" for i in range(32, 40)]  # the last non-blank lines
    long = notify.body_of("coder3", "box", "working", "idle", "x" * 5000 + " the end", screen)
    assert len(long) == notify.BODY_MAX
    assert long.endswith("the end")
    assert "line" not in long  # a message replaces the screen
    assert notify.truncate_message("y" * 10_000) == "…" + "y" * 3999
    assert notify.truncate_message(None) == ""


# --------------------------------------------------------------------------- the roster


def test_notify_urls_load_as_a_string_or_a_list() -> None:
    text = "version: 1\nagents:\n  - name: a\n    runtime: shell\n    notify: {}\n"
    assert parse_roster(text.format("ntfy://topic")).agents[0].notify == ("ntfy://topic",)
    both = parse_roster(text.format("[ntfy://topic, 'json://u:p@host/']")).agents[0]
    assert both.notify == ("ntfy://topic", "json://u:p@host/")
    assert both.to_dict()["notify"] == ["ntfy://topic", "json://u:p@host/"]  # pushed to hosts whole
    assert parse_roster(text.format("ntfy://topic").replace("    notify: ntfy://topic\n", "")).agents[0].notify == ()


@pytest.mark.parametrize(
    ("value", "field", "said"),
    [
        (f"'nosuch://fleet:{PASSWORD}@host/'", "agents[1].notify", "nosuch://… is not a notification URL Apprise"),
        (f"[ntfy://ok, 'tgram://{PASSWORD}']", "agents[1].notify[1]", "tgram://… is not a notification URL Apprise"),
        ("''", "agents[1].notify", "is empty"),
        ("[ntfy://ok, 3]", "agents[1].notify[1]", "must be a string"),
    ],
)
def test_a_bad_notify_url_is_one_line_naming_agent_and_key_never_the_secret(
    inv: InvRunner, home: Path, value: str, field: str, said: str
) -> None:
    roster = home / "fleet" / "roster.yaml"
    roster.parent.mkdir(parents=True)
    roster.write_text(
        f"version: 1\nagents:\n  - name: a\n    runtime: shell\n  - name: coder3\n    runtime: shell\n"
        f"    notify: {value}\n"
    )
    result = inv("roster.validate")
    assert result.returncode == 2, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {roster}:7: {field}: "), lines[0]
    assert said in lines[0]
    if "Apprise" in said:
        assert "agent 'coder3'" in lines[0]
    assert PASSWORD not in result.stderr + result.stdout


def test_roster_show_masks_the_urls(inv: InvRunner, home: Path) -> None:
    roster = home / "fleet" / "roster.yaml"
    roster.parent.mkdir(parents=True)
    roster.write_text(f"version: 1\nagents:\n  - name: a\n    runtime: shell\n    notify: 'json://u:{PASSWORD}@h/'\n")
    shown = inv("roster.show", "--name", "a", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["notify"] == ["json://…"]
    assert PASSWORD not in inv("roster.show", "--name", "a").stdout


# --------------------------------------------------------------------------- the watcher's side


def test_the_sender_gets_the_message_the_hooks_seam_gives_and_on_state_change_too(
    tmp_path: Path, target: Target
) -> None:
    # The watcher's message_of is fleetlib.hooks.last_message (tested with real hook records in
    # test_hooks.py); here it is injected, so what it returns is what FLEET_MESSAGE and the
    # body carry.
    witness = tmp_path / "env.json"
    record = f"import json, os; open({str(witness)!r}, 'w').write(json.dumps(dict(os.environ)))"
    config = {
        "version": watcher.CONFIG_VERSION,
        "tmux": "tmux",
        "socket": str(tmp_path / "sock"),
        "home": str(tmp_path),
        "agents": [
            {
                "name": "a",
                "runtime": "claude",
                "on_state_change": [sys.executable, "-c", record],
                "notify": [target.url()],
            }
        ],
    }
    (tmp_path / "watcher.json").write_text(json.dumps(config))
    seen = watcher.Watcher(tmp_path, message_of=lambda _run_dir, name: f"{name}: all 12 tests pass")
    seen._reload()
    assert seen.config is not None
    seen._notify(seen.config, watcher.Notice("a", "working", "exited", "the screen\n"))
    eventually(lambda: target.titles() == ["a exited"] and witness.exists(), "both told", 30)
    assert target.received[0]["body"].endswith("\na: all 12 tests pass")
    told = json.loads(witness.read_text())
    assert told["FLEET_MESSAGE"] == "a: all 12 tests pass"
    assert told["FLEET_SCREEN"] == "the screen"
    assert notify.URLS_ENV not in told  # the URLs go to the sender only
    assert all(PASSWORD not in arg for arg in _argvs_of(seen))  # never on a command line
    eventually(lambda: (seen._reap(), seen.running)[1] == [], "the notifications ended", 30)


def _argvs_of(seen: watcher.Watcher) -> list[str]:
    return [arg for n in seen.running if n.proc is not None for arg in map(str, n.proc.args)]


# --------------------------------------------------------------------------- end to end, a real fleet


@pytest.mark.tmux
def test_a_phone_hears_done_and_needs_input_and_never_sees_the_password(fleet: Fleet, target: Target) -> None:  # noqa: F811
    fleet.roster({"cl": "claude:claude_like.py"}, notify=False)
    roster = fleet.home / "fleet" / "roster.yaml"
    roster.write_text(roster.read_text() + f"    notify: ['{target.url()}', '{target.url('fail')}']\n")
    if fleet.backend == "systemd":
        fleet.ok("fleet.install")
    fleet.ok("fleet.start")
    fleet.ok("fleet.wait", "--agent", "cl", "--for", "idle", "--timeout", "60")

    fleet.ok("fleet.send", "--agent", "cl", "--message", "work 3")
    fleet.ok("fleet.wait", "--agent", "cl", "--for", "working", "--timeout", "30")
    eventually(lambda: "cl done" in target.titles(), f"'cl done' at the target (got {target.received})")
    assert "cl needs input" not in target.titles()
    fleet.ok("fleet.send", "--agent", "cl", "--message", "ask")
    eventually(lambda: "cl needs input" in target.titles(), "'cl needs input' at the target")

    asked = next(item for item in target.received if item["title"] == "cl needs input")
    assert asked["body"].startswith("cl on ")
    assert " -> waiting\n" in asked["body"]
    assert "Do you want to proceed?" in asked["body"]  # the screen's last lines, no message known
    assert asked["auth"] == f"fleet:{PASSWORD}"  # the URL arrived whole at the sender
    status = fleet.inv("fleet.status", "--json")
    for text in (status.stdout, status.stderr, fleet.inv("fleet.status").stdout):
        assert PASSWORD not in text
    assert all(PASSWORD not in _cmdline(pid) for pid in _pids())  # no process carries it on argv
    if fleet.backend == "tmux":  # (under systemd the watcher's output is the journal)
        # The refusing service is said in the watcher's output, its URL masked.
        def said() -> str:
            return fleet.tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", "=fleet:=_watcher").stdout

        eventually(lambda: "not delivered" in said(), "the failed delivery in the watcher's output")
        assert "json://fleet:****@127.0.0.1" in said()
        assert PASSWORD not in said()
    fleet.ok("fleet.stop")


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


@pytest.mark.parametrize(
    ("urls", "read"),
    [
        (["ntfy://a", "json://u:p@h/"], ("ntfy://a", "json://u:p@h/")),
        (None, ()),  # a file written before notify existed
        ("ntfy://a", None),  # a string, not a list
        (["ntfy://a\njson://evil/"], None),  # would smuggle a second URL into the sender's list
        ([""], None),
    ],
)
def test_watcher_json_notify_is_read_back_or_refused_whole(tmp_path: Path, urls: object, read: object) -> None:
    agent: dict[str, object] = {"name": "a", "runtime": "claude"}
    if urls is not None:
        agent["notify"] = urls
    config = {"version": watcher.CONFIG_VERSION, "tmux": "tmux", "socket": "/s", "home": "/h", "agents": [agent]}
    (tmp_path / "watcher.json").write_text(json.dumps(config))
    loaded = watcher.read_config(tmp_path)
    assert (loaded.agents["a"].notify if loaded is not None else None) == read
