"""Boot a private `systemd --user` manager for integration tests.

Works even where PID 1 is not systemd: as root, with ``/run/systemd/system`` present and
``XDG_RUNTIME_DIR``/``XDG_CONFIG_HOME`` pointing at a private temp dir, the manager runs in
its own session, and in a cgroup of its own (tests/cgroups.py), so that no two managers on
the machine ever manage the same cgroup. :func:`boot` returns a reason instead when this
machine cannot do that.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.cgroups import OwnCgroup

SYSTEMD = Path("/usr/lib/systemd/systemd")


def manager_env(root: Path) -> dict[str, str]:
    """This process's environment pointed at the manager whose private directory is ``root``."""
    env = {k: v for k, v in os.environ.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
    env.update(XDG_RUNTIME_DIR=str(root / "runtime"), XDG_CONFIG_HOME=str(root / "config"))
    return env


@dataclass
class UserManager:
    root: Path
    process: subprocess.Popen[bytes]
    cgroup: OwnCgroup

    @property
    def env(self) -> dict[str, str]:
        """Environment for commands that should talk to this manager (and no other)."""
        return manager_env(self.root)

    @property
    def unit_dir(self) -> Path:
        return self.root / "config" / "systemd" / "user"

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` against this manager (output captured, never raising on failure)."""
        return subprocess.run(list(argv), env=self.env, capture_output=True, text=True, timeout=60, check=False)

    def systemctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", "--user", *args)

    def stop(self) -> None:
        """Exit the manager (SIGKILL after 20 s), end whatever still runs in its cgroup and
        remove that cgroup and the private directory (RuntimeError if the cgroup stays)."""
        try:
            if self.process.poll() is None:
                self.systemctl("exit")
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            self.cgroup.remove()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def cannot_boot_reason() -> str | None:
    if not SYSTEMD.exists():
        return f"{SYSTEMD} is not installed"
    if shutil.which("systemctl") is None or shutil.which("tmux") is None:
        return "systemctl or tmux is not installed"
    if not Path("/run/systemd/system").is_dir():
        if os.geteuid() != 0:
            return "/run/systemd/system is missing and creating it needs root"
        Path("/run/systemd/system").mkdir(parents=True, exist_ok=True)
    return None


def boot(timeout: float = 30.0) -> UserManager | str:
    """Start a private user manager; returns it, or a reason string when it cannot start."""
    reason = cannot_boot_reason()
    if reason:
        return reason
    root = Path(tempfile.mkdtemp(prefix="fleet-user-manager-"))
    (root / "runtime").mkdir(mode=0o700)
    (root / "config").mkdir()
    try:
        cgroup = OwnCgroup.make(root.name)  # unique on this machine, as the directory is
    except OSError as error:
        shutil.rmtree(root, ignore_errors=True)
        return f"cannot make a cgroup of its own for the manager: {error}"
    log = (root / "manager.log").open("wb")
    process = subprocess.Popen(
        cgroup.join_argv([str(SYSTEMD), "--user"]),
        env=manager_env(root),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
        cwd="/",
    )
    log.close()
    manager = UserManager(root, process, cgroup)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            reason = f"systemd --user exited with {process.returncode}: {(root / 'manager.log').read_text()[-500:]}"
            manager.stop()
            return reason
        state = manager.systemctl("is-system-running").stdout.strip()
        if state in ("running", "degraded"):
            return manager
        time.sleep(0.05)
    manager.stop()
    return f"systemd --user did not come up within {timeout}s"
