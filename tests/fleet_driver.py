"""Drive the lifecycle engine in its own process, as the command line does, for tests that
need a real process to pause, kill or race (SIGSTOP of an owner, concurrent starts).

    python -m tests.fleet_driver start|stop|restart|status [--agent N] [--backend B]
        [--timeout S] [--lock-timeout S] [--max-wait S]

Prints the operation's JSON result on stdout; exits 0 (ok), 1 (operation failed) or the
error's exit code with one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys

from fleetlib.backend import open_fleet
from fleetlib.errors import FleetError
from fleetlib.paths import FleetPaths
from fleetlib.roster import load_roster


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("operation", choices=["start", "stop", "restart", "status", "install", "uninstall"])
    parser.add_argument("--agent")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--lock-timeout", type=float)
    parser.add_argument("--max-wait", type=float)
    args = parser.parse_args()
    paths = FleetPaths.resolve()
    try:
        fleet = open_fleet(
            paths, load_roster(paths.roster), backend=args.backend, timeout=args.timeout, lock_timeout=args.lock_timeout
        )
        if args.max_wait is not None:
            fleet.lock_options["max_wait"] = args.max_wait
        if args.operation == "status":
            print(json.dumps(fleet.status(args.agent).to_json()))
            return 0
        if args.operation in ("install", "uninstall"):
            print(json.dumps(getattr(fleet, args.operation)().to_json()))
            return 0
        result = getattr(fleet, args.operation)(args.agent)
    except FleetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps(result.to_json()))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
