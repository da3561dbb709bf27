"""One SSH connection per host, over Fabric: how the controller reaches another machine.

Guarantees of a :class:`HostLink`:

* **One connection per host per command.** It opens on first use and every later call of
  the same command reuses it (sshd's ``MaxSessions`` is never approached: calls run one at
  a time on a link).
* **Host keys are verified, on every hop.** The key must already be in the known_hosts file
  (paramiko's ``RejectPolicy``: an unknown or changed key is a one-line failure naming the
  host and how to trust it). The jump hosts of an ssh_config ``ProxyJump`` are verified the
  same way, against the same file (Fabric would build them accepting any key). Only
  :meth:`HostLink.trust` records a key, when the user asks for it.
* **Never prompts.** Only keys (the host's ``identity_file``, the agent, ``~/.ssh/id_*``)
  are tried; no password or keyboard-interactive prompt can appear.
* **Bounded.** An operation on a host runs under one :class:`Deadline`: connecting (TCP,
  banner, authentication, each hop), every remote command and reading its answer all take
  from the same time, and connecting alone never takes longer than the host timeout. A
  host that does not answer in time fails with one line, it never hangs.
* **Secrets stay out of argv and logs, and out of other users' reach.** Data (a roster
  part, a message) travels over the command's stdin or SFTP, never in a command line; a
  file pushed is written inside a directory only its owner can enter, so it is private
  from its first byte. Failure lines carry the remote ``error:`` line or the SSH problem,
  never the data sent.
* **A follow ends with its reader.** :meth:`HostLink.follow` streams a command that runs
  until interrupted; the remote side watches its stdin, which only this side holds, so
  it ends as soon as this side stops (Ctrl-C, an error, or this process dying).
* **Same version or nothing.** Every ``fleet`` run on a host first checks that host's
  installed fleet is exactly the controller's version, in the same remote command; on skew
  it runs nothing and the call fails with one line saying to run ``fleet hosts.bootstrap``.

Fabric (and paramiko) are imported only here, and this module only when a roster has hosts.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import secrets
import shlex
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import fabric
import fabric.runners
import paramiko

from fleetlib.hosts import Host, SshTarget

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


NO_EXIT_STATUS: Final = -1  # paramiko's exit status for a channel closed without one
TIMER_SLACK_S: Final = 0.05  # how early a timer thread may wake against our own clock
FOLLOW_POLL_S: Final = 0.2  # how often a follow looks for Ctrl-C between chunks
FOLLOW_STDERR_CAP: Final = 64 * 1024  # what a follow keeps of the remote's stderr (its error line)


class HostError(Exception):
    """This host failed as a whole (unreachable, refused, timed out, skewed, bad answer);
    ``str()`` is one line, without the host name (the caller prefixes it)."""


class Deadline:
    """The one time limit of a whole host operation: connecting, every remote call and
    reading its answer all take what is left of it, so the operation never outlasts
    ``seconds`` (give each step :meth:`remaining`, never ``seconds`` again)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._end = clock() + seconds

    def remaining(self) -> float:
        """Seconds left (0 or less once it has passed)."""
        return self._end - self._clock()


class _TimedRemote(fabric.runners.Remote):  # type: ignore[misc]  # fabric is untyped
    """Fabric's runner with a timeout that is always reported as one.

    Invoke's timer thread closes the channel, and invoke reads ``timed_out`` as "the timer
    thread has finished": while that thread is still returning from the close, a timed-out
    command came back as an ordinary result with exit status -1. Here the timeout counts
    from the moment the timer fires, and a close that fails (the link already gone) stays in
    the timer thread instead of printing a traceback."""

    _fired = False

    def kill(self) -> None:
        self._fired = True
        with contextlib.suppress(paramiko.SSHException, OSError, EOFError):
            super().kill()

    @property
    def timed_out(self) -> bool:
        return self._fired or bool(super().timed_out)


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


def version_guarded(
    version: str, argv: Sequence[str], *, check_only: bool = False, until_stdin_closes: bool = False
) -> str:
    """The remote shell command that runs ``fleet argv`` from the private venv only when
    the installed distribution is exactly ``version`` (read from its dist-info name, the
    same metadata ``fleet --version`` prints, without starting Python twice).
    ``check_only`` runs nothing after the check (exit 0 when the version matches).
    ``until_stdin_closes`` (a command that runs until interrupted): the command is also
    ended (SIGTERM) when the command's stdin reaches end of file, that is when the SSH
    channel closes: without a terminal, sshd signals nothing to a command whose client
    went away, and a follower that prints nothing would run on forever."""
    venv = f'"$HOME"/{VENV}'
    wanted = f"fleet-{version}.dist-info"
    if check_only:
        then = "exit 0"
    elif until_stdin_closes:
        # fd 3 keeps the channel's stdin: an asynchronous command's stdin is /dev/null. The
        # watchdog's output goes to /dev/null so it never holds the channel open; when fleet
        # ends first, the watchdog is ended (its `cat` then sees end of file when the channel
        # closes and exits).
        then = (
            f"exec 3<&0; {venv}/bin/fleet {shlex.join(argv)} 3<&- & f=$!; "
            "{ cat <&3; kill $f; } >/dev/null 2>&1 & w=$!; exec 3<&-; "
            "wait $f; s=$?; kill $w 2>/dev/null; exit $s"
        )
    else:
        then = f"exec {venv}/bin/fleet {shlex.join(argv)}"
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


def _jump_hosts(connection: fabric.Connection) -> list[fabric.Connection]:
    """The jump hosts Fabric built for ``connection`` from an ssh_config ``ProxyJump``, in
    the order they are connected to (a ``ProxyCommand`` is a command the user wrote, run
    as written)."""
    chain: list[fabric.Connection] = []
    gateway = connection.gateway
    while isinstance(gateway, fabric.Connection):
        chain.append(gateway)
        gateway = gateway.gateway
    return chain[::-1]


class HostLink:
    """The controller's connection to one host, for one command (see the module docstring)."""

    def __init__(self, host: Host, settings: RemoteSettings) -> None:
        self.host = host
        self.settings = settings
        self._connection: fabric.Connection | None = None
        self._hops: list[fabric.Connection] = []

    # ------------------------------------------------------------------ connecting

    def _new_connection(
        self, policy: Callable[[], paramiko.MissingHostKeyPolicy]
    ) -> tuple[fabric.Connection, list[fabric.Connection]]:
        """The (unopened) connection and its jump hosts, each verifying host keys with a
        fresh ``policy()`` against the known_hosts file."""
        # Keys only: no password, and never a prompt (paramiko has no TTY prompt, and no
        # password is ever passed). The time limits are set as each one opens (_open).
        connect_kwargs: dict[str, Any] = {"password": None}
        if self.host.identity_file:
            connect_kwargs["key_filename"] = os.path.expanduser(self.host.identity_file)
        target = self.host.ssh
        connection = fabric.Connection(
            target.address,
            user=target.user,
            port=target.port,
            connect_kwargs=connect_kwargs,
            config=fabric.Config(overrides={"runners": {"remote": _TimedRemote}}),
        )
        hops = _jump_hosts(connection)
        known = self.settings.known_hosts
        for each in (*hops, connection):
            # Fabric gives every connection it builds, each ProxyJump hop included, an
            # AutoAddPolicy and no known_hosts: a hop's key would be taken on trust.
            each.client.set_missing_host_key_policy(policy())
            if known.exists():
                each.client.load_host_keys(str(known))
            # Our limits, in seconds as given (Fabric would round an ssh_config ConnectTimeout).
            each.connect_timeout = None
            each.connect_kwargs = {**each.connect_kwargs, "password": None}
        return connection, hops

    def jump_hosts(self) -> list[SshTarget]:
        """The jump hosts an ssh_config ``ProxyJump`` puts before this host, in the order
        they are connected to, as named there (so OpenSSH finds their own settings);
        nothing is opened."""
        _, hops = self._new_connection(paramiko.RejectPolicy)
        return [SshTarget(address=hop.original_host, user=hop.user, port=int(hop.port)) for hop in hops]

    def _who(self, each: fabric.Connection, connection: fabric.Connection) -> str:
        if each is connection:
            return str(self.host.ssh)
        return f"jump host {each.user}@{each.host}:{each.port}"

    def _open(
        self,
        connection: fabric.Connection,
        hops: Sequence[fabric.Connection],
        deadline: Deadline,
        *,
        first_contact: bool = False,
    ) -> None:
        """Open the jump hosts in order, then the host, all within the host timeout and the
        ``deadline``; :class:`HostError` naming the one that failed. ``first_contact``
        (trust): a refused authentication on the host itself is no failure, its key was
        exchanged before."""
        limit = min(self.settings.timeout, deadline.remaining())
        bound = self.settings.timeout if limit >= self.settings.timeout else deadline.seconds
        connecting = Deadline(limit)
        for each in (*hops, connection):
            who = self._who(each, connection)
            left = connecting.remaining()
            if left <= 0:
                raise HostError(f"no SSH answer from {who} within {bound:g}s")
            each.connect_kwargs.update(timeout=left, banner_timeout=left, auth_timeout=left, channel_timeout=left)
            started = time.monotonic()
            try:
                each.open()
            except paramiko.AuthenticationException as exc:
                if first_contact and each is connection:
                    return
                raise HostError(self._describe(exc, who, bound)) from None
            except (paramiko.SSHException, OSError, EOFError) as exc:
                timed_out = time.monotonic() - started >= left * 0.9
                handshake = isinstance(exc, paramiko.SSHException) and not isinstance(exc, paramiko.BadHostKeyException)
                if timed_out and handshake:
                    # paramiko words a handshake that never came in several ways
                    # ("Error reading SSH protocol banner", "No existing session", ...)
                    raise HostError(f"no SSH answer from {who} within {bound:g}s") from None
                raise HostError(self._describe(exc, who, bound)) from None

    def _describe(self, exc: BaseException, who: str, bound: float) -> str:
        known = self.settings.known_hosts
        if isinstance(exc, paramiko.BadHostKeyException):
            return (
                f"host key of {who} does not match {known} (possible man-in-the-middle); "
                "if the host was reinstalled, remove the old key and run `fleet hosts.trust`"
            )
        if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
            return f"host key of {who} is not in {known}; check it and run `fleet hosts.trust --host {self.host.name}`"
        if isinstance(exc, paramiko.AuthenticationException):
            return f"authentication as {who} refused (keys only, no password prompts); check identity_file"
        if isinstance(exc, TimeoutError | socket.timeout):
            return f"no answer from {who} within {bound:g}s"
        if isinstance(exc, paramiko.SSHException) and "banner" in str(exc).lower():
            return f"no SSH banner from {who} within {bound:g}s"
        if isinstance(exc, ConnectionRefusedError):
            return f"connection to {who} refused (is sshd running?)"
        if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
            return f"cannot connect to {who}: connection refused (is sshd running?)"
        if isinstance(exc, OSError):
            return f"cannot connect to {who}: {exc.strerror or exc}"
        return f"SSH to {who} failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"

    def connection(self, deadline: Deadline | None = None) -> fabric.Connection:
        """The open connection (opened on first use, within the host timeout and
        ``deadline``); :class:`HostError` when it cannot be."""
        if self._connection is None:
            connection, hops = self._new_connection(paramiko.RejectPolicy)
            try:
                self._open(connection, hops, deadline or Deadline(self.settings.timeout))
            except HostError:
                for each in (connection, *hops):
                    each.close()
                raise
            self._connection, self._hops = connection, hops
        return self._connection

    def trust(self) -> list[str]:
        """Connect once accepting whatever keys the host and its jump hosts present, append
        the new ones to the known_hosts file, and return a line per key (its fingerprint),
        or one line saying every key was already known. An already known key is verified
        instead (a changed key is refused, never replaced)."""
        policies: list[_RecordPolicy] = []

        def recording() -> _RecordPolicy:
            policies.append(_RecordPolicy())
            return policies[-1]

        connection, hops = self._new_connection(recording)
        try:
            self._open(connection, hops, Deadline(self.settings.timeout), first_contact=True)
        finally:
            for each in (connection, *hops):
                each.close()
        known = self.settings.known_hosts
        recorded = [policy.recorded for policy in policies if policy.recorded is not None]
        if not recorded:
            return [f"host key already known in {known}"]
        known.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lines = []
        fd = os.open(known, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "a") as stream:
            for hostname, key in recorded:
                stream.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
                lines.append(f"recorded {key.get_name()} {key.fingerprint} for {hostname} in {known}")
        return lines

    def close(self) -> None:
        if self._connection is not None:
            # Fabric closes a connection, not the jump hosts it went through.
            for each in (self._connection, *reversed(self._hops)):
                each.close()
            self._connection, self._hops = None, []

    def _expired(self, deadline: Deadline) -> HostError:
        return HostError(f"no answer from {self.host.ssh} within {deadline.seconds:g}s")

    # ------------------------------------------------------------------ running

    def run(self, command: str, *, stdin: str | None = None, deadline: Deadline | None = None) -> RemoteRun:
        """Run a shell ``command`` (built with :func:`shlex.join`, never from data) with
        ``stdin``; connecting, running and reading all within ``deadline`` (default: the
        host timeout)."""
        deadline = deadline or Deadline(self.settings.timeout)
        connection = self.connection(deadline)
        limit = deadline.remaining()
        if limit <= 0:
            raise self._expired(deadline)
        try:
            result = connection.run(
                command,
                hide=True,
                warn=True,
                pty=False,
                in_stream=io.StringIO(stdin) if stdin is not None else False,
                # A budget built from roster values may exceed what a timer can wait
                # (OverflowError in its thread, and no limit at all): wait that long at most.
                timeout=min(limit, threading.TIMEOUT_MAX),
            )
        except _RUNNER_ERRORS.ThreadException:
            # The remote command ended before it read all its input (stdin thread failed).
            self.close()
            raise HostError(f"the command on {self.host.ssh} ended before reading its input") from None
        except _RUNNER_ERRORS.CommandTimedOut:
            self.close()  # the channel may be wedged: never reuse it
            raise self._expired(deadline) from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise HostError(self._describe(exc, str(self.host.ssh), deadline.seconds)) from None
        if result.exited == NO_EXIT_STATUS:
            # The channel closed without an exit status: invoke's timer closed it (its
            # ``timed_out`` reads False while the timer thread is still returning, so the
            # timeout can surface here instead of as CommandTimedOut), or the link broke.
            self.close()
            if deadline.remaining() <= TIMER_SLACK_S:
                raise self._expired(deadline)
            raise HostError(f"the connection to {self.host.ssh} closed before the command ended")
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

    def fleet(self, argv: Sequence[str], *, stdin: str | None = None, deadline: Deadline | None = None) -> RemoteRun:
        """Run ``fleet argv`` on the host from its private venv, refusing version skew, all
        within ``deadline`` (default: the host timeout). With ``stdin`` the version is
        checked in a call of its own first, so a refused host never gets the data."""
        deadline = deadline or Deadline(self.settings.timeout)
        if stdin is not None:
            self._refuse_skew(self.run(version_guarded(self.settings.version, (), check_only=True), deadline=deadline))
        result = self.run(version_guarded(self.settings.version, argv), stdin=stdin, deadline=deadline)
        self._refuse_skew(result)
        return result

    def follow(self, argv: Sequence[str], write: Callable[[bytes], object]) -> RemoteRun:
        """Run ``fleet argv``, a command that runs until interrupted (``logs --follow``),
        handing its output to ``write`` as it arrives; returns when it ends on its own
        (its stderr kept for the error line). The version is checked first (within the host
        timeout). Whatever ends this call (Ctrl-C's ``KeyboardInterrupt``, an error) closes
        the channel's input on the way out, which ends the remote command
        (see :func:`version_guarded`'s ``until_stdin_closes``); so does this process dying."""
        deadline = Deadline(self.settings.timeout)
        self._refuse_skew(self.run(version_guarded(self.settings.version, (), check_only=True), deadline=deadline))
        command = version_guarded(self.settings.version, argv, until_stdin_closes=True)
        try:
            channel = self.connection(deadline).client.get_transport().open_session(timeout=deadline.remaining())
            channel.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise HostError(self._describe(exc, str(self.host.ssh), deadline.seconds)) from None
        errors = bytearray()
        try:
            # Short waits, so a Ctrl-C is seen between them even while the remote is silent.
            channel.settimeout(FOLLOW_POLL_S)
            while True:
                while channel.recv_stderr_ready():
                    errors += channel.recv_stderr(FOLLOW_STDERR_CAP)
                    del errors[:-FOLLOW_STDERR_CAP]
                try:
                    chunk = channel.recv(1 << 16)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                write(chunk)
            channel.settimeout(self.settings.timeout)
            while chunk := channel.recv_stderr(FOLLOW_STDERR_CAP):
                errors += chunk
                del errors[:-FOLLOW_STDERR_CAP]
            code = channel.recv_exit_status()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise HostError(self._describe(exc, str(self.host.ssh), self.settings.timeout)) from None
        finally:
            # End of input first: the remote's watchdog ends the command on it.
            with contextlib.suppress(paramiko.SSHException, OSError, EOFError):
                channel.shutdown_write()
            channel.close()
        return RemoteRun(exit_code=code, stdout="", stderr=errors.decode(errors="replace"))

    def put_atomic(self, data: bytes, path: str, mode: int = 0o600, *, deadline: Deadline | None = None) -> None:
        """Write ``data`` to ``path`` (relative to the remote home) through SFTP, private
        from the first byte and atomically: into a fresh directory only its owner can
        enter (mode 0700, beside ``path``), then a POSIX rename into place, so readers see
        the old file or the new one and no other user ever sees the data (SFTP creates a
        file with the server's default mode, 0644, before any chmod can reach it)."""
        deadline = deadline or Deadline(self.settings.timeout)
        connection = self.connection(deadline)
        directory, _, name = path.rpartition("/")
        private = f"{directory}/.fleet-push-{secrets.token_hex(8)}"
        temp = f"{private}/{name}"
        made = False
        try:
            sftp = connection.sftp()
            sftp.get_channel().settimeout(max(deadline.remaining(), 0.001))
            self._makedirs(sftp, directory)
            sftp.mkdir(private, mode=0o700)  # fails if it exists: never a directory someone else made
            made = True
            with sftp.open(temp, "wb") as stream:
                stream.chmod(mode)
                stream.write(data)
            sftp.posix_rename(temp, path)
            sftp.rmdir(private)
            made = False
        except TimeoutError:
            self.close()
            raise self._expired(deadline) from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise HostError(
                f"cannot write {path} on {self.host.ssh}: {getattr(exc, 'strerror', None) or exc}"
            ) from None
        finally:
            if made:
                self._remove_quietly(connection, temp, private)

    @staticmethod
    def _remove_quietly(connection: fabric.Connection, temp: str, private: str) -> None:
        """Best effort: a push that failed half-way leaves nothing behind."""
        with contextlib.suppress(paramiko.SSHException, OSError, EOFError):
            sftp = connection.sftp()
            for remove, what in ((sftp.remove, temp), (sftp.rmdir, private)):
                with contextlib.suppress(OSError):
                    remove(what)

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
            sftp.get_channel().settimeout(None)
            self._makedirs(sftp, remote.rpartition("/")[0])
            sftp.put(str(local), remote)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise HostError(f"cannot upload {local.name} to {self.host.ssh}: {exc}") from None


def open_links(hosts: Sequence[Host], settings: RemoteSettings) -> dict[str, HostLink]:
    """One (not yet connected) link per host."""
    return {host.name: HostLink(host, settings) for host in hosts}
