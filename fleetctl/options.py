"""What every task shares: flag help, flag checking, config resolution, error rendering.

Flags that take a value are declared as strings (default ``""``) and converted here, not
by Invoke: Invoke converts a ``float``/``int`` flag while parsing and a bad value then
escapes as a ``ValueError`` traceback, and a flag without a default becomes a required
positional argument that Invoke reports in its own words with exit 1. Converting here
turns every bad value into one ``error: ...`` line with exit 2, checked before anything
changes; and ``--timeout=STRING`` in ``--help`` at least shows that the flag takes a value.
"""

from __future__ import annotations

import functools
import math
import os
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from invoke.context import Context
from invoke.exceptions import Exit

# The one fleetlib module every command imports: a few exception classes, nothing else.
# Everything else of fleetlib is imported where a task uses it, so `fleet --list` and
# `fleet --help` load no more than the task tree (docs/development/startup.md).
from fleetlib import defaults
from fleetlib.defaults import MAX_SECONDS
from fleetlib.errors import FleetError

if TYPE_CHECKING:
    from fleetlib.paths import FleetPaths

F = TypeVar("F", bound=Callable[..., Any])

HOME_HELP: Final = "Fleet home (default: config fleet.home, then $MOSAIC_HOME, then ~/.config/mosaic)."
ROSTER_HELP: Final = "Roster file (default: config fleet.roster, then <home>/fleet/roster.yaml)."
JSON_HELP: Final = "Print machine-readable JSON on stdout instead of text (schemas: docs/reference/json.md)."
DRY_RUN_HELP: Final = "Print what would run and change nothing."
BACKEND_HELP: Final = "auto (default: systemd when a user manager answers, else tmux), systemd or tmux."
UNIT_DIR_HELP: Final = "Where unit files live (default: config fleet.unit_dir, then $XDG_CONFIG_HOME/systemd/user)."
PATH_HELP: Final = {"home": HOME_HELP, "roster": ROSTER_HELP}
FLEET_HELP: Final = {**PATH_HELP, "unit_dir": UNIT_DIR_HELP, "backend": BACKEND_HELP}
# `fleet serve`'s address and token, which `fleet install --serve` writes into its unit.
BIND_HELP: Final = "HOST:PORT to listen on (default 127.0.0.1:8470: this machine only; port 0 picks a free one)."
TOKEN_FILE_HELP: Final = (
    "A file (0600) holding the token every request must carry; needed to listen beyond loopback "  # noqa: S105
    "(default: a token kept in the fleet's run dir)."
)

USAGE_EXIT: Final = 2
FAILED_EXIT: Final = 1
BROKEN_PIPE_EXIT: Final = 141  # 128 + SIGPIPE, what a shell reports for `cmd | head`

# The library's defaults that --help quotes, from its constants-only module (the modules
# that use them load most of fleetlib, which every command, and --list, would then pay for).
WAIT_TIMEOUT_S: Final = defaults.WAIT_TIMEOUT_S
VERIFY_TIMEOUT_S: Final = defaults.VERIFY_TIMEOUT_S
WAIT_FOR_DEFAULT_S: Final = defaults.WAIT_DEFAULT_S
WAITABLE: Final = defaults.WAITABLE


def user_errors(body: F) -> F:
    """Render a :class:`FleetError` as one ``error: ...`` line on stderr with its exit code
    (2, or 1 for an operation that was attempted and failed), and an ``OSError`` on a
    named file as one line with exit 1; never a traceback."""

    @functools.wraps(body)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return body(*args, **kwargs)
        except FleetError as exc:
            raise Exit(f"error: {spell_commands(str(exc))}", code=exc.exit_code) from None
        except BrokenPipeError:
            # The reader went away (`fleet status | head`): stop quietly, like coreutils.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise Exit(code=BROKEN_PIPE_EXIT) from None
        except OSError as exc:
            if exc.filename is None:
                raise  # not about a path the user can fix: a bug, keep the traceback
            # A file the operation needed could not be used (EACCES, ENOSPC, EROFS, ...).
            raise Exit(f"error: {exc.filename}: {exc.strerror or exc}", code=FAILED_EXIT) from None

    return wrapper  # type: ignore[return-value]


# --------------------------------------------------------------------------- flag values


def required(flag: str, value: str) -> str:
    """``value`` unless empty; FleetError naming the missing flag otherwise."""
    if not value:
        raise FleetError(f"{flag} is required")
    return value


def seconds(flag: str, raw: str) -> float | None:
    """A duration flag: None when not given (the library's default applies), else a
    finite number of seconds > 0 and at most :data:`MAX_SECONDS` (``nan``, ``inf``, ``0``
    and ``-1`` are refused: a zero timeout would tear a fleet down and then give up waiting
    for it; ``1e10`` is refused: no wait is meant to outlast a week, and numbers that large
    overflow the waits they end up in)."""
    if raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise FleetError(f"{flag}: {raw!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise FleetError(f"{flag}: must be a finite number of seconds > 0, not {raw!r}")
    if value > MAX_SECONDS:
        raise FleetError(f"{flag}: must be at most {MAX_SECONDS} seconds (a week), not {raw!r}")
    return value


def count(flag: str, raw: str, default: int, minimum: int = 1) -> int:
    """A whole-number flag >= ``minimum``; ``default`` when not given."""
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise FleetError(f"{flag}: {raw!r} is not a whole number") from None
    if value < minimum:
        raise FleetError(f"{flag}: must be at least {minimum}, not {value}")
    return value


# --------------------------------------------------------------------------- config


def fleet_config(c: Context) -> dict[str, Any]:
    section = c.config.get("fleet", {})
    return dict(section) if section else {}


def fleet_paths(c: Context, home: str, roster: str) -> FleetPaths:
    """Resolve paths: flag, then ``fleet.*`` config, then the environment defaults."""
    from fleetlib.paths import FleetPaths  # noqa: PLC0415  # start-up: see the imports above

    config = fleet_config(c)
    return FleetPaths.resolve(home or config.get("home") or None, roster or config.get("roster") or None)


def requested_backend(c: Context, flag: str) -> str:
    """The backend asked for: the flag, else config ``fleet.backend``, else ``auto``;
    :class:`FleetError` for a name that is not a backend."""
    from fleetlib.hosts import HOST_BACKENDS  # noqa: PLC0415  # start-up: see the imports above

    chosen: str = flag or fleet_config(c).get("backend") or "auto"
    if chosen not in HOST_BACKENDS:
        raise FleetError(f"unknown backend {chosen!r}; use one of: {', '.join(HOST_BACKENDS)}")
    return chosen


def unit_dir_option(c: Context, flag: str) -> str:
    """The unit dir asked for (flag, then config ``fleet.unit_dir``); "" for the default."""
    return flag or fleet_config(c).get("unit_dir") or ""


class _Program:
    """Which command line is running, so hints name commands the user can type."""

    fleet = False


def use_fleet_command_names() -> None:
    """Called by the ``fleet`` program: hints say ``fleet install``, not ``inv fleet.install``."""
    _Program.fleet = True


def command(task_name: str) -> str:
    """How the user runs ``task_name`` (``fleet.install``) from the command line in use."""
    if _Program.fleet:
        return "fleet " + task_name.removeprefix("fleet.")
    return "inv " + task_name


def spell_commands(text: str) -> str:
    """Library hints name ``inv`` tasks (`` `inv fleet.start --agent a1` ``); under the
    ``fleet`` program, say what the user can type there (`` `fleet start --agent a1` ``)."""
    if not _Program.fleet:
        return text
    return _INV_TASK.sub(lambda m: f"`fleet {m.group(2) if m.group(1) else m.group(3)}", text)


_INV_TASK: Final = re.compile(r"`inv (?:(fleet)\.([a-z]+)|((?:roster|build)\.[a-z]+))")


def stderr_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
