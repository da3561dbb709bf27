"""One SSH connection per host, over Fabric: how the controller reaches another machine.

Guarantees of a :class:`HostLink`:

* **One connection per host per command.** It opens on first use and every later call of
  the same command reuses it (sshd's ``MaxSessions`` is never approached: calls run one at
  a time on a link).
* **Host keys are verified.** The key must already be in the known_hosts file (paramiko's
  ``RejectPolicy``: an unknown or changed key is a one-line failure naming the host and how
  to trust it). Only :meth:`HostLink.trust` records a key, when the user asks for it.
* **Never prompts.** Only keys (the host's ``identity_file``, the agent, ``~/.ssh/id_*``)
  are tried; no password or keyboard-interactive prompt can appear.
* **Bounded.** Connecting (TCP, banner, authentication) and every remote command have a
  deadline; a host that does not answer in time fails with one line, it never hangs.
* **Secrets stay out of argv and logs.** Data (a roster part, a message) travels over the
  command's stdin or SFTP, never in a command line; failure lines carry the remote
  ``error:`` line or the SSH problem, never the data sent.
* **Same version or nothing.** Every ``fleet`` run on a host first checks that host's
  installed fleet is exactly the controller's version, in the same remote command; on skew
  it runs nothing and the call fails with one line saying to run ``fleet hosts.bootstrap``.

Fabric (and paramiko) are imported only here, and this module only when a roster has hosts.
"""

from __future__ import annotations

import io
import logging
import math
import os
import shlex
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import fabric
import fabric.runners
import paramiko

from fleetlib.hosts import Host

# paramiko logs transport errors (with tracebacks) through logging; without a handler Python
# prints them on stderr. Each failure is reported once, as the host's one line, instead.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

# Fabric raises the errors of the Invoke runner it is built on (a remote command that timed
# out, an I/O thread that failed). They are looked up through Fabric, in its runner's base
# class's module, rather than imported: fleetlib never imports the command-line framework.
_RUNNER_ERRORS: Final = sys.modules[fabric.runners.Remote.__mro__[1].__module__]

VENV: Final = ".local/share/fleet/venv"  # relative to the remote user's home
REMOTE_FLEET_HOME: Final = ".config/mosaic"  # the remote user's default fleet home
SKEW_EXIT: Final = 97
MISSING_EXIT: Final = 98
DEFAULT_KNOWN_HOSTS: Final = "~/.ssh/known_hosts"
DEFAULT_HOST_TIMEOUT_S: Final = 10.0


class HostError(Exception):
    """This host failed as a whole (unreachable, refused, timed out, skewed, bad answer);
    ``str()`` is one line, without the host name (the caller prefixes it)."""


@dataclass(frozen=True)
class RemoteSettings:
    """What every link of one command shares: the known_hosts file (verified, written only
    by :meth:`HostLink.trust`), the per-host timeout, and the version the hosts must run."""

    known_hosts: Path
    timeout: float
    version: str


@dataclass(frozen=True)
class RemoteRun:
    """A finished remote command: exit code and both outputs."""

    exit_code: int
    stdout: str
    stderr: str

    def error_line(self) -> str:
        """The remote's last ``error:`` line (or last stderr line), for a one-line failure."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error:")]
        chosen = errors[-1] if errors else (lines[-1] if lines else f"exit status {self.exit_code}")
        return chosen.removeprefix("error: ")


def bootstrap_hint(host: str) -> str:
    return f"run `fleet hosts.bootstrap --host {host}`"


def version_guarded(version: str, argv: Sequence[str], *, check_only: bool = False) -> str:
    """The remote shell command that runs ``fleet argv`` from the private venv only when
    the installed distribution is exactly ``version`` (read from its dist-info name, the
    same metadata ``fleet --version`` prints, without starting Python twice).
    ``check_only`` runs nothing after the check (exit 0 when the version matches)."""
    venv = f'"$HOME"/{VENV}'
    wanted = f"fleet-{version}.dist-info"
    then = "exit 0" if check_only else f"exec {venv}/bin/fleet {shlex.join(argv)}"
    script = (
        f"for d in {venv}/lib/python3*/site-packages/fleet-*.dist-info; do :; done; "
        f'case "$d" in */{shlex.quote(wanted)}) {then};; esac; '
        f'[ -e "$d" ] || exit {MISSING_EXIT}; d=${{d##*/fleet-}}; echo "${{d%.dist-info}}" >&2; exit {SKEW_EXIT}'
    )
    # sshd runs the command with the user's login shell, which may not be a POSIX shell (fish,
    # csh); every shell runs `sh -c 'single-quoted'` the same way.
    return f"exec sh -c {shlex.quote(script)}"


class _RecordPolicy(paramiko.MissingHostKeyPolicy):
    """First contact only: accept the key and remember what it was."""

    def __init__(self) -> None:
        self.recorded: tuple[str, paramiko.PKey] | None = None

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        self.recorded = (hostname, key)


class HostLink:
    """The controller's connection to one host, for one command (see the module docstring)."""

    def __init__(self, host: Host, settings: RemoteSettings) -> None:
        self.host = host
        self.settings = settings
        self._connection: fabric.Connection | None = None

    # ------------------------------------------------------------------ connecting

    def _new_connection(self, policy: paramiko.MissingHostKeyPolicy) -> fabric.Connection:
        timeout = self.settings.timeout
        connect_kwargs: dict[str, Any] = {
            "banner_timeout": timeout,
            "auth_timeout": timeout,
            "channel_timeout": timeout,
            # Keys only: no password, and never a prompt (paramiko has no TTY prompt, and no
            # password is ever passed).
            "password": None,
        }
        if self.host.identity_file:
            connect_kwargs["key_filename"] = os.path.expanduser(self.host.identity_file)
        target = self.host.ssh
        connection = fabric.Connection(
            target.address,
            user=target.user,
            port=target.port,
            connect_timeout=max(1, math.ceil(timeout)),
            connect_kwargs=connect_kwargs,
        )
        client = connection.client
        client.set_missing_host_key_policy(policy)
        known = self.settings.known_hosts
        if known.exists():
            client.load_host_keys(str(known))
        return connection

    def _describe(self, exc: BaseException) -> str:
        target = self.host.ssh
        if isinstance(exc, paramiko.BadHostKeyException):
            return (
                f"host key of {target} does not match {self.settings.known_hosts} (possible man-in-the-middle); "
                "if the host was reinstalled, remove the old key and run `fleet hosts.trust`"
            )
        if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
            return (
                f"host key of {target} is not in {self.settings.known_hosts}; "
                f"check it and run `fleet hosts.trust --host {self.host.name}`"
            )
        if isinstance(exc, paramiko.AuthenticationException):
            return f"authentication as {target} refused (keys only, no password prompts); check identity_file"
        if isinstance(exc, TimeoutError | socket.timeout):
            return f"no answer from {target} within {self.settings.timeout:g}s"
        if isinstance(exc, paramiko.SSHException) and "banner" in str(exc).lower():
            return f"no SSH banner from {target} within {self.settings.timeout:g}s"
        if isinstance(exc, ConnectionRefusedError):
            return f"connection to {target} refused (is sshd running?)"
        if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
            return f"cannot connect to {target}: connection refused (is sshd running?)"
        if isinstance(exc, OSError):
            return f"cannot connect to {target}: {exc.strerror or exc}"
        return f"SSH to {target} failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"

    def connection(self) -> fabric.Connection:
        """The open connection (opened on first use); :class:`HostError` when it cannot be."""
        if self._connection is None:
            connection = self._new_connection(paramiko.RejectPolicy())
            started = time.monotonic()
            try:
                connection.open()
            except (paramiko.SSHException, OSError, EOFError) as exc:
                connection.close()
                timed_out = time.monotonic() - started >= self.settings.timeout * 0.9
                handshake = isinstance(exc, paramiko.SSHException) and not isinstance(
                    exc, paramiko.AuthenticationException | paramiko.BadHostKeyException
                )
                if timed_out and handshake:
                    # paramiko words a handshake that never came in several ways
                    # ("Error reading SSH protocol banner", "No existing session", ...)
                    raise HostError(f"no SSH answer from {self.host.ssh} within {self.settings.timeout:g}s") from None
                raise HostError(self._describe(exc)) from None
            self._connection = connection
        return self._connection

    def trust(self) -> str:
        """Connect once accepting whatever key the host presents, append it to the known_hosts
        file, and return its fingerprint line. An already known key is verified instead
        (a changed key is refused, never replaced)."""
        policy = _RecordPolicy()
        connection = self._new_connection(policy)
        try:
            connection.open()
        except paramiko.AuthenticationException:
            pass  # the host key was exchanged (and recorded) before authentication
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise HostError(self._describe(exc)) from None
        finally:
            connection.close()
        if policy.recorded is None:
            return f"{self.host.name}: host key already known in {self.settings.known_hosts}"
        hostname, key = policy.recorded
        known = self.settings.known_hosts
        known.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        entry = f"{hostname} {key.get_name()} {key.get_base64()}\n"
        fd = os.open(known, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "a") as stream:
            stream.write(entry)
        return f"{self.host.name}: recorded {key.get_name()} {key.fingerprint} for {hostname} in {known}"

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # ------------------------------------------------------------------ running

    def run(self, command: str, *, stdin: str | None = None, timeout: float | None = None) -> RemoteRun:
        """Run a shell ``command`` (built with :func:`shlex.join`, never from data) with
        ``stdin``; bounded by ``timeout`` (default: the host timeout)."""
        connection = self.connection()
        limit = self.settings.timeout if timeout is None else timeout
        try:
            result = connection.run(
                command,
                hide=True,
                warn=True,
                pty=False,
                in_stream=io.StringIO(stdin) if stdin is not None else False,
                timeout=max(1, math.ceil(limit)),
            )
        except _RUNNER_ERRORS.ThreadException:
            # The remote command ended before it read all its input (stdin thread failed).
            self.close()
            raise HostError(f"the command on {self.host.ssh} ended before reading its input") from None
        except _RUNNER_ERRORS.CommandTimedOut:
            self.close()  # the channel may be wedged: never reuse it
            raise HostError(f"no answer from {self.host.ssh} within {limit:g}s") from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise HostError(self._describe(exc)) from None
        return RemoteRun(exit_code=result.exited, stdout=result.stdout, stderr=result.stderr)

    def _refuse_skew(self, result: RemoteRun) -> None:
        if result.exit_code == MISSING_EXIT and not result.stdout:
            raise HostError(f"fleet is not installed on {self.host.ssh}; {bootstrap_hint(self.host.name)}")
        if result.exit_code == SKEW_EXIT and not result.stdout:
            theirs = result.stderr.strip().splitlines()[-1:] or ["?"]
            raise HostError(
                f"runs fleet {theirs[0]}, this controller runs fleet {self.settings.version}; "
                f"{bootstrap_hint(self.host.name)}"
            )

    def fleet(self, argv: Sequence[str], *, stdin: str | None = None, timeout: float | None = None) -> RemoteRun:
        """Run ``fleet argv`` on the host from its private venv, refusing version skew.
        With ``stdin`` the version is checked in a call of its own first, so a refused
        host never gets the data."""
        if stdin is not None:
            self._refuse_skew(self.run(version_guarded(self.settings.version, (), check_only=True)))
        result = self.run(version_guarded(self.settings.version, argv), stdin=stdin, timeout=timeout)
        self._refuse_skew(result)
        return result

    def put_atomic(self, data: bytes, path: str, mode: int = 0o600) -> None:
        """Write ``data`` to ``path`` (relative to the remote home) through SFTP: a temp file
        beside it, then a POSIX rename, so readers see the old file or the new one."""
        connection = self.connection()
        directory, _, name = path.rpartition("/")
        temp = f"{directory}/.{name}.fleet-tmp-{os.getpid()}"
        try:
            sftp = connection.sftp()
            self._makedirs(sftp, directory)
            with sftp.open(temp, "wb") as stream:
                stream.chmod(mode)
                stream.write(data)
            sftp.posix_rename(temp, path)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise HostError(
                f"cannot write {path} on {self.host.ssh}: {getattr(exc, 'strerror', None) or exc}"
            ) from None

    @staticmethod
    def _makedirs(sftp: paramiko.SFTPClient, directory: str) -> None:
        built = ""
        for part in directory.split("/"):
            built = f"{built}/{part}" if built else part
            try:
                sftp.stat(built)
            except FileNotFoundError:
                sftp.mkdir(built, mode=0o700)

    def put_file(self, local: Path, remote: str) -> None:
        """Upload one file (a wheel) to ``remote`` (relative to the remote home)."""
        connection = self.connection()
        try:
            sftp = connection.sftp()
            self._makedirs(sftp, remote.rpartition("/")[0])
            sftp.put(str(local), remote)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise HostError(f"cannot upload {local.name} to {self.host.ssh}: {exc}") from None


def open_links(hosts: Sequence[Host], settings: RemoteSettings) -> dict[str, HostLink]:
    """One (not yet connected) link per host."""
    return {host.name: HostLink(host, settings) for host in hosts}
