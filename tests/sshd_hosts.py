"""Real SSH hosts for the multi-host tests: one private ``sshd`` per host on its own
loopback address (127.0.0.2, .3, .4, ...), each with its own Unix user and fleet home.

Everything is generated per test run: the sshd host keys, the controller's client key, the
``known_hosts`` file and the roster's ``hosts:``. Each host's SFTP server is OpenSSH's own
``sftp-server`` logging every request (open with its mode, mkdir, chmod, rename) to
:attr:`SshHost.sftp_log`: what a push did on the host, as the host saw it. The users are
the run's own (``fleett<pid>h1``..., made with useradd, password field ``*`` so sshd does
not see a locked account), so two test runs on one machine never touch each other's hosts.
:meth:`SshHosts.close` kills every sshd this module started and every process of the test
users (by pid, from /proc), then removes the users; users left by a run that was killed are
removed by the next. Needs root and Debian's openssh-server (``/usr/sbin/sshd``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

SSHD: Final = Path("/usr/sbin/sshd")
SFTP_SERVER: Final = Path("/usr/lib/openssh/sftp-server")
RUN_USER: Final = re.compile(r"fleett(?P<pid>[0-9]+)h[0-9]+")  # fleett<pid of the test run>h<host>


def unavailable() -> str | None:
    """Why real sshd hosts cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (creates users, starts sshd)"
    for tool in (str(SSHD), str(SFTP_SERVER), "ssh-keygen", "useradd"):
        if not shutil.which(tool):
            return f"{tool} not found (scripts/setup --tests installs openssh-server)"
    return None


def free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        port: int = probe.getsockname()[1]
        return port


def run_user(index: int) -> str:
    """The name of this test run's user for host ``index`` (1, 2, ...)."""
    return f"fleett{os.getpid()}h{index}"


def create_user(name: str) -> pwd.struct_passwd:
    # '!' (useradd's default) is a locked account to sshd even for key logins; '*' is not.
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", "--password", "*", name], check=True)
    return pwd.getpwnam(name)


def remove_user(name: str) -> None:
    """End every process of user ``name`` and remove the user with its home."""
    with contextlib.suppress(KeyError):
        kill_user_processes(pwd.getpwnam(name).pw_uid)
    subprocess.run(["userdel", "--remove", "--force", name], check=False, capture_output=True)


def remove_stale_users() -> None:
    """Remove the users of earlier runs whose test process is gone (killed before it could
    clean up); a live run's users are left alone."""
    for entry in pwd.getpwall():
        found = RUN_USER.fullmatch(entry.pw_name)
        if found is None:
            continue
        try:
            os.kill(int(found["pid"]), 0)
        except ProcessLookupError:
            remove_user(entry.pw_name)
        except PermissionError:
            pass  # alive


def user_processes(uid: int) -> dict[int, list[str]]:
    """pid -> argv of every live process owned by ``uid``."""
    found: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                    found[int(entry)] = [arg.decode(errors="replace") for arg in argv if arg]
            except OSError:
                continue
    return found


def process_name(pid: int) -> str:
    """The kernel's name for ``pid`` (``comm``: what ``ps -o comm`` shows), "" when gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def kill_user_processes(uid: int) -> None:
    """SIGKILL every process owned by ``uid`` (the test users run nothing else)."""
    for _ in range(3):
        pids = list(user_processes(uid))
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


@dataclass
class SshHost:
    """One host: its name in the roster, its user, its sshd."""

    name: str
    user: str
    address: str
    port: int
    home: Path
    uid: int
    config: Path
    host_key: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def sftp_log(self) -> Path:
        return self.config.parent / "sftp.log"

    @property
    def target(self) -> str:
        return f"{self.user}@{self.address}:{self.port}"

    @property
    def fleet_home(self) -> Path:
        return self.home / ".config" / "mosaic"

    def start(self) -> None:
        self.process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(self.config)], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.address, self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd for {self.name} did not listen on {self.address}:{self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def as_user(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` on this host as its user (it is this machine), like ``ssh`` would."""
        env = {"HOME": str(self.home), "USER": self.user, "LOGNAME": self.user, "PATH": "/usr/local/bin:/usr/bin:/bin"}
        return subprocess.run(
            ["setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--init-groups", *argv],
            env=env,
            cwd=self.home,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )


@dataclass
class SshHosts:
    """The hosts of one test run plus the controller's client key and known_hosts."""

    directory: Path
    hosts: list[SshHost] = field(default_factory=list)

    @property
    def client_key(self) -> Path:
        return self.directory / "client_key"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "known_hosts"

    def by_name(self, name: str) -> SshHost:
        return next(host for host in self.hosts if host.name == name)

    def hosts_yaml(self, backend: str = "tmux") -> str:
        lines = ["hosts:"]
        for host in self.hosts:
            lines += [
                f"  {host.name}:",
                f"    ssh: {host.target}",
                f"    identity_file: {self.client_key}",
                f"    backend: {backend}",
            ]
        return "\n".join(lines) + "\n"

    def reset_fleets(self) -> None:
        """Kill every process of the test users and remove their fleet homes (not the venv)."""
        for host in self.hosts:
            kill_user_processes(host.uid)
            shutil.rmtree(host.fleet_home, ignore_errors=True)

    def close(self) -> None:
        for host in self.hosts:
            host.stop()
        for host in self.hosts:
            remove_user(host.user)
        shutil.rmtree(self.directory, ignore_errors=True)


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


SSHD_CONFIG: Final = """\
ListenAddress {address}:{port}
HostKey {host_key}
PidFile none
AuthorizedKeysFile {authorized}
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin no
AllowUsers {user}
MaxSessions 64
MaxStartups 64:30:128
LogLevel ERROR
Subsystem sftp {sftp}
"""


def start_hosts(count: int = 3) -> SshHosts:
    """Start ``count`` sshd hosts (named h1, h2, ...); the caller closes them.

    Their files live in a fresh directory under /tmp that every user can traverse (sshd
    reads ``authorized_keys`` as the logging-in user, and pytest's tmp dirs are 0700)."""
    directory = Path(tempfile.mkdtemp(prefix="fleet-sshd-"))
    os.chmod(directory, 0o755)  # noqa: S103  # sshd (as the test users) reads the keys below it
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    remove_stale_users()
    hosts = SshHosts(directory)
    keygen(hosts.client_key)
    client_public = hosts.client_key.with_suffix(".pub").read_text()
    known: list[str] = []
    try:
        for index in range(count):
            user = run_user(index + 1)
            remove_user(user)  # a leftover of a run that had this pid
            entry = create_user(user)
            address = f"127.0.0.{index + 2}"
            port = free_port(address)
            host_dir = directory / f"h{index + 1}"
            host_dir.mkdir()
            host_key = host_dir / "host_key"
            keygen(host_key)
            authorized = host_dir / "authorized_keys"
            authorized.write_text(client_public)
            # OpenSSH's sftp-server as the host runs it, logging each request (as the user, so
            # into a file that user owns).
            sftp_log = host_dir / "sftp.log"
            sftp_log.touch()
            os.chown(sftp_log, entry.pw_uid, entry.pw_gid)
            sftp = host_dir / "sftp-logged"
            sftp.write_text(f"#!/bin/sh\nexec {SFTP_SERVER} -e -l INFO 2>>{sftp_log}\n")
            sftp.chmod(0o755)
            config = host_dir / "sshd_config"
            config.write_text(
                SSHD_CONFIG.format(
                    address=address, port=port, host_key=host_key, authorized=authorized, user=user, sftp=sftp
                )
            )
            host = SshHost(
                name=f"h{index + 1}",
                user=user,
                address=address,
                port=port,
                home=Path(entry.pw_dir),
                uid=entry.pw_uid,
                config=config,
                host_key=host_key,
            )
            hosts.hosts.append(host)
            host.start()
            key_type, key = host_key.with_suffix(".pub").read_text().split()[:2]
            known.append(f"[{address}]:{port} {key_type} {key}\n")
        hosts.known_hosts.write_text("".join(known))
    except BaseException:
        hosts.close()
        raise
    return hosts
