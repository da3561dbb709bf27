"""The real agent CLIs, installed once from the npm registry, and a private tmux server to run them in.

``installed_clis()`` installs ``@openai/codex`` and ``@anthropic-ai/claude-code`` into one cache
directory (``$FLEET_TEST_CLI_CACHE`` or ``~/.cache/fleet-tests/clis``), reuses an install that
answers ``--version``, and returns the two binaries. When they cannot be had (no npm, no
registry, a broken install) it skips with the reason, and fails instead when ``CI`` is set.

``PrivateTmux`` is one tmux server on its own socket, killed by ``close()``; it also kills every
process still running under its private directory (the ``HOME`` it gives its programs: the Codex
CLI leaves an app-server daemon behind otherwise).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from filelock import FileLock

from fleetlib.activity import classify
from fleetlib.runtimes import ScreenRules

PACKAGES = ("@openai/codex", "@anthropic-ai/claude-code")
INSTALL_TIMEOUT_S = 900.0
POLL_S = 0.1
EXIT_MARKER = "[fleet-test: exited with status "


@dataclass(frozen=True)
class RealClis:
    """Paths of the installed binaries."""

    codex: Path
    claude: Path


def unavailable(reason: str) -> None:
    """Skip the calling test with ``reason``; fail it instead when ``CI`` is set."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the real-CLI tests, but: {reason}")
    pytest.skip(reason)


def cache_dir() -> Path:
    """Where the CLIs are installed: ``$FLEET_TEST_CLI_CACHE`` or ``~/.cache/fleet-tests/clis``."""
    configured = os.environ.get("FLEET_TEST_CLI_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "fleet-tests" / "clis"


def _answers(binary: Path) -> bool:
    try:
        done = subprocess.run([str(binary), "--version"], capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def installed_clis(directory: Path | None = None) -> RealClis:
    """Both CLIs installed under ``directory`` (default ``cache_dir()``), installing them when missing.

    Concurrent callers wait on one lock file, so the registry is asked at most once. Skips (or
    fails under ``CI``) with the reason when npm is missing, the install fails or a binary does
    not answer ``--version``.
    """
    root = directory or cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    clis = RealClis(codex=root / "node_modules/.bin/codex", claude=root / "node_modules/.bin/claude")
    with FileLock(str(root) + ".lock"):
        if all(_answers(binary) for binary in (clis.codex, clis.claude)):
            return clis
        npm = shutil.which("npm")
        if npm is None:
            unavailable("npm is not installed (scripts/setup --tests installs node and npm)")
        argv = [str(npm), "install", "--prefix", str(root), "--no-audit", "--no-fund", *PACKAGES]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            unavailable(f"npm install {' '.join(PACKAGES)} took over {INSTALL_TIMEOUT_S:g}s")
        if done.returncode != 0:
            unavailable(f"npm install {' '.join(PACKAGES)} failed: {done.stderr.strip()[-500:]}")
        broken = [binary.name for binary in (clis.codex, clis.claude) if not _answers(binary)]
        if broken:
            unavailable(f"installed, but {', '.join(broken)} --version fails (under {root})")
    return clis


def _pids_with(marker: str) -> list[int]:
    """Processes whose command line or environment mentions ``marker`` (our private directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            blob = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in blob:
            found.append(int(entry.name))
    return found


@dataclass
class PrivateTmux:
    """A tmux server on a private socket running one program in window ``t``."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="fleet-act-", dir="/tmp")))

    @property
    def socket(self) -> Path:
        return self.root / "tmux.sock"

    @property
    def home(self) -> Path:
        """A fresh, empty HOME for the program: no configuration, no sign-in."""
        path = self.root / "home"
        path.mkdir(exist_ok=True)
        return path

    def tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", "-S", str(self.socket), *args], capture_output=True, text=True, timeout=30, check=False
        )

    def start(self, argv: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None) -> None:
        """Run ``argv`` in a 200x50 pane with a clean environment: ``HOME``, ``PATH``, ``TERM`` and ``env``.

        A wrapper shell prints ``EXIT_MARKER`` and the exit status when the program ends (tmux's
        own pane_dead proved unreliable here: an exited program sometimes stayed an unreaped
        zombie of the server for minutes).
        """
        base = {"HOME": str(self.home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TERM": "xterm-256color"}
        assignments = [f"{key}={value}" for key, value in {**base, **(env or {})}.items()]
        wrapper = f'"$@"; echo "{EXIT_MARKER}$?"; exec sleep 3600'
        command = ["sh", "-c", wrapper, "sh", "env", "-i", *assignments, *argv]
        started = self.tmux("new-session", "-d", "-s", "t", "-x", "200", "-y", "50", "-c", str(cwd), *command)
        assert started.returncode == 0, started.stderr

    def capture(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t").stdout

    def send_keys(self, keys: str, *, enter: bool = True) -> None:
        """Type ``keys`` literally, then Enter unless told not to (one tmux command)."""
        argv = ["send-keys", "-t", "t", "-l", keys, *([";", "send-keys", "-t", "t", "Enter"] if enter else [])]
        sent = self.tmux(*argv)
        assert sent.returncode == 0, sent.stderr

    def output_age(self) -> float | None:
        """Seconds since the pane last wrote (tmux ``window_activity``, 1 s resolution); None if unknown."""
        shown = self.tmux("display-message", "-p", "-t", "t", "#{window_activity}").stdout.strip()
        return max(0.0, time.time() - int(shown)) if shown.isdigit() else None

    def exit_status(self) -> int | None:
        """The program's exit status once it has exited (the wrapper's marker is on screen), else None."""
        found = re.search(re.escape(EXIT_MARKER) + r"(\d+)", self.capture())
        return int(found.group(1)) if found else None

    def poll(self, done: Callable[[str], bool], *, timeout: float, what: str) -> str:
        """Capture until ``done(screen)``; the screen then. AssertionError with the last screen at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.capture()
            if done(screen):
                return screen
            if time.monotonic() >= deadline:
                raise AssertionError(f"{what}: not seen within {timeout:g}s; last screen:\n{screen}")
            time.sleep(POLL_S)

    def poll_state(self, rules: ScreenRules, want: str, *, timeout: float = 60.0) -> str:
        """Capture until ``classify`` says ``want`` (output age from tmux); the screen then."""
        return self.poll(
            lambda screen: classify(screen, rules, output_age=self.output_age()) == want,
            timeout=timeout,
            what=f"state {want!r}",
        )

    def close(self) -> None:
        """Kill the server and whatever still runs under our directory; remove the directory. Never raises.

        A wedged server (one that missed a SIGCHLD waits for its child for ever, and may not even
        answer kill-server) is killed like the rest: its command line names our socket.
        """
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(["tmux", "-S", str(self.socket), "kill-server"], capture_output=True, timeout=5, check=False)
        for pid in _pids_with(str(self.root)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)
