"""User-facing errors.

Every error a user can cause (a broken roster, an unknown agent, a missing user manager)
is a :class:`FleetError`. Its ``str()`` is one line that says what is wrong, where, and
how to fix it; the task layer prints it on stderr and exits with code 2. Anything else
escaping fleetlib is a bug and keeps its traceback.
"""

from __future__ import annotations


class FleetError(Exception):
    """A problem the user can fix; the message is a single line. Exit status 2."""

    exit_code = 2


class FleetOperationError(FleetError):
    """An operation was attempted and (partly) failed, e.g. an agent did not stop or did not
    come up in time. The message names every failure. Exit status 1."""

    exit_code = 1


class RosterError(FleetError):
    """A roster file that cannot be read or does not validate.

    The message names the file, the line (when known) and the field, in the
    ``path:line: field: problem`` form editors and CI logs understand.
    """

    def __init__(self, path: str, problem: str, *, line: int | None = None, field: str = "") -> None:
        self.path = path
        self.line = line
        self.field = field
        self.problem = problem
        where = f"{path}:{line}" if line is not None else path
        prefix = f"{where}: {field}: " if field else f"{where}: "
        super().__init__(prefix + problem)
