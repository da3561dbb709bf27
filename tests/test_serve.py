"""`fleet serve` is safe by default (issue 24): what it serves without the token, to
another origin, and where it refuses to listen; the pure parts (the bind address, the token
file, the rate limit, the screen as HTML) with plain asserts.

The server is the real command (`python -m fleetctl serve --json`), on a free loopback
port, in front of a real tmux fleet of shell agents; the witnesses that nothing changed are
the agent's pid and its pane, read with tmux directly.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleetlib import procs
from fleetlib.errors import FleetError
from fleetlib.fleet import FleetOptions, LocalFleet
from fleetlib.paths import FleetPaths
from fleetlib.results import HostResult, HostsResult, StatusReport
from fleetlib.roster import load_roster
from fleetlib.serving import check_serve, remove_record, write_record
from fleetweb.fleet import status_rows
from fleetweb.guard import RateLimit, check_exposure, parse_bind, read_token_file, same_origin
from fleetweb.screen import screen_html
from tests.conftest import REPO, FleetEnv, eventually
from tests.test_fleet_tmux import TmuxEnv

SERVER_START_S = 60.0


@dataclass
class Server:
    """A running `fleet serve`: its process, its address and token."""

    process: subprocess.Popen[str]
    url: str  # with ?token=
    base: str
    token: str

    def request(
        self, path: str, *, method: str = "GET", headers: dict[str, str] | None = None, body: object = None
    ) -> tuple[int, str, dict[str, str]]:
        return http_request(self.base + path, method=method, headers=headers, body=body)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_: object, **__: object) -> None:
        return None


def http_request(
    url: str, *, method: str = "GET", headers: dict[str, str] | None = None, body: object = None
) -> tuple[int, str, dict[str, str]]:
    """(status, body, headers) of one request to a server of these tests (redirects not followed)."""
    data = json.dumps(body).encode() if body is not None else (b"{}" if method == "POST" else None)
    asked = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310 (http://)
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(asked, timeout=30) as answer:
            return answer.status, answer.read().decode(), dict(answer.headers)
    except urllib.error.HTTPError as failed:
        return failed.code, failed.read().decode(), dict(failed.headers)


def start_server(env: dict[str, str], *args: str) -> Server:
    """`fleet serve --json --bind 127.0.0.1:0 ARGS`, once it said where it listens."""
    log = tempfile.TemporaryFile()  # noqa: SIM115 (the server writes to it until it stops)
    process = subprocess.Popen(
        [sys.executable, "-m", "fleetctl", "serve", "--json", "--bind", "127.0.0.1:0", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], SERVER_START_S)
    line = process.stdout.readline() if ready else ""
    if not line:
        process.kill()
        process.communicate()
        log.seek(0)
        raise AssertionError(f"fleet serve said nothing: {log.read().decode(errors='replace')}")
    log.close()  # the server keeps its own descriptor of the file
    said = json.loads(line)
    assert said["pid"] == process.pid
    url: str = said["url"]
    base, _, token = url.partition("/?token=")
    return Server(process, url, base, token)


def serve_refused(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`fleet serve ARGS` expected to refuse at start (bounded, should it serve instead)."""
    return subprocess.run(
        [sys.executable, "-m", "fleetctl", "serve", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class ServeEnv(TmuxEnv):
    def pane(self, name: str) -> str:
        socket = self.home / "fleet" / "run" / "tmux.sock"
        argv = ["tmux", "-S", str(socket), "capture-pane", "-p", "-J", "-S", "-200", "-t", f"=fleet:={name}"]
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout

    def pid(self, name: str) -> object:
        return self.status()[1][name]["pid"]


def shell_fleet(root: Path, names: list[str], extra: str = "") -> ServeEnv:
    """A started tmux fleet of interactive shells (and ``extra`` roster entries)."""
    env = ServeEnv(root)
    roster = env.home / "fleet" / "roster.yaml"
    roster.parent.mkdir(parents=True)
    roster.write_text(
        "version: 1\nagents:\n" + "".join(f"  - name: {name}\n    runtime: shell\n" for name in names) + extra
    )
    env.inv_ok("fleet.start")
    for name in names:
        env.inv_ok("fleet.wait", "--agent", name, "--for", "idle", "--timeout", "60")
    return env


def stop_fleet(env: TmuxEnv) -> None:
    env.inv("fleet.stop")
    subprocess.run(["tmux", "-S", str(env.home / "fleet" / "run" / "tmux.sock"), "kill-server"], check=False)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeEnv, Server]]:
    env = shell_fleet(tmp_path_factory.mktemp("serve"), ["s1"])
    server = start_server(env.env)
    yield env, server
    server.stop()
    stop_fleet(env)


# --------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("raw", "host", "port", "loopback"),
    [
        ("127.0.0.1:8470", "127.0.0.1", 8470, True),
        ("localhost:0", "localhost", 0, True),
        ("[::1]:9000", "::1", 9000, True),
        ("0.0.0.0:8470", "0.0.0.0", 8470, False),  # noqa: S104 (parsed, never bound)
        ("example.org:80", "example.org", 80, False),
    ],
)
def test_bind_addresses(raw: str, host: str, port: int, loopback: bool) -> None:
    bind = parse_bind(raw)
    assert (bind.host, bind.port, bind.loopback) == (host, port, loopback)


@pytest.mark.parametrize("raw", ["8470", "host:", ":8470", "host:port", "host:70000"])
def test_a_bad_bind_address_is_one_line_naming_the_flag(raw: str) -> None:
    with pytest.raises(FleetError, match="--bind"):
        parse_bind(raw)


def test_beyond_loopback_needs_a_token_file_and_says_tls() -> None:
    with pytest.raises(FleetError, match=r"--token-file.*TLS"):
        check_exposure(parse_bind("0.0.0.0:8470"), "")
    check_exposure(parse_bind("0.0.0.0:8470"), "/some/file")
    check_exposure(parse_bind("127.0.0.1:8470"), "")


def test_a_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("x" * 40 + "\n")
    path.chmod(0o644)
    with pytest.raises(FleetError, match="chmod 600"):
        read_token_file(str(path))
    path.chmod(0o600)
    assert read_token_file(str(path)) == "x" * 40
    path.write_text("short\n")
    with pytest.raises(FleetError, match="at least"):
        read_token_file(str(path))


@pytest.mark.parametrize(
    ("headers", "by_cookie", "ok"),
    [
        ({"host": "h:1", "origin": "http://h:1", "sec-fetch-site": "same-origin"}, True, True),
        ({"host": "h:1", "origin": "https://h:1"}, True, True),  # a TLS proxy in front
        ({"host": "h:1", "origin": "http://evil.example"}, True, False),
        ({"host": "h:1", "sec-fetch-site": "cross-site"}, True, False),
        ({"host": "h:1", "sec-fetch-site": "same-site"}, True, False),
        ({"host": "h:1"}, True, False),  # the cookie alone proves nothing
        ({"host": "h:1"}, False, True),  # a script with the bearer header
    ],
)
def test_same_origin(headers: dict[str, str], by_cookie: bool, ok: bool) -> None:
    assert same_origin(headers, by_cookie) is ok


def test_the_rate_limit_is_a_sliding_window() -> None:
    now = [0.0]
    limit = RateLimit(limit=3, window=10.0, clock=lambda: now[0])
    assert [limit.allow() for _ in range(4)] == [True, True, True, False]
    now[0] = 9.9
    assert not limit.allow()
    now[0] = 10.0
    assert limit.allow()


def test_the_screen_is_escaped_and_keeps_its_colours() -> None:
    shown = screen_html('\x1b[31mred\x1b[0m <script>alert("x")</script> &amp;\n\x1b[38;2;1;2;3mrgb\n', 80, 24)
    assert "<script>" not in shown
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp;amp;" in shown
    assert '<span class="fg-red">red</span>' in shown
    assert 'style="color:#010203"' in shown


@dataclass
class _CountingFleet:
    """What the hub asks of a WebFleet, counting the whole reads."""

    witnessed: str | None
    reads: int = 0

    def witness(self) -> str | None:
        return self.witnessed

    def settling(self) -> bool:
        return False

    def cards(self) -> list[dict[str, str]]:
        self.reads += 1
        return [{"name": "a", "read": str(self.reads)}]


@pytest.mark.parametrize(("witnessed", "most"), [("the same listing", 1), (None, 4)])
def test_the_hub_reads_the_whole_status_only_when_the_witness_moves_or_every_blind_refresh(
    witnessed: str | None, most: int
) -> None:
    """Several hosts have no witness: reading every host's status (an SSH connection and a
    remote `fleet status` each) at every 0.5 s poll kept a core of each host busy."""
    import asyncio

    from fleetweb.app import Hub

    fleet = _CountingFleet(witnessed)

    async def listen_for(seconds: float) -> None:
        hub = Hub(fleet, poll=0.01, blind_refresh=0.25)  # type: ignore[arg-type]  # a stand-in WebFleet

        async def consume() -> None:
            async for _ in hub.listen():
                pass

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(consume(), seconds)
        hub.closing.set()

    asyncio.run(listen_for(0.6))  # 60 polls
    assert 1 <= fleet.reads <= most, fleet.reads


def test_the_agents_of_a_host_that_did_not_answer_are_cards_in_state_unknown(tmp_path: Path) -> None:
    roster = tmp_path / "roster.yaml"
    roster.write_text(
        "version: 1\nhosts:\n  h1: {ssh: u@h1.invalid}\n  h2: {ssh: u@h2.invalid}\nagents:\n"
        "  - {name: a1, runtime: shell, host: h1}\n  - {name: b1, runtime: shell, host: h2}\n"
        "  - {name: b2, runtime: shell, host: h2}\n"
    )
    answered = StatusReport(True, [{"name": "a1", "state": "idle", "pid": 7, "window": "a1"}])
    result = HostsResult(
        "status", [HostResult.answered("h1", answered, 0.1), HostResult("h2", False, 10.0, error="no SSH answer")]
    )
    rows = status_rows(result, load_roster(roster))
    assert [(row["host"], row["name"], row["state"]) for row in rows] == [
        ("h1", "a1", "idle"),
        ("h2", "b1", "unknown"),
        ("h2", "b2", "unknown"),
    ]
    assert rows[1]["reason"] == "h2: no SSH answer"


# --------------------------------------------------------------------------- the server


ROUTES = [
    ("GET", "/"),
    ("GET", "/?token=wrong"),
    ("GET", "/static/app.js"),
    ("GET", "/api/agents"),
    ("GET", "/api/events"),
    ("GET", "/api/agents/s1/screen"),
    ("GET", "/api/agents/s1/transcript"),
    ("GET", "/no/such/route"),
    ("POST", "/api/agents/s1/send"),
    ("POST", "/api/agents/s1/restart"),
    ("POST", "/api/agents/s1/stop"),
    ("POST", "/api/fleet/restart"),
]


def test_without_the_token_every_route_is_401_and_nothing_changes(served: tuple[ServeEnv, Server]) -> None:
    env, server = served
    before = env.pid("s1")
    for wrong in ({}, {"Authorization": "Bearer " + "x" * 43}, {"Cookie": "fleet_token=nope"}):
        for method, path in ROUTES:
            body = {"message": "echo LEAKED-$((1+1))"} if path.endswith("/send") else None
            status, text, headers = server.request(path, method=method, headers=wrong, body=body)
            assert status == 401, (method, path, wrong, status, text)
            assert server.token not in text
            assert "set-cookie" not in {key.lower() for key in headers}
    assert env.pid("s1") == before
    assert "LEAKED-2" not in env.pane("s1")
    assert env.status()[1]["s1"]["restarts"] == 0


def test_the_token_is_kept_0600_in_the_run_dir(served: tuple[ServeEnv, Server]) -> None:
    env, server = served
    path = env.home / "fleet" / "run" / "serve.token"
    assert path.read_text().strip() == server.token
    assert path.stat().st_mode & 0o777 == 0o600


def test_the_address_sets_an_httponly_strict_cookie_once(served: tuple[ServeEnv, Server]) -> None:
    _, server = served
    status, _, headers = server.request("/?token=" + server.token)
    assert status == 303
    assert headers["location"] == "/"
    cookie = headers["set-cookie"]
    assert f"fleet_token={server.token}" in cookie
    assert "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower()
    status, text, headers = server.request("/", headers={"Cookie": f"fleet_token={server.token}"})
    assert status == 200
    assert "/static/app.js" in text
    assert "frame-ancestors 'none'" in headers["content-security-policy"]


def test_a_cross_origin_post_is_refused_and_changes_nothing(served: tuple[ServeEnv, Server]) -> None:
    env, server = served
    before = env.pid("s1")
    cookie = {"Cookie": f"fleet_token={server.token}"}
    for other in (
        {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://evil.example"},
        {"Sec-Fetch-Site": "same-site"},
        {},  # the cookie alone: a form another page posts
    ):
        for path in ("/api/agents/s1/send", "/api/agents/s1/restart", "/api/fleet/restart"):
            body = {"message": "echo CSRF-$((1+1))"} if path.endswith("/send") else None
            status, text, _ = server.request(path, method="POST", headers={**cookie, **other}, body=body)
            assert status == 403, (path, other, status, text)
    assert env.pid("s1") == before
    assert "CSRF-2" not in env.pane("s1")


def test_a_script_with_the_bearer_token_sends_as_the_cli_says(served: tuple[ServeEnv, Server]) -> None:
    env, server = served
    auth = {"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"}
    status, text, _ = server.request(
        "/api/agents/s1/send", method="POST", headers=auth, body={"message": "echo BEARER-$((1+1))"}
    )
    assert status == 200, text
    said = json.loads(text)
    assert said["ok"], said
    assert said["lines"] == [f"sent {len('echo BEARER-$((1+1))')} characters to s1: accepted"]
    assert "BEARER-2" in env.pane("s1")
    status, text, _ = server.request("/api/agents/nobody/send", method="POST", headers=auth, body={"message": "x"})
    assert json.loads(text)["error"].startswith("error: ")
    env.inv_ok("fleet.wait", "--agent", "s1", "--for", "idle", "--timeout", "60")


def test_beyond_loopback_without_a_token_file_is_refused_at_start(served: tuple[ServeEnv, Server]) -> None:
    env, _ = served
    done = serve_refused(env.env, "--bind", "0.0.0.0:0")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: --bind 0.0.0.0:0")
    assert "--token-file" in lines[0]
    assert "TLS" in lines[0]


def test_listing_the_tasks_never_loads_the_web_server(served: tuple[ServeEnv, Server]) -> None:
    env, _ = served
    probe = "import sys, fleetctl.namespaces; print(sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn', 'fleetweb')))"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO,
        env={**env.env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "[]"
    assert os.path.exists(REPO / "fleetweb" / "static" / "index.html")


def test_the_witness_stays_still_across_watcher_ticks_and_moves_on_a_change(served: tuple[ServeEnv, Server]) -> None:
    """What lets an idle page cost almost nothing (issue 24's cost): the page reads the
    whole status only when the fleet's witness moves; the watcher ticking is no change."""
    env, _ = served
    env.inv_ok("fleet.wait", "--agent", "s1", "--for", "idle", "--timeout", "60")
    paths = FleetPaths.resolve(env.home)
    fleet = LocalFleet(paths, load_roster(paths.roster), FleetOptions(backend="tmux"))
    tick = ["tmux", "-S", str(paths.tmux_socket), "show-options", "-gv", "@fleet-watcher-tick"]

    def ticked() -> str:
        return subprocess.run(tick, capture_output=True, text=True, check=False).stdout

    before, first_tick = fleet.witness(), ticked()
    eventually(lambda: ticked() != first_tick, "the watcher ticked")
    assert fleet.witness() == before
    env.inv_ok("fleet.send", "--agent", "s1", "--message", "echo WITNESS-$((1+1))")
    assert fleet.witness() != before
    env.inv_ok("fleet.wait", "--agent", "s1", "--for", "idle", "--timeout", "60")


def test_fleet_screen_prints_what_tmux_draws(served: tuple[ServeEnv, Server]) -> None:
    """`fleet screen` (what the page shows, and what it asks each host for): the visible
    screen with its colours, as `tmux capture-pane -e` prints it; --json with the size."""
    env, _ = served
    socket = str(env.home / "fleet" / "run" / "tmux.sock")
    capture = ["tmux", "-S", socket, "capture-pane", "-p", "-e", "-t", "=fleet:=s1"]
    drawn = subprocess.run(capture, capture_output=True, text=True, check=True).stdout
    assert env.inv_ok("fleet.screen", "--agent", "s1") == drawn
    shown = json.loads(env.inv_ok("fleet.screen", "--agent", "s1", "--json"))
    assert (shown["agent"], shown["host"], shown["text"]) == ("s1", "local", drawn)
    assert shown["columns"] > 0
    assert shown["rows"] > 0
    unknown = env.inv("fleet.screen", "--agent", "nobody")
    assert unknown.returncode == 2, unknown
    assert unknown.stderr.startswith("error: ")
    assert len(unknown.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------- doctor and the unit


def test_doctor_finds_the_running_server_answering(served: tuple[ServeEnv, Server]) -> None:
    env, server = served
    record = json.loads((env.home / "fleet" / "run" / "serve.json").read_text())
    assert record == {"url": server.base, "pid": server.process.pid}
    assert server.token not in json.dumps(record)
    done = env.inv("fleet.doctor", "--json")
    checks = {check["name"]: check for check in json.loads(done.stdout)}
    assert checks["serve"]["ok"], checks["serve"]
    assert server.base in checks["serve"]["detail"]


def test_one_server_per_fleet_and_a_stopped_one_removes_its_record(tmp_path: Path) -> None:
    env = ServeEnv(tmp_path)  # a fleet that is not running: the page shows it stopped
    (env.home / "fleet").mkdir()
    (env.home / "fleet" / "roster.yaml").write_text("version: 1\nagents:\n  - name: q1\n    runtime: shell\n")
    record = env.home / "fleet" / "run" / "serve.json"
    server = start_server(env.env)
    try:
        assert json.loads(record.read_text())["pid"] == server.process.pid
        second = serve_refused(env.env, "--bind", "127.0.0.1:0")
        assert second.returncode == 2, (second.stdout, second.stderr)
        assert f"already runs for this fleet (pid {server.process.pid}" in second.stderr
        status, text, _ = server.request("/api/agents", headers={"Authorization": f"Bearer {server.token}"})
        assert status == 200
        assert [(row["name"], row["state"]) for row in json.loads(text)] == [("q1", "stopped")]
        # Actions are rate limited: 20 in any 10 s (an empty message is refused without a change).
        auth = {"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"}
        answered = [
            server.request("/api/agents/q1/send", method="POST", headers=auth, body={"message": ""})[0]
            for _ in range(21)
        ]
        assert answered == [200] * 20 + [429]
    finally:
        server.stop()
    assert server.process.returncode == 0
    assert not record.exists()


def test_the_serve_check(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    assert check_serve(run, False, "fleet serve").skipped
    unit_only = check_serve(run, True, "fleet serve")
    assert not unit_only.ok
    assert "fleet serve" in unit_only.fix
    write_record(run, "http://127.0.0.1:1", os.getpid())
    assert check_serve(run, False, "fleet serve", ask=lambda _: 401).ok
    for status in (None, 200, 500):
        found = check_serve(run, False, "fleet serve", ask=lambda _, s=status: s)  # type: ignore[misc]
        assert not found.ok, status
    remove_record(run, os.getpid() + 1)  # another server's: kept
    assert (run / "serve.json").exists()
    remove_record(run, os.getpid())
    assert not (run / "serve.json").exists()
    (run / "serve.json").write_text('{"url": "file:///etc/passwd", "pid": 1}')
    assert check_serve(run, False, "fleet serve", ask=lambda url: pytest.fail(f"asked {url}")).skipped


@pytest.mark.systemd
def test_install_serve_runs_the_server_as_a_unit_and_uninstall_removes_it(fleet_env: FleetEnv) -> None:
    fleet_env.write_roster("version: 1\nagents:\n  - name: u1\n    runtime: shell\n")
    unit = f"{fleet_env.units.prefix}fleet-serve.service"
    token = fleet_env.home / "serve.secret"
    token.write_text("t" * 40 + "\n")
    token.chmod(0o600)
    for refused, why in (
        (["--bind", "127.0.0.1:0"], "add --serve"),  # where --serve listens, without --serve
        (["--serve", "--bind", "0.0.0.0:8470"], "--token-file"),  # beyond loopback without a token
    ):
        done = fleet_env.inv("fleet.install", *refused)
        assert done.returncode == 2, done
        assert why in done.stderr, done.stderr
        assert not (fleet_env.manager.unit_dir / unit).exists()
    with socket.socket() as probe:  # a free port: 8470 may be taken by another fleet's server
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    installed = fleet_env.inv_ok("fleet.install", "--serve", "--bind", f"127.0.0.1:{port}", "--token-file", str(token))
    assert unit in installed
    assert str(token) in installed  # where the token is, said once
    run = fleet_env.home / "fleet" / "run"
    eventually((run / "serve.json").exists, "the unit's server recorded itself", limit=60)
    record = json.loads((run / "serve.json").read_text())
    assert record["url"] == f"http://127.0.0.1:{port}"
    status, _, _ = http_request(record["url"] + "/api/agents", headers={"Authorization": "Bearer " + "t" * 40})
    assert status == 200  # the unit's server takes the token file's token
    checks = {check["name"]: check for check in json.loads(fleet_env.inv("fleet.doctor", "--json").stdout)}
    assert checks["serve"]["ok"], checks["serve"]
    removed = fleet_env.inv_ok("fleet.uninstall")
    assert unit in removed
    assert not (fleet_env.manager.unit_dir / unit).exists()
    eventually(lambda: not procs.exists(record["pid"]), "the server stopped")
