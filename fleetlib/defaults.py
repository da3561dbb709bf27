"""The fleet's default time limits and the states one can wait for: constants only.

Nothing is imported here, so the command line can name these in its help texts without
loading the library (``fleet --list`` imports no fleetlib module but this kind).
"""

from __future__ import annotations

from typing import Final

WAIT_TIMEOUT_S: Final = 120.0  # how long start/restart wait for agents to come up
VERIFY_TIMEOUT_S: Final = 15.0  # how long a send waits for an agent to accept a message
WAIT_DEFAULT_S: Final = 300.0  # how long `fleet wait` waits for a state
# The longest duration a flag or a roster key takes: a week. Longer ones are typing
# mistakes, and past it timers overflow (threading.TIMEOUT_MAX) or a wait never ends.
MAX_SECONDS: Final = 7 * 24 * 3600
ACTIVITY_STATES: Final = ("working", "waiting", "idle")
WAITABLE: Final = (*ACTIVITY_STATES, "running", "restarting", "exited", "failed", "stopped")
