"""The real Codex CLI and Claude Code, installed from npm, read by the activity classifier.

Each runs in a private tmux server with a fresh HOME (no configuration, no sign-in) and no
network: Codex stops at its sign-in menu, Claude Code at its theme or folder-trust menu, each
a real ``waiting``; Claude Code without either setting checks connectivity first and exits 1
offline (a real exit, which the watcher reports from the process state). Deadlines are generous
polling limits for the CLIs to draw, not timing assertions.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleetlib.activity import classify, question, rules_for
from tests.real_clis import PrivateTmux, RealClis, installed_clis

DRAW_DEADLINE_S = 120.0


@pytest.fixture(scope="module")
def clis() -> RealClis:
    return installed_clis()


@pytest.mark.tmux
def test_codex_at_its_sign_in_menu_is_waiting(clis: RealClis, tmux: PrivateTmux, tmp_path: Path) -> None:
    # --no-daemon: otherwise Codex leaves an app-server daemon running after the pane is gone.
    tmux.start([str(clis.codex), "--no-daemon"], cwd=tmp_path)
    rules = rules_for("codex")
    shown = question(tmux.poll_state(rules, "waiting", timeout=DRAW_DEADLINE_S), rules)
    assert "Sign in with ChatGPT" in shown


@pytest.mark.tmux
@pytest.mark.parametrize(
    ("setup", "env", "expected"),
    [
        # Bedrock mode skips the sign-in and its connectivity check: the first-run theme menu.
        ("none", {"CLAUDE_CODE_USE_BEDROCK": "1"}, "Choose the text style"),
        # Onboarding done: a new folder gets the trust question.
        ("onboarded", {}, "Yes, I trust this folder"),
    ],
)
def test_claude_code_at_a_first_run_menu_is_waiting(
    clis: RealClis, tmux: PrivateTmux, tmp_path: Path, setup: str, env: dict[str, str], expected: str
) -> None:
    if setup == "onboarded":
        (tmux.home / ".claude.json").write_text(json.dumps({"hasCompletedOnboarding": True}))
    tmux.start([str(clis.claude)], cwd=tmp_path, env=env)
    rules = rules_for("claude")
    shown = question(tmux.poll_state(rules, "waiting", timeout=DRAW_DEADLINE_S), rules)
    assert expected in shown


@pytest.mark.tmux
def test_claude_code_fresh_and_offline_exits_or_with_a_network_asks(
    clis: RealClis, tmux: PrivateTmux, tmp_path: Path
) -> None:
    tmux.start([str(clis.claude)], cwd=tmp_path)
    rules = rules_for("claude")
    screen = tmux.poll(
        lambda s: tmux.exit_status() is not None or classify(s, rules, output_age=None) == "waiting",
        timeout=DRAW_DEADLINE_S,
        what="an exit or a menu",
    )
    if tmux.exit_status() is not None:
        assert tmux.exit_status() == 1
        assert "Unable to connect to Anthropic services" in screen


@pytest.mark.parametrize(("ci", "outcome"), [(None, pytest.skip.Exception), ("1", pytest.fail.Exception)])
def test_without_npm_the_real_cli_tests_skip_but_fail_under_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ci: str | None, outcome: type[BaseException]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="npm is not installed"):
        installed_clis(tmp_path / "clis")
