"""Where ``fleet serve`` runs, for ``doctor`` and ``fleet install --serve`` (no web code here).

- :func:`write_record` / :func:`remove_record`: a running server records its address and
  pid (never the token) in ``<run dir>/serve.json``; it removes the record when it stops.
- :func:`serve_unit_text`: the ``systemd --user`` unit ``fleet install --serve`` writes
  beside the watcher's. It does not follow the holder: the page shows a stopped fleet too,
  and can start it again.
- :func:`check_serve`: a configured server (a record or the unit) answers its address; a
  server that answers 401 to a request without the token is up and guarded.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from fleetlib import procs
from fleetlib.atomic import atomic_write_text
from fleetlib.checks import Check, failed, passed, skipped
from fleetlib.errors import FleetOperationError
from fleetlib.pane import base_environment
from fleetlib.paths import FleetPaths
from fleetlib.results import InstallResult
from fleetlib.roster import Roster
from fleetlib.runner import Runner, apply_change
from fleetlib.systemd import UnitNames
from fleetlib.units import _HEADER, clean_env_argv, exec_line
from fleetlib.watcher import watcher_environment

DEFAULT_BIND: Final = "127.0.0.1:8470"  # loopback only: `fleet serve` without --bind
RECORD: Final = "serve.json"
SYSTEMCTL_TIMEOUT_S: Final = 30.0
ANSWER_TIMEOUT_S: Final = 5.0
MAX_RECORD: Final = 4096


@dataclass(frozen=True)
class ServeAt:
    """Where `fleet install --serve`'s server listens (``HOST:PORT``) and the token file it
    reads (an absolute path; empty: the run dir's token)."""

    bind: str = DEFAULT_BIND
    token_file: str = ""


def unit_name(units: UnitNames) -> str:
    """The server's unit, named like the watcher's (``mosaic-fleet-serve.service``)."""
    return f"{units.prefix}fleet-serve.service"


def serve_argv(python: str, home: Path, roster: Path, unit_dir: Path, bind: str, token_file: str) -> list[str]:
    """How the unit starts the server: this Python, the fleet's home, roster and unit
    directory (the server reads the units it installed beside), the address and token file."""
    argv = [python, "-m", "fleetctl", "serve", "--home", str(home), "--roster", str(roster)]
    argv += ["--unit-dir", str(unit_dir), "--backend", "systemd", "--bind", bind]
    return [*argv, "--token-file", token_file] if token_file else argv


def serve_unit_text(
    argv: Sequence[str], environment: Mapping[str, str], source: str, env_bin: str, units: UnitNames
) -> str:
    """The server's unit: started at login (enabled), restarted when it fails."""
    clean = clean_env_argv(env_bin, environment)
    return (
        _HEADER.format(source=source)
        + f"""[Unit]
Description={units.describe("Mosaic fleet web page (fleet serve)")}

[Service]
Type=simple
WorkingDirectory=~
{exec_line("ExecStart", [*clean, *argv])}
Restart=on-failure
RestartSec=2

[Install]
WantedBy=default.target
"""
    )


def write_record(run_dir: Path, base_url: str, pid: int) -> None:
    atomic_write_text(run_dir / RECORD, json.dumps({"url": base_url, "pid": pid}) + "\n", mode=0o600)


def remove_record(run_dir: Path, pid: int) -> None:
    """Remove the record if it is still this server's (another may have started since)."""
    if (read_record(run_dir) or {}).get("pid") == pid:
        (run_dir / RECORD).unlink(missing_ok=True)


def read_record(run_dir: Path) -> dict[str, Any] | None:
    """The record, or None when there is none or it is not one (checked, never trusted)."""
    try:
        with (run_dir / RECORD).open("rb") as opened:
            found = json.loads(opened.read(MAX_RECORD))
    except (OSError, ValueError):
        return None
    ok = isinstance(found, dict) and isinstance(found.get("url"), str) and isinstance(found.get("pid"), int)
    return found if ok and str(found["url"]).startswith(("http://", "https://")) else None


def running_server(run_dir: Path) -> dict[str, Any] | None:
    """The record of a server of this fleet that runs now, if one does."""
    record = read_record(run_dir)
    return record if record is not None and procs.exists(int(record["pid"])) else None


def answers(url: str, timeout: float = ANSWER_TIMEOUT_S) -> int | None:
    """The HTTP status ``url`` answers a request without the token with; None if nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 (http(s) only, checked above)
            return int(answer.status)
    except urllib.error.HTTPError as refused:
        return refused.code
    except (OSError, ValueError):
        return None


def unit_path(unit_dir: Path, home: Path) -> Path:
    return unit_dir / unit_name(UnitNames.for_home(home))


def check_serve(
    run_dir: Path,
    unit_installed: bool,
    start: str,
    *,
    ask: Callable[[str], int | None] = answers,
    alive: Callable[[int], bool] = procs.exists,
) -> Check:
    """``serve``: passed when no server is configured or the configured one answers 401
    (up, and wanting the token); failed otherwise, saying how to start it."""
    name = "serve"
    record = read_record(run_dir)
    if record is None or not alive(int(record["pid"])):
        if unit_installed:
            return failed(name, "the fleet serve unit is installed but no server runs", f"start it with `{start}`")
        return skipped(name, "no fleet serve configured")
    url, pid = str(record["url"]), int(record["pid"])
    status = ask(url + "/")
    if status == 401:
        return passed(name, f"fleet serve (pid {pid}) answers at {url}, and asks for its token")
    what = "does not answer" if status is None else f"answers {status} without the token (expected 401)"
    return failed(name, f"fleet serve (pid {pid}) at {url} {what}", f"stop it (kill {pid}) and start it with `{start}`")


def install_unit(
    result: InstallResult,
    paths: FleetPaths,
    roster: Roster,
    unit_dir: Path,
    runner: Runner,
    *,
    enable: bool = True,
    at: ServeAt | None = None,
    python: str = sys.executable,
) -> InstallResult:
    """``fleet install --serve``: ``result`` (the fleet's install) with the server's unit
    written (when it differs), the manager reloaded, and the unit enabled and started;
    listening where ``at`` says (default: loopback, port 8470, the run dir's token)."""
    at = at or ServeAt()
    units = UnitNames.for_home(paths.home)
    name = unit_name(units)
    path = unit_dir / name
    environment = {**base_environment(os.environ, str(Path.home())), **watcher_environment()}
    argv = serve_argv(python, paths.home, paths.roster, unit_dir, at.bind, at.token_file)
    text = serve_unit_text(argv, environment, roster.source, shutil.which("env") or "/usr/bin/env", units)
    try:
        current = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        current = None
    written, reloaded, enabled = list(result.written), result.reloaded, list(result.enabled)
    if current != text:
        written.append(str(path))
        apply_change(runner, lambda: atomic_write_text(path, text, secret=True))  # 0600 as every unit file
        _systemctl(runner, "daemon-reload")
        reloaded = True
    if enable and not (unit_dir / "default.target.wants" / name).exists():
        _systemctl(runner, "enable", "--now", name)
        enabled.append(name)
    elif current != text and current is not None:
        _systemctl(runner, "try-restart", name)  # a running server takes the new unit
    token_at = at.token_file or paths.run_dir / "serve.token"
    note = f"fleet serve runs as {name} on http://{at.bind}; open /?token=TOKEN there once (TOKEN is in {token_at})"
    return replace(result, written=written, reloaded=reloaded, enabled=enabled, notes=[*result.notes, note])


def _systemctl(runner: Runner, *args: str) -> None:
    done = runner.run(["systemctl", "--user", *args], timeout=SYSTEMCTL_TIMEOUT_S)
    if not done.ok:
        raise FleetOperationError(f"systemctl --user {' '.join(args)} failed: {done.error_line()}")


def uninstall_unit(result: InstallResult, paths: FleetPaths, unit_dir: Path, runner: Runner) -> InstallResult:
    """``fleet uninstall``: ``result`` with the server's unit (if installed) stopped,
    disabled and removed; without a user manager the file is still removed."""
    name = unit_name(UnitNames.for_home(paths.home))
    path = unit_dir / name
    if not path.exists():
        return result
    stopped = runner.run(["systemctl", "--user", "disable", "--now", name], timeout=SYSTEMCTL_TIMEOUT_S).ok

    def remove() -> None:
        path.unlink(missing_ok=True)
        (unit_dir / "default.target.wants" / name).unlink(missing_ok=True)

    apply_change(runner, remove)
    if stopped:
        _systemctl(runner, "daemon-reload")
    return replace(
        result,
        removed=[*result.removed, str(path)],
        disabled=[*result.disabled, name] if stopped else result.disabled,
        reloaded=result.reloaded or stopped,
    )
