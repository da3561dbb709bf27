"""The page `fleet serve` serves, in a real browser (issue 24): Debian's Chromium, headless,
driven by Playwright (no browser download), against a real tmux fleet of shell agents, a
Claude-like fake (its "ask" draws a question with a menu: ``waiting``) and one that prints
markup. One browser for the module; one page, as a user keeps it open.

Notifications are granted in the browser context and recorded by an init script that wraps
``window.Notification``; the panes are read with tmux directly.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import REPO, eventually
from tests.test_serve import ServeEnv, Server, shell_fleet, start_server, stop_fleet

pytestmark = pytest.mark.tmux

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RECORD_NOTIFICATIONS = """
window.__notes = [];
(() => {
  const Real = window.Notification;
  function Recorded(title, options) {
    window.__notes.push({ title, body: (options || {}).body || "" });
    try { return new Real(title, options); } catch (e) { return {}; }
  }
  Object.defineProperty(Recorded, "permission", { get: () => Real.permission });
  Recorded.requestPermission = (...args) => Real.requestPermission(...args);
  window.Notification = Recorded;
})();
"""
MARKUP = "<script>window.pwned=1</script><img src=x onerror=window.pwned=2>"
AGENTS = ["sh1", "sh2", "yesno", "xss"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeEnv, Server]]:
    fake = json.dumps(str(REPO / "tests" / "fake_agents" / "claude_like.py"))
    printer = json.dumps(f"printf '%s\\n' {MARKUP!r}; exec sleep 100000")
    extra = (
        f"  - name: yesno\n    runtime: claude\n    command: [{json.dumps(sys.executable)}, {fake}]\n"
        f"  - name: xss\n    runtime: custom\n    command: [sh, -c, {printer}]\n"
    )
    env = shell_fleet(tmp_path_factory.mktemp("page"), ["sh1", "sh2"], extra)
    env.inv_ok("fleet.wait", "--agent", "yesno", "--for", "idle", "--timeout", "60")
    server = start_server(env.env)
    yield env, server
    server.stop()
    stop_fleet(env)


@pytest.fixture(scope="module")
def page(site: tuple[ServeEnv, Server]) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.skip("no chromium (scripts/setup --tests installs it)")
    _, server = site
    with sync_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(permissions=["notifications"], viewport={"width": 1280, "height": 900})
        context.add_init_script(RECORD_NOTIFICATIONS)
        opened = context.new_page()
        opened.on("dialog", lambda dialog: dialog.accept())
        opened.goto(server.url)
        assert opened.url == server.base + "/"  # the token left the address for the cookie
        opened.wait_for_selector("#live:text('live')")
        yield opened
        browser.close()


def cards(page: Any) -> list[tuple[str, str]]:
    """(name, state) of every card, top to bottom."""
    found: list[tuple[str, str]] = page.eval_on_selector_all(
        ".card", "nodes => nodes.map(n => [n.dataset.name, n.dataset.state])"
    )
    return [(name, state) for name, state in found]


def select(page: Any, name: str) -> None:
    page.click(f".card[data-name='{name}']")
    page.wait_for_selector(f"#detail-name:text-is('{name}')")


def send(page: Any, name: str, message: str, *, answer: bool = False) -> str:
    """Send from the page; what the page said (the command line's words)."""
    select(page, name)
    page.fill("#message", message)
    page.set_checked("#answer", answer)
    return act(page, "#send")


def act(page: Any, button: str, result: str = "result") -> str:
    """Click an action's ``button`` (confirming it); what the page said in ``#result``
    once the action answered (an operation waits for the agents: up to two minutes)."""
    page.evaluate(f"document.getElementById('{result}').textContent = ''")
    page.click(button)
    page.wait_for_function(
        f"() => {{ const t = document.getElementById('{result}').textContent; return t && t !== '…'; }}",
        timeout=120_000,
    )
    said: str = page.inner_text(f"#{result}")
    return said


def test_the_page_lists_every_agent(page: Any) -> None:
    eventually(lambda: sorted(name for name, _ in cards(page)) == sorted(AGENTS), "a card per agent")


def test_an_agent_turning_waiting_moves_to_the_top_and_notifies(site: tuple[ServeEnv, Server], page: Any) -> None:
    env, _ = site
    assert cards(page)[-1][0] == "yesno", cards(page)  # last by name while nothing waits
    env.inv_ok("fleet.send", "--agent", "yesno", "--message", "ask")
    eventually(lambda: cards(page)[0] == ("yesno", "waiting"), "yesno waiting, first", limit=30)
    eventually(
        lambda: any(note["title"] == "yesno is waiting" for note in page.evaluate("window.__notes")),
        "a notification for yesno",
        limit=5,
    )

    refused = send(page, "yesno", "hello")
    assert refused.startswith("error: agent 'yesno' is waiting for an answer, so nothing was sent"), refused
    assert "hello" not in env.pane("yesno").split("Do you want to proceed?")[-1]

    # The menu's entries are buttons; the second answers as `fleet send --answer --message 2`.
    page.wait_for_selector("#options .option[data-entry='2']")
    assert page.inner_text("#options .option[data-entry='2']").startswith("2. No, and tell")
    answered = act(page, "#options .option[data-entry='2']")
    assert "accepted" in answered, answered
    assert "error" not in answered
    eventually(lambda: "denied" in env.pane("yesno"), "yesno took entry 2")
    eventually(lambda: dict(cards(page))["yesno"] != "waiting", "yesno no longer waiting")


def test_sending_from_the_page_reaches_the_pane(site: tuple[ServeEnv, Server], page: Any) -> None:
    env, _ = site
    message = "echo PAGE-$((40+2))"
    said = send(page, "sh1", message)
    assert said == f"sent {len(message)} characters to sh1: accepted", said
    eventually(lambda: "PAGE-42" in env.pane("sh1"), "the shell ran it")
    env.inv_ok("fleet.wait", "--agent", "sh1", "--for", "idle", "--timeout", "60")


def test_the_screen_view_shows_what_tmux_shows(site: tuple[ServeEnv, Server], page: Any) -> None:
    env, _ = site
    env.inv_ok("fleet.send", "--agent", "sh2", "--message", "printf 'a  b\\n\\n  c\\n'; echo SCREEN-$((1+1))")
    env.inv_ok("fleet.wait", "--agent", "sh2", "--for", "idle", "--timeout", "60")
    select(page, "sh2")
    socket = env.home / "fleet" / "run" / "tmux.sock"

    def tmux_screen() -> list[str]:
        argv = ["tmux", "-S", str(socket), "capture-pane", "-p", "-t", "=fleet:=sh2"]
        rows = [
            row.rstrip() for row in subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split("\n")
        ]
        while rows and not rows[-1]:
            rows.pop()
        return rows

    def page_screen() -> list[str]:
        rows: list[str] = page.eval_on_selector_all("#screen .row", "rows => rows.map(r => r.textContent)")
        return rows

    eventually(lambda: "SCREEN-2" in "\n".join(page_screen()), "the screen followed")
    eventually(lambda: page_screen() == tmux_screen(), "the page's screen is tmux's")
    assert "  c" in page_screen()


def test_markup_an_agent_prints_is_text(page: Any) -> None:
    select(page, "xss")
    eventually(lambda: MARKUP in page.inner_text("#screen"), "the markup shown as text")
    assert page.locator("#screen script, #screen img, .card script, .card img").count() == 0
    assert page.evaluate("window.pwned") is None
    assert MARKUP in page.inner_text(".card[data-name='xss'] .last")


def test_restart_from_the_page_gives_a_new_pid(site: tuple[ServeEnv, Server], page: Any) -> None:
    env, _ = site
    before = env.pid("sh2")
    select(page, "sh2")
    said = act(page, "#restart-agent")
    assert said.startswith("restarted 1 agent(s) (sh2)"), said
    assert said.endswith("all up"), said
    after = env.pid("sh2")
    assert isinstance(after, int)
    assert after != before
    eventually(lambda: f"pid {after}" in page.inner_text(".card[data-name='sh2']"), "the card shows the new pid")


def test_stop_from_the_page_stops_the_agent(site: tuple[ServeEnv, Server], page: Any) -> None:
    env, _ = site
    select(page, "xss")
    said = act(page, "#stop-agent")
    assert said.startswith("stopped 1 agent(s) (xss)"), said
    assert env.status()[1]["xss"]["state"] == "stopped"
    eventually(lambda: dict(cards(page))["xss"] == "stopped", "the card shows it stopped")


def test_restarting_the_fleet_from_the_page_restarts_every_agent(site: tuple[ServeEnv, Server], page: Any) -> None:
    """The page's "Restart fleet" is `fleet restart` (the library's, under the restart lock):
    every agent gets a new pid, the stopped one starts again, and the page says what the
    command line says."""
    env, _ = site
    before = {name: env.pid(name) for name in AGENTS}
    said = act(page, "#restart-fleet", "fleet-result")
    assert said.startswith(f"restarted {len(AGENTS)} agent(s)"), said
    assert said.endswith("all up"), said
    after = {name: env.pid(name) for name in AGENTS}
    assert all(isinstance(pid, int) and pid != before[name] for name, pid in after.items()), (before, after)
    eventually(lambda: dict(cards(page))["xss"] != "stopped", "the card shows xss running again")
