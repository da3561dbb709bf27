"""Several hosts as one fleet: :class:`HostsFleet`, the local fleet's operations across hosts.

Modelled on fabric's ``Group``: it offers :class:`fleetlib.fleet.LocalFleet`'s operations
under the same names and returns one :class:`~fleetlib.results.HostsResult` per call, a
typed answer per host. Each host's part runs with the very engine that runs a one-machine
fleet: ``local`` through :class:`~fleetlib.fleet.LocalFleet` in this process, every other
host through the same ``fleet`` command running *there* with ``--json`` (so the restart
lock in that host's fleet home serialises every controller that drives it). The policy
that lives here and nowhere else:

* **What runs on a host:** the remote argv (:func:`remote_argv`), built from the same
  options the local part gets, and the host's own backend.
* **Time budgets:** connecting to a host is bounded by the host timeout; each host's part
  of a command runs under one deadline that covers connecting, the remote command and
  reading its answer: the host timeout for ``status``, three times it for ``logs`` and
  ``doctor``, six times for ``install``/``uninstall``; operations that wait for agents get
  their own timeout on top (:func:`wait_budget`).
* **Roster pushes:** ``install`` pushes each host's part of the roster atomically before
  installing there; a dry run pushes it beside the roster, never over it.

Hosts run in parallel (or in batches, ``FleetOptions.batch``), each failing alone with one
line (see :mod:`fleetlib.controller`).
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from fleetlib.controller import fan_out, in_batches, local_first, parse_answer
from fleetlib.defaults import VERIFY_TIMEOUT_S, WAIT_DEFAULT_S, WAIT_TIMEOUT_S
from fleetlib.errors import FleetError
from fleetlib.fleet import FleetOptions, LocalFleet, Write
from fleetlib.hosts import LOCAL, SshTarget
from fleetlib.paths import FleetPaths
from fleetlib.remote import Deadline, HostError, HostLink, RemoteSettings, open_links, version_guarded
from fleetlib.results import (
    Bootstrapped,
    Check,
    Checks,
    HostData,
    HostResult,
    HostsResult,
    InstallResult,
    Operation,
    OperationResult,
    Screen,
    SendResult,
    StatusReport,
    TopRows,
    TranscriptText,
    Trusted,
    WaitReport,
    WorktreeRemoval,
    WorktreeRows,
)
from fleetlib.roster import Roster
from fleetlib.runner import exec_replacing

if TYPE_CHECKING:
    from fleetlib.serving import ServeAt

REMOTE_ROSTER: Final = ".config/mosaic/fleet/roster.yaml"  # relative to the remote home
REMOTE_DRY_ROSTER: Final = ".config/mosaic/fleet/roster.dry-run.yaml"
BOOTSTRAP_BUDGET_S: Final = 900.0
GIT_BUDGET_S: Final = 120.0  # a remote worktree removal's git commands, beyond the host timeout
NO_ROSTER: Final = "no roster on this host yet; run `fleet install` (it pushes each host's part)"

D = TypeVar("D", bound=HostData)
Remote = Callable[[HostLink, Roster, Deadline], D]


def _typed(host: str, answer: Any, parse: Callable[[Any], D]) -> D:
    """A host's JSON ``answer`` as ``parse`` rebuilds it; an answer of another shape fails
    the host with one line (a host's answer is untrusted input)."""
    try:
        return parse(answer)
    except ValueError as exc:
        raise HostError(f"unexpected answer from fleet on {host}: {exc}") from None


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def wait_budget(roster: Roster, timeout: float | None, host_timeout: float) -> float:
    """How long a host may take for start/stop/restart: its own wait, the longest stop
    (TERM then KILL, twice for a restart's stop and a possible second try), plus the host timeout."""
    longest_stop = max((agent.stop_timeout for agent in roster.agents), default=10.0)
    return (timeout or WAIT_TIMEOUT_S) + 2 * longest_stop + host_timeout


def remote_argv(command: str, backend: str, *flags: str | None) -> list[str]:
    """``fleet command --json --backend B flags...`` for a host (``None`` flags left out)."""
    return [command, "--json", "--backend", backend, *(flag for flag in flags if flag is not None)]


def _opt(flag: str, value: float | str | None) -> list[str]:
    """``[flag, value]`` when given (numbers as ``%g``), else nothing."""
    if value is None or value == "":
        return []
    return [flag, f"{value:g}" if isinstance(value, float | int) else value]


def proxy_command(hops: Sequence[SshTarget], strict: Sequence[str]) -> str:
    """An OpenSSH ``ProxyCommand`` reaching ``%h:%p`` through ``hops`` (in the order they are
    connected to), each hop an ``ssh -W`` with the same ``strict`` options. OpenSSH's own
    ProxyJump passes no ``-o`` option on to the hops, so they would be checked against the
    default known_hosts, and could prompt. Each level's ``%`` is doubled for the level
    above, which expands it once."""
    command = ""
    for hop in hops:
        literal = ["ssh", *strict, "-o", f"ProxyCommand={command}" if command else "ProxyJump=none"]
        literal += ["-l", hop.user] if hop.user else []
        literal += ["-p", str(hop.port)] if hop.port is not None else []
        escaped = [arg.replace("%", "%%") for arg in literal]
        command = shlex.join([*escaped, "-W", "[%h]:%p", "--", hop.address.replace("%", "%%")])
    return command


def ssh_argv(link: HostLink, remote_command: str, hops: Sequence[SshTarget] = ()) -> list[str]:
    """OpenSSH argv for an interactive session on ``link``'s host: a TTY, the same
    known_hosts (strict), keys only; through ``hops`` (its ProxyJump hosts), each checked
    the same way."""
    target = link.host.ssh
    strict = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
    strict += ["-o", f"UserKnownHostsFile={link.settings.known_hosts}"]
    argv = ["ssh", "-t", *strict]
    if hops:
        argv += ["-o", f"ProxyCommand={proxy_command(hops, strict)}"]
    if link.host.identity_file:
        argv += ["-i", os.path.expanduser(link.host.identity_file)]
    if target.port is not None:
        argv += ["-p", str(target.port)]
    destination = f"{target.user}@{target.address}" if target.user else target.address
    return [*argv, destination, remote_command]


@dataclass(frozen=True)
class _Reached:
    """A host answered the SSH connection (the first step of ``hosts.bootstrap``)."""

    connected: bool

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.connected}


def _not_reached(failed: HostResult[_Reached]) -> HostResult[Bootstrapped]:
    """A host that could not be reached, as a bootstrap result (nothing was installed)."""
    return HostResult(host=failed.host, ok=False, seconds=failed.seconds, error=failed.error)


class HostsFleet:
    """The agents of ``roster`` on every host it names (see the module docstring).

    Every operation opens at most one SSH connection per host it needs and closes them
    before returning; nothing stays open between calls."""

    send_wait_refused: Final = "with hosts, send has no --wait yet; run `fleet wait` after it"

    def __init__(self, paths: FleetPaths, roster: Roster, options: FleetOptions | None = None) -> None:
        self.paths = paths
        self.roster = roster
        self.options = options or FleetOptions()
        self.settings = RemoteSettings(
            known_hosts=self.options.known_hosts, timeout=self.options.host_timeout, version=version("fleet")
        )

    # ------------------------------------------------------------------ plumbing

    def local(self, part: Roster | None = None, **changed: Any) -> LocalFleet:
        """This machine's part, with this fleet's options (backend, unit dir, dry run...)
        and ``changed`` ones. Its dry-run lines go to stderr: stdout carries every host's
        result, and a host's own dry-run lines reach only its stderr too."""
        options = replace(self.options, echo=_to_stderr, **changed)
        return LocalFleet(self.paths, part if part is not None else self.roster.for_host(LOCAL), options)

    def host_of(self, agent: str) -> str:
        return self.roster.get(agent).host

    def chosen(self, host: str) -> list[str]:
        """``host`` (which must be a roster host) or every remote host."""
        if not host:
            return list(self.roster.hosts)
        if host not in self.roster.hosts:
            from fleetlib.roster import _did_you_mean  # noqa: PLC0415  (private helper, one use)

            known = ", ".join(self.roster.hosts) or "none"
            raise FleetError(
                f"unknown host {host!r}{_did_you_mean(host, list(self.roster.hosts))} in {self.roster.source} "
                f"(known: {known})"
            )
        return [host]

    @contextmanager
    def links(self) -> Iterator[dict[str, HostLink]]:
        """One (lazily connected) link per remote host, all closed on the way out."""
        links = open_links(list(self.roster.hosts.values()), self.settings)
        try:
            yield links
        finally:
            for link in links.values():
                link.close()

    def _answer(
        self,
        link: HostLink,
        argv: Sequence[str],
        deadline: Deadline,
        parse: Callable[[Any], D],
        stdin: str | None = None,
    ) -> D:
        """``fleet argv`` on ``link``'s host, its JSON answer as ``parse`` rebuilds it; a
        host with no roster yet is told to run ``fleet install`` (which pushes each host's
        part)."""
        try:
            run = link.fleet(argv, stdin=stdin, deadline=deadline)
            return _typed(link.host.name, parse_answer(link.host.name, run, object), parse)
        except HostError as exc:
            if str(exc).startswith("roster not found"):
                raise HostError(NO_ROSTER) from None
            raise

    def _run(
        self,
        operation: str,
        names: Sequence[str],
        remote: Remote[D],
        local: Callable[[Roster], D] | None,
        budget: float,
        batch: int = 0,
    ) -> HostsResult[D]:
        """Run the job on each named host (``local`` included when named). A remote host's
        whole job runs under one :class:`~fleetlib.remote.Deadline` of ``budget`` seconds,
        started when its job starts; the fan-out abandons a job still running a host timeout
        later (a backstop: the deadline ends it first)."""
        started = time.monotonic()
        with self.links() as links:

            def job(name: str) -> D:
                part = self.roster.for_host(name)
                if name == LOCAL:
                    assert local is not None
                    return local(part)
                return remote(links[name], part, Deadline(budget))

            ordered = local_first(names)
            backstop = budget + self.settings.timeout
            results = in_batches(ordered, batch, job, backstop) if batch else fan_out(ordered, job, backstop)
        return HostsResult(operation, results, time.monotonic() - started)

    def _names(self, agent: str | None) -> list[str]:
        return [self.host_of(agent)] if agent else self.roster.host_names()

    # ------------------------------------------------------------------ lifecycle

    def install(
        self, *, enable: bool = True, serve: bool = False, serve_at: ServeAt | None = None
    ) -> HostsResult[InstallResult]:
        """Push each host's part of the roster (atomically), then install there. Every
        listed host, even one left without agents: its install stops and removes the
        agents it no longer has, as a local install does. ``serve`` is refused (before
        anything changes): its unit is written for a fleet without hosts only; `fleet
        serve` run by hand covers every host."""
        if serve or serve_at is not None:
            raise FleetError(
                "--serve installs its unit for a fleet without hosts only; with hosts, run `fleet serve` "
                "on this machine yourself (it covers every host)"
            )
        dry = self.options.dry_run

        def remote(link: HostLink, part: Roster, deadline: Deadline) -> InstallResult:
            target = REMOTE_DRY_ROSTER if dry else REMOTE_ROSTER
            link.put_atomic(self.roster.host_text(link.host.name).encode(), target, deadline=deadline)
            argv = remote_argv("install", link.host.backend, *_opt("--roster", target if dry else None))
            argv += ([] if enable else ["--no-enable"]) + (["--dry-run"] if dry else [])
            return self._answer(link, argv, deadline, InstallResult.from_json)

        return self._install("install", remote, lambda part: self.local(part).install(enable=enable))

    def uninstall(self) -> HostsResult[InstallResult]:
        """Stop and remove the fleet's units on every host."""

        def remote(link: HostLink, part: Roster, deadline: Deadline) -> InstallResult:
            argv = remote_argv("uninstall", link.host.backend, *(["--dry-run"] if self.options.dry_run else []))
            return self._answer(link, argv, deadline, InstallResult.from_json)

        return self._install("uninstall", remote, lambda part: self.local(part).uninstall())

    def _install(
        self, operation: str, remote: Remote[InstallResult], local: Callable[[Roster], InstallResult]
    ) -> HostsResult[InstallResult]:
        names = [*(name for name in self.roster.host_names() if name == LOCAL), *self.roster.hosts]
        return self._run(operation, names, remote, local, self.settings.timeout * 6)

    def control(
        self, operation: Operation, agent: str | None = None, *, fresh: bool = False
    ) -> HostsResult[OperationResult]:
        """``start``, ``stop`` or ``restart`` on every host (or on ``agent``'s host), in
        batches when the options say so; ``fresh``: new conversations."""
        if fresh and operation == "stop":
            raise FleetError("--fresh is for start and restart (a stop keeps the conversation for the next start)")
        o = self.options
        flags = [
            *_opt("--agent", agent),
            *_opt("--timeout", o.timeout),
            *_opt("--lock-timeout", o.lock_timeout),
            *(["--dry-run"] if o.dry_run else []),
            *(["--fresh"] if fresh else []),
        ]

        def remote(link: HostLink, part: Roster, deadline: Deadline) -> OperationResult:
            argv = remote_argv(operation, link.host.backend, *flags)
            return self._answer(link, argv, deadline, OperationResult.from_json)

        def local(part: Roster) -> OperationResult:
            return self.local(part, timeout=o.timeout or WAIT_TIMEOUT_S).control(operation, agent, fresh=fresh)

        budget = wait_budget(self.roster, o.timeout, self.settings.timeout)
        return self._run(operation, self._names(agent), remote, local, budget, o.batch)

    def start(self, agent: str | None = None, *, fresh: bool = False) -> HostsResult[OperationResult]:
        return self.control("start", agent, fresh=fresh)

    def stop(self, agent: str | None = None) -> HostsResult[OperationResult]:
        return self.control("stop", agent)

    def restart(self, agent: str | None = None, *, fresh: bool = False) -> HostsResult[OperationResult]:
        return self.control("restart", agent, fresh=fresh)

    # ------------------------------------------------------------------ looking

    def status(self, agent: str | None = None, *, usage: bool = False) -> HostsResult[StatusReport]:
        """Every host's rows (or ``agent``'s host's); each host gets one host timeout for
        all of it: connecting, its ``fleet status`` and reading the answer. ``usage``: this
        machine's rows carry memory and CPU figures, as each remote host's always do."""

        def remote(link: HostLink, part: Roster, deadline: Deadline) -> StatusReport:
            argv = remote_argv("status", link.host.backend, *_opt("--agent", agent))
            run = link.fleet(argv, deadline=deadline)
            rows = parse_answer(link.host.name, run, list)
            return _typed(link.host.name, {"all_up": run.exit_code == 0, "agents": rows}, StatusReport.from_json)

        def local(part: Roster) -> StatusReport:
            status = self.local(part).status(agent, usage=usage)
            return StatusReport(status.all_up, status.to_json())

        return self._run("status", self._names(agent), remote, local, self.settings.timeout)

    def witness(self) -> str | None:
        """None: across hosts there is no cheap witness of change (each host's status is a
        command over SSH), so a long-lived reader reads the status itself."""
        return None

    def pinned(self) -> HostsFleet:
        """This fleet with this machine's backend chosen once (see :meth:`LocalFleet.pinned`)."""
        from fleetlib.backend import resolve_backend  # noqa: PLC0415
        from fleetlib.runner import SubprocessRunner  # noqa: PLC0415

        chosen = resolve_backend(self.options.backend, SubprocessRunner())
        return HostsFleet(self.paths, self.roster, replace(self.options, backend=chosen))

    def wait(self, state: str, agent: str | None = None, timeout: float | None = None) -> HostsResult[WaitReport]:
        """Every host waits for its own agents (or ``agent``'s host for it) at once; the
        local part with this fleet's backend and unit directory, like a local wait."""
        limit = timeout or WAIT_DEFAULT_S

        def remote(link: HostLink, part: Roster, deadline: Deadline) -> WaitReport:
            argv = remote_argv("wait", link.host.backend, "--for", state, "--timeout", f"{limit:g}")
            argv += ["--agent", agent] if agent else ["--all"]
            return self._answer(link, argv, deadline, WaitReport.from_json)

        def local(part: Roster) -> WaitReport:
            return self.local(part).wait(state, agent, limit).report()

        budget = limit + self.settings.timeout * 2
        return self._run("wait", self._names(agent), remote, local, budget)

    def send(
        self,
        names: Sequence[str],
        text: str,
        *,
        verify: bool = True,
        timeout: float | None = None,
        answer: bool = False,
    ) -> HostsResult[SendResult]:
        """Send ``text`` to the agents ``names`` (each host to its own, at once; the message
        travels on each remote command's stdin, never in its argv)."""
        if self.options.dry_run:
            raise FleetError("with hosts, send has no --dry-run yet")
        wanted = set(names)
        hosts = [host for host in self.roster.host_names() if wanted & set(self.roster.for_host(host).names())]
        flags = [*([] if verify else ["--no-verify"]), *(["--answer"] if answer else []), *_opt("--timeout", timeout)]
        # One agent, or every agent (--all): the two ways a command names whom to send to.
        who = ["--agent", names[0]] if len(names) == 1 else ["--all"]
        most = max((len(wanted & set(self.roster.for_host(h).names())) for h in hosts), default=1)

        def remote(link: HostLink, part: Roster, deadline: Deadline) -> SendResult:
            argv = ["send", *who, "--message", "-", "--json", *flags]
            return self._answer(link, argv, deadline, SendResult.from_json, stdin=text + "\n")

        def local(part: Roster) -> SendResult:
            mine = [name for name in part.names() if name in wanted]
            return self.local(part).send(mine, text, verify=verify, timeout=timeout, answer=answer)

        budget = (timeout or VERIFY_TIMEOUT_S) * most + 2 * self.settings.timeout
        return self._run("send", hosts, remote, local, budget)

    def logs(
        self,
        agent: str,
        lines: int,
        write: Write,
        *,
        generation: str = "",
        screen: bool = False,
        raw: bool = False,
        follow: bool = False,
    ) -> None:
        """:meth:`LocalFleet.logs` for ``agent`` wherever it runs; on another host its
        output is streamed as it comes (``follow``: until Ctrl-C, which ends the follower
        on the host too)."""
        host = self.host_of(agent)
        if host == LOCAL:
            self.local().logs(agent, lines, write, generation=generation, screen=screen, raw=raw, follow=follow)
            return
        argv = ["logs", "--agent", agent, "--lines", str(lines), "--backend", self.roster.hosts[host].backend]
        argv += [*(["--screen"] if screen else []), *(["--raw"] if raw else []), *_opt("--generation", generation)]
        with self.links() as links:
            link = links[host]
            try:
                if follow:
                    run = link.follow([*argv, "--follow"], write)
                else:
                    run = link.fleet(argv, deadline=Deadline(self.settings.timeout * 3))
            except HostError as exc:
                raise FleetError(f"{host}: {exc}") from None
            except KeyboardInterrupt:
                return  # the follow closed its channel on the way out: the host's follower ends
        if run.exit_code != 0:
            raise FleetError(f"{host}: {run.error_line()}")
        if run.stdout:
            write(run.stdout.encode())

    def screen(self, agent: str) -> Screen:
        """:meth:`LocalFleet.screen` wherever ``agent`` runs: on another host its fleet's
        ``screen --json`` (within the host timeout); a failure is one line naming the host."""
        host = self.host_of(agent)
        if host == LOCAL:
            return self.local().screen(agent)
        argv = remote_argv("screen", self.roster.hosts[host].backend, "--agent", agent)
        answer = self._one(host, lambda link, deadline: self._answer(link, argv, deadline, Screen.from_json))
        return replace(answer, host=host)

    def transcript(self, agent: str, lines: int) -> TranscriptText:
        """:meth:`LocalFleet.transcript` wherever ``agent`` runs: on another host its
        fleet's ``logs`` (the transcript rendered there); none there is
        :class:`~fleetlib.transcript.NoTranscript` here too."""
        from fleetlib.transcript import NoTranscript  # noqa: PLC0415

        host = self.host_of(agent)
        if host == LOCAL:
            return self.local().transcript(agent, lines)
        argv = ["logs", "--agent", agent, "--lines", str(lines), "--backend", self.roster.hosts[host].backend]

        def read(link: HostLink, deadline: Deadline) -> TranscriptText:
            run = link.fleet(argv, deadline=deadline)
            if run.exit_code == 1 and "transcript" in run.error_line():
                raise NoTranscript(f"{host}: {run.error_line().removeprefix('error: ')}")
            if run.exit_code != 0:
                raise HostError(run.error_line())
            return TranscriptText(agent, run.stdout.removesuffix("\n"), host)

        return self._one(host, read, budget=self.settings.timeout * 3)

    def _one(self, host: str, job: Callable[[HostLink, Deadline], D], budget: float | None = None) -> D:
        """``job`` on ``host`` over one link, within ``budget`` (default: the host
        timeout); a host's failure is one :class:`FleetError` line naming it."""
        with self.links() as links:
            try:
                return job(links[host], Deadline(budget or self.settings.timeout))
            except HostError as exc:
                raise FleetError(f"{host}: {str(exc).removeprefix('error: ')}") from None

    def attach(self, agent: str, *, read_only: bool) -> int:
        """:meth:`LocalFleet.attach` wherever ``agent`` runs: on another host through
        ``ssh -t`` (this process becomes ssh; the terminal is the user's)."""
        host = self.host_of(agent)
        if host == LOCAL:
            return self.local().attach(agent, read_only=read_only)
        with self.links() as links:
            link = links[host]
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            raise FleetError(f"{'watch' if read_only else 'attach'} needs a terminal (stdin and stdout)")
        command = version_guarded(self.settings.version, ["watch" if read_only else "attach", "--agent", agent])
        exec_replacing(ssh_argv(link, command, link.jump_hosts()))

    def doctor(self, command: Callable[[str], str] | None = None) -> list[Check]:
        """This machine's checks, then per host: reachable, version, and that host's own doctor."""
        from fleetlib.checks import failed, passed  # noqa: PLC0415

        def checks_of(link: HostLink) -> Checks:
            name = link.host.name
            deadline = Deadline(self.settings.timeout * 3)
            try:
                link.connection(deadline)
            except HostError as exc:
                return Checks([failed(f"{name}: reachable", str(exc), "check the address, sshd and known_hosts")])
            found = [passed(f"{name}: reachable", f"ssh {link.host.ssh}")]
            try:
                run = link.fleet(["doctor", "--json", "--backend", link.host.backend], deadline=deadline)
            except HostError as exc:
                return Checks([*found, failed(f"{name}: version", str(exc), f"fleet hosts.bootstrap --host {name}")])
            found.append(passed(f"{name}: version", f"fleet {self.settings.version}"))
            theirs = _typed(name, parse_answer(name, run, list), Checks.from_json).checks
            return Checks([*found, *(Check(f"{name}: {c.name}", c.ok, c.detail, c.fix, c.skipped) for c in theirs)])

        remote_names = [name for name in self.roster.host_names() if name != LOCAL] or list(self.roster.hosts)
        with self.links() as links:
            results = fan_out(remote_names, lambda name: checks_of(links[name]), self.settings.timeout * 5)
        checks = list(self.local().doctor(command))
        for result in results:
            if result.data is None:
                checks.append(failed(f"{result.host}: reachable", result.error or "failed", "check the host"))
            else:
                checks.extend(result.data.checks)
        return checks

    # ------------------------------------------------------------------ worktrees

    def worktrees(self) -> HostsResult[WorktreeRows]:
        """Every host's agents' worktrees, each listed by that host's own fleet (a worktree
        lives on its agent's host); hosts without a worktree agent are not asked."""
        with_one = {agent.host for agent in self.roster.agents if agent.worktree is not None}
        names = [name for name in self.roster.host_names() if name in with_one]

        def remote(link: HostLink, part: Roster, deadline: Deadline) -> WorktreeRows:
            return self._answer(link, ["worktree.list", "--json"], deadline, WorktreeRows.from_json)

        return self._run(
            "worktree.list", names, remote, lambda part: self.local(part).worktrees(), self.settings.timeout
        )

    def remove_worktree(self, agent: str, *, force: bool = False) -> WorktreeRemoval:
        """Remove ``agent``'s worktree on its host, by that host's fleet (its refusal is
        this call's, one line naming the host)."""
        host = self.host_of(agent)
        if host == LOCAL:
            return self.local(self.roster.for_host(LOCAL)).remove_worktree(agent, force=force)
        if self.roster.get(agent).worktree is None:
            raise FleetError(f"agent {agent} has no worktree in {self.roster.source}; nothing to remove")
        argv = ["worktree.remove", "--agent", agent, "--json", *(["--force"] if force else [])]

        def remote(link: HostLink, part: Roster, deadline: Deadline) -> WorktreeRemoval:
            return self._answer(link, argv, deadline, WorktreeRemoval.from_json)

        result = self._run("worktree.remove", [host], remote, None, self.settings.timeout + GIT_BUDGET_S)
        answer = result.hosts[0]
        if answer.data is None:
            raise FleetError(f"{host}: {(answer.error or 'no answer').removeprefix('error: ')}")
        return replace(answer.data, host=host)

    def top(self) -> HostsTop:
        """Samples of what each agent costs on every host (``fleet top``)."""
        return HostsTop(self)

    # ------------------------------------------------------------------ hosts.*

    def bootstrap(
        self, host: str = "", *, progress: Callable[[str], None] = lambda _: None
    ) -> HostsResult[Bootstrapped]:
        """Install this controller's exact fleet version on each host (or ``host``) from
        wheels built here (no registry needed there)."""
        import tempfile  # noqa: PLC0415

        from fleetlib.bootstrap import build_wheels, install_on  # noqa: PLC0415  (only bootstrap builds)

        names = self.chosen(host)
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="fleet-wheels-") as directory, self.links() as links:
            # Every host is reached first (its connection stays open for the install): the
            # build takes tens of seconds, and a host that cannot be reached, or whose key is
            # not trusted yet, is said at once; with none reachable nothing is built.
            failed = {
                result.host: result
                for result in fan_out(
                    names, lambda name: _Reached(bool(links[name].connection())), self.settings.timeout * 2
                )
                if not result.ok
            }
            reached = [name for name in names if name not in failed]
            installed: dict[str, HostResult[Bootstrapped]] = {}
            if reached:
                progress("building wheels ...")
                wheels = build_wheels(Path(directory))

                def job(name: str) -> Bootstrapped:
                    version = install_on(links[name], wheels, self.settings.version)
                    return Bootstrapped(version, [wheel.name for wheel in wheels])

                installed = {result.host: result for result in fan_out(reached, job, BOOTSTRAP_BUDGET_S)}
            results = [installed.get(name) or _not_reached(failed[name]) for name in names]
        return HostsResult("bootstrap", results, time.monotonic() - started)

    def trust(self, host: str = "") -> HostsResult[Trusted]:
        """First contact: record each host's SSH key (or ``host``'s) in known_hosts."""
        names = self.chosen(host)
        with self.links() as links:
            # One at a time would be safer against two writers of known_hosts; appends are
            # atomic lines (O_APPEND), so parallel is fine.
            results = fan_out(names, lambda name: Trusted(links[name].trust()), self.settings.timeout * 2)
        return HostsResult("trust", results)


class HostsTop:
    """``fleet top`` across hosts: each sample is every host's rows (this machine's from its
    own :class:`~fleetlib.top.Top`, each other host's from its ``fleet top --once --json``,
    which measures CPU % over a gap of its own); a host that fails is named, the others shown."""

    def __init__(self, fleet: HostsFleet) -> None:
        self.fleet = fleet
        self.names = fleet.roster.host_names()
        self.here = fleet.local().top() if LOCAL in self.names else None

    def prime(self) -> None:
        """A first reading of this machine's agents (the hosts measure their own gap)."""
        if self.here is not None:
            self.here.prime()

    def sample(self) -> HostsResult[TopRows]:
        fleet = self.fleet

        def remote(link: HostLink, part: Roster, deadline: Deadline) -> TopRows:
            argv = remote_argv("top", link.host.backend, "--once")
            return fleet._answer(link, argv, deadline, TopRows.from_json)

        def local(part: Roster) -> TopRows:
            assert self.here is not None
            return TopRows(self.here.sample())

        return fleet._run("top", self.names, remote, local, fleet.settings.timeout * 3)
