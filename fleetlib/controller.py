"""The controller: one roster, one command, agents on many hosts.

The controller splits the roster by host and runs each host's part with the very engine
that runs a one-machine fleet: on ``local`` through :mod:`fleetlib` directly, on every other
host through the same ``fleet`` command running *there* with ``--json`` (so the same
restart lock, in that host's fleet home, serialises every controller that drives it).
It never re-implements lifecycle policy; it only fans out, bounds, and merges.

Guarantees:

* **Parallel, bounded, isolated.** Hosts run at the same time, each in its own thread with
  its own deadline. A host that is unreachable, refuses, is skewed or does not answer in
  time fails *alone*: its :class:`HostResult` says why in one line, the others finish.
  Threads are daemons, so a wedged host can never keep the command from exiting.
* **Batches.** :func:`in_batches` runs K hosts at a time and stops after the first batch
  with a failure; hosts never attempted are listed as such.
* **Results as data.** Every host's answer is a typed result
  (:class:`~fleetlib.results.HostResult`, merged into a :class:`~fleetlib.results.HostsResult`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

from fleetlib.errors import FleetError
from fleetlib.hosts import LOCAL
from fleetlib.remote import HostError, RemoteRun
from fleetlib.results import HostData, HostResult, HostsResult

__all__ = ["HostResult", "HostsResult", "fan_out", "in_batches", "local_first", "parse_answer"]

# Remote exit codes that still carry a JSON answer on stdout: ok, operation failed, not all up.
ANSWERING_EXITS: Final = (0, 1, 3)

D = TypeVar("D", bound=HostData)
HostJob = Callable[[str], D]


def _one_line(text: str) -> str:
    """A host's failure is one line on stderr: the first non-blank line of ``text`` (some
    library exceptions, invoke's among them, spread their message over several)."""
    return next((line.strip() for line in text.splitlines() if line.strip()), text.strip() or "failed")


def _run_one(host: str, job: HostJob[D], slot: list[HostResult[D]]) -> None:
    started = time.monotonic()
    try:
        data = job(host)
    except (HostError, FleetError) as exc:
        slot.append(HostResult(host=host, ok=False, seconds=time.monotonic() - started, error=_one_line(str(exc))))
        return
    except Exception as exc:  # a bug on one host's path must not hide the others' results
        problem = f"internal error: {type(exc).__name__}: {_one_line(str(exc))}"
        slot.append(HostResult(host=host, ok=False, seconds=time.monotonic() - started, error=problem))
        return
    slot.append(HostResult.answered(host, data, time.monotonic() - started))


def fan_out(hosts: Sequence[str], job: HostJob[D], deadline: float) -> list[HostResult[D]]:
    """Run ``job(host)`` for every host at once; each gets ``deadline`` seconds.

    A job that raises :class:`HostError`/:class:`FleetError` fails its host with that line;
    one still running at its deadline fails with "no answer within ..." and is abandoned
    (a daemon thread: it cannot keep the process alive). Results keep the order of ``hosts``.
    """
    slots: dict[str, list[HostResult[D]]] = {host: [] for host in hosts}
    threads = {
        host: threading.Thread(target=_run_one, args=(host, job, slots[host]), name=f"fleet-host-{host}", daemon=True)
        for host in hosts
    }
    started = time.monotonic()
    for thread in threads.values():
        thread.start()
    results: list[HostResult[D]] = []
    for host, thread in threads.items():
        # A join longer than the platform's lock timeout would raise OverflowError: wait
        # that long at most (about 292 years), which is waiting "forever".
        thread.join(min(max(0.0, started + deadline - time.monotonic()), threading.TIMEOUT_MAX))
        if slots[host]:
            results.append(slots[host][0])
        else:
            results.append(
                HostResult(
                    host=host,
                    ok=False,
                    seconds=time.monotonic() - started,
                    error=f"no answer within {deadline:g}s; abandoned",
                )
            )
    return results


def in_batches(hosts: Sequence[str], size: int, job: HostJob[D], deadline: float) -> list[HostResult[D]]:
    """:func:`fan_out` over ``size`` hosts at a time; after a batch with a failure the
    remaining hosts are not attempted (``attempted`` false, with the reason)."""
    results: list[HostResult[D]] = []
    for index in range(0, len(hosts), size):
        batch = fan_out(hosts[index : index + size], job, deadline)
        results.extend(batch)
        failed = [result.host for result in batch if not result.ok]
        if failed:
            reason = f"not attempted: batch with {', '.join(failed)} failed"
            results.extend(
                HostResult(host=host, ok=False, seconds=0.0, error=reason, attempted=False)
                for host in hosts[index + size :]
            )
            break
    return results


def parse_answer(host: str, run: RemoteRun, expect: type) -> Any:
    """The remote's JSON answer (exit 0, 1 or 3 with JSON of type ``expect`` on stdout; or
    2 with it: `send --all` answers for each agent, refusals only), else
    :class:`HostError` with the remote's own ``error:`` line."""
    if run.exit_code in (*ANSWERING_EXITS, 2) and run.stdout.strip():
        try:
            data = json.loads(run.stdout)
        except ValueError:
            data = None
        if isinstance(data, expect):
            return data
    if run.exit_code in ANSWERING_EXITS and not run.stdout.strip() and run.exit_code != 0:
        raise HostError(run.error_line())
    if run.exit_code not in ANSWERING_EXITS:
        raise HostError(run.error_line())
    raise HostError(f"unexpected answer from fleet on {host} (exit {run.exit_code}): not {expect.__name__} JSON")


def local_first(hosts: Sequence[str]) -> list[str]:
    """``local`` first (when present), then the others in the given order."""
    return [*(h for h in hosts if h == LOCAL), *(h for h in hosts if h != LOCAL)]
