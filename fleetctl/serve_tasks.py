"""``fleet serve``: the fleet on a live web page (:mod:`fleetweb`).

Starlette and uvicorn are imported only when the task runs, so ``fleet --list`` and every
other task start without them."""

from __future__ import annotations

import sys

from invoke.context import Context
from invoke.tasks import task

from fleetctl.options import FLEET_HELP, JSON_HELP, fleet_paths, user_errors

BIND_HELP = "HOST:PORT to listen on (default 127.0.0.1:8470: this machine only; port 0 picks a free one)."
TOKEN_FILE_HELP = (
    "A file (0600) holding the token every request must carry; needed to listen beyond loopback "  # noqa: S105
    "(default: a token kept in the fleet's run dir)."
)


@task(auto_shortflags=False, help={**FLEET_HELP, "bind": BIND_HELP, "token_file": TOKEN_FILE_HELP, "json": JSON_HELP})
@user_errors
def fleet_serve(
    c: Context,
    bind: str = "",
    token_file: str = "",
    home: str = "",
    roster: str = "",
    unit_dir: str = "",
    backend: str = "",
    json: bool = False,
) -> None:
    """Serve a live web page of the fleet: states, screens, transcripts, and actions.

    Listens on loopback unless --bind says otherwise (then --token-file is needed, and TLS
    belongs in front). Prints the address with the token once (--json: {"url", "pid"});
    every request needs the token, every change also the page's own origin."""
    from fleetctl.fleet_tasks import open_any  # noqa: PLC0415
    from fleetlib import serving  # noqa: PLC0415
    from fleetlib.errors import FleetError  # noqa: PLC0415
    from fleetlib.fleet import LocalFleet  # noqa: PLC0415
    from fleetlib.roster import load_roster  # noqa: PLC0415
    from fleetlib.serving import DEFAULT_BIND  # noqa: PLC0415
    from fleetweb import guard  # noqa: PLC0415

    address = guard.parse_bind(bind or DEFAULT_BIND)
    guard.check_exposure(address, token_file)
    paths = fleet_paths(c, home, roster)
    loaded = load_roster(paths.roster)
    if loaded.hosts:
        raise FleetError("fleet serve does not cover a roster with hosts yet; serve each host's fleet on that host")
    running = serving.running_server(paths.run_dir)
    if running is not None:
        raise FleetError(
            f"fleet serve already runs for this fleet (pid {running['pid']} at {running['url']}); "
            f"one server per fleet: stop it first (kill {running['pid']})"
        )
    token = guard.read_token_file(token_file) if token_file else guard.ensure_token(paths.run_dir)
    from fleetweb.fleet import WebFleet  # noqa: PLC0415
    from fleetweb.server import serve  # noqa: PLC0415

    local = open_any(c, home=home, roster=roster, loaded=loaded, unit_dir=unit_dir, backend=backend)
    assert isinstance(local, LocalFleet)  # a roster with hosts was refused above
    fleet = WebFleet(lifecycle=local.engine, messenger=local.messenger())
    say = lambda line: print(line, flush=True, file=sys.stdout)  # noqa: E731
    serve(fleet, token, address, as_json=json, record_in=paths.run_dir, say=say)
