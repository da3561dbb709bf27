"""Shared fixtures: run the real `inv` command line against a private fleet home."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings

from fleetlib.systemd import UnitNames
from tests.real_clis import PrivateTmux, unavailable
from tests.usermanager import UserManager, boot

# In CI the property tests draw the same examples every run (no database, derandomized): a
# CI run passes or fails on the code, never on which examples came up. Locally they explore.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_ROSTER = REPO / "roster.example.yaml"

# Signals ignored where the suite was started stay ignored in every process it starts (`nohup`
# ignores HUP, a shell's `&` INT and QUIT), and the tests deliver exactly those signals to
# the processes under test, as a terminal or a stop would. Every test starts from the defaults.
for _ignored in (signal.SIGHUP, signal.SIGQUIT):
    if signal.getsignal(_ignored) == signal.SIG_IGN:
        signal.signal(_ignored, signal.SIG_DFL)
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

InvRunner = Callable[..., subprocess.CompletedProcess[str]]


def eventually(check: Callable[[], bool], what: str, limit: float = 60.0, poll: float = 0.1) -> None:
    """Poll a condition the system must reach on its own: a liveness bound, not a timing
    target (AssertionError naming ``what`` when it never holds within ``limit`` seconds)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(poll)
    raise AssertionError(f"never happened within {limit}s: {what}")


def watcher_pids(home: Path) -> list[int]:
    """The live watcher processes of the fleet in ``home`` (`python -m fleetlib.watcher RUN_DIR`),
    found in /proc by their exact argv (the tmux server and the window's shell loop carry those
    words too; a zombie's argv is empty): a witness independent of fleetlib's own lookup."""
    wanted = ["-m", "fleetlib.watcher", str(home / "fleet" / "run")]
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
            except OSError:
                continue
            if len(argv) == 4 and argv[1:] == wanted:
                found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (neither a zombie nor dead), read from /proc by the test itself."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :].split()[0] not in (b"Z", b"X")


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts in their own session; afterwards the group of each one still
    running is killed, and every one is reaped."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def kill_fleet_tmux(home: Path) -> None:
    """End the tmux server of the fleet in ``home`` if one runs (a fixture's clean-up)."""
    subprocess.run(
        ["tmux", "-S", str(home / "fleet" / "run" / "tmux.sock"), "kill-server"], capture_output=True, check=False
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A private fleet home (never the user's ~/.config/mosaic)."""
    path = tmp_path / "home"
    path.mkdir()
    return path


def run_inv(
    args: Sequence[str], env: dict[str, str], *, input: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run `inv <args>` in the repo as a user would (a real subprocess, output captured)."""
    return run_module("invoke", args, env, input=input, timeout=timeout)


def run_module(
    module: str, args: Sequence[str], env: dict[str, str], *, input: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run `python -m <module> <args>` in the repo (a real subprocess, text output captured);
    ``timeout`` only turns a hang into a failure."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        input=input,
        timeout=timeout,
        check=False,
    )


def run_inv_concurrently(argsets: Sequence[Sequence[str]], env: dict[str, str]) -> list[tuple[int, str, str]]:
    """Start every `inv` at once, then collect (exit status, stdout, stderr) for each."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "invoke", *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in argsets
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        results.append((proc.returncode, out, err))
    return results


class InvUser:
    """A user of one fleet home: subclasses say where the home is and which environment `inv` runs with."""

    home: Path

    @property
    def env(self) -> dict[str, str]:
        raise NotImplementedError

    def write_roster(self, text: str) -> None:
        """Write the home's roster file (its directory made as needed)."""
        roster = self.home / "fleet" / "roster.yaml"
        roster.parent.mkdir(parents=True, exist_ok=True)
        roster.write_text(text)

    def inv(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_inv(args, self.env, input=input)

    def inv_ok(self, *args: str) -> str:
        result = self.inv(*args)
        assert result.returncode == 0, f"inv {' '.join(args)} failed ({result.returncode}): {result.stderr}"
        return result.stdout


@pytest.fixture
def inv(home: Path) -> InvRunner:
    """Run `inv <args>` with MOSAIC_HOME pointing at ``home``."""

    def run(
        *args: str, env: dict[str, str] | None = None, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_inv(args, {**os.environ, "MOSAIC_HOME": str(home), **(env or {})}, input=input)

    return run


def booted_manager() -> Iterator[UserManager]:
    """Boot a private systemd --user manager, yield it, stop it; skips (fails in CI) if it cannot boot."""
    booted = boot()
    if isinstance(booted, str):
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the systemd tests, but no user manager could be booted: {booted}")
        pytest.skip(f"cannot boot a systemd --user manager here: {booted}")
    yield booted
    booted.stop()


@pytest.fixture(scope="session")
def user_manager() -> Iterator[UserManager]:
    """A private systemd --user manager for the whole session."""
    yield from booted_manager()


@dataclass
class FleetEnv(InvUser):
    """One test's fleet: a private home (so a private tmux socket) on the shared manager."""

    home: Path
    manager: UserManager

    @property
    def env(self) -> dict[str, str]:
        return {**self.manager.env, "MOSAIC_HOME": str(self.home)}

    @property
    def units(self) -> UnitNames:
        """The names of this home's units."""
        return UnitNames.for_home(self.home)

    def tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        socket = self.home / "fleet" / "run" / "tmux.sock"
        return subprocess.run(["tmux", "-S", str(socket), *args], capture_output=True, text=True, check=False)


@pytest.fixture
def fleet_env(user_manager: UserManager, tmp_path: Path) -> Iterator[FleetEnv]:
    env = FleetEnv(tmp_path / "home", user_manager)
    env.home.mkdir()
    yield env
    env.inv("fleet.uninstall")
    user_manager.systemctl("reset-failed")
    env.tmux("kill-server")


# --------------------------------------------------------------------------- the installed `fleet` command

# What a non-editable install needs from the working tree (copied, so the build never
# writes build/ or *.egg-info into the repository others are working in).
DISTRIBUTION_FILES = ("pyproject.toml", "README.md", "fleetlib", "fleetctl", "fleetweb")


@dataclass
class InstalledFleet:
    """A virtualenv with this working tree installed as a user would (not editable)."""

    venv: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"

    def env(self, extra: dict[str, str | None] | None = None) -> dict[str, str]:
        """The caller's environment with the venv first on PATH and nothing pointing into
        the repository (no PYTHONPATH), plus ``extra``; a key whose value is None is removed."""
        base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        for key, value in (extra or {}).items():
            if value is None:
                base.pop(key, None)
        given = {k: v for k, v in (extra or {}).items() if v is not None}
        return {**base, "PATH": f"{self.bin}{os.pathsep}{base.get('PATH', '')}", **given}

    def fleet(
        self,
        *args: str,
        cwd: Path,
        env: dict[str, str | None] | None = None,
        input: str | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "fleet"), *args],
            cwd=cwd,
            env=self.env(env),
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
            check=False,
        )


@pytest.fixture(scope="session")
def installed_fleet(tmp_path_factory: pytest.TempPathFactory) -> InstalledFleet:
    """Build a fresh virtualenv once per session and `pip install` a copy of the working
    tree into it (pip may use the configured local index for invoke and PyYAML)."""
    root = tmp_path_factory.mktemp("installed")
    source = root / "src"
    source.mkdir()
    for name in DISTRIBUTION_FILES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=root,
    )
    if done.returncode != 0:
        message = f"cannot pip install the package into a fresh virtualenv: {done.stderr.strip()[-2000:]}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return InstalledFleet(venv)


def _orphaned_agents(under: Path) -> dict[int, str]:
    """pid -> socket of every live process marked as a fleet agent's whose fleet's tmux
    server is gone and whose socket is under ``under`` (this session's temp dir: another
    session's orphans, which its own test may be waiting for, are none of ours)."""
    marked: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        for variable in environ.split(b"\0"):
            if variable.startswith(b"FLEET_AGENT=") and b"@" in variable:
                socket = variable.split(b"@", 1)[1].decode(errors="replace")
                if Path(socket).is_relative_to(under):
                    marked[int(entry)] = socket
                break
    served = {
        socket: subprocess.run(["tmux", "-S", socket, "has-session"], capture_output=True, check=False).returncode == 0
        for socket in set(marked.values())
    }
    return {pid: socket for pid, socket in marked.items() if not served[socket]}


@pytest.fixture(autouse=True)
def _no_orphaned_agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After every test, end the agent processes whose fleet's tmux server the test killed
    (and that outlived it: the fleet ends them itself), so stray processes never pile up."""
    yield
    for pid in _orphaned_agents(tmp_path_factory.getbasetemp()):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, 9)


@pytest.fixture(name="tmux")
def private_tmux() -> Iterator[PrivateTmux]:
    """A private tmux server for one test (skips, or fails under CI, without tmux)."""
    if shutil.which("tmux") is None:
        unavailable("tmux is not installed")
    server = PrivateTmux()
    try:
        yield server
    finally:
        server.close()
