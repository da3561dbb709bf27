"""``fleet serve``: the fleet on a live web page (:mod:`fleetweb`); ``fleet screen``: an
agent's visible screen, which the page shows (and asks each host for).

Starlette and uvicorn are imported only when ``serve`` runs, so ``fleet --list`` and every
other task start without them."""

from __future__ import annotations

import sys

from invoke.context import Context
from invoke.tasks import task

from fleetctl.options import BIND_HELP, FLEET_HELP, JSON_HELP, TOKEN_FILE_HELP, fleet_paths, required, user_errors


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
    every request needs the token, every change also the page's own origin. A roster with
    hosts is served whole: every host's agents, through each host's own fleet."""
    from fleetctl.fleet_tasks import open_any  # noqa: PLC0415
    from fleetlib import serving  # noqa: PLC0415
    from fleetlib.errors import FleetError  # noqa: PLC0415
    from fleetlib.serving import DEFAULT_BIND  # noqa: PLC0415
    from fleetweb import guard  # noqa: PLC0415

    address = guard.parse_bind(bind or DEFAULT_BIND)
    guard.check_exposure(address, token_file)
    paths = fleet_paths(c, home, roster)
    running = serving.running_server(paths.run_dir)
    if running is not None:
        raise FleetError(
            f"fleet serve already runs for this fleet (pid {running['pid']} at {running['url']}); "
            f"one server per fleet: stop it first (kill {running['pid']})"
        )
    token = guard.read_token_file(token_file) if token_file else guard.ensure_token(paths.run_dir)
    from fleetweb.fleet import WebFleet  # noqa: PLC0415
    from fleetweb.server import serve  # noqa: PLC0415

    fleet = WebFleet(open_any(c, home=home, roster=roster, unit_dir=unit_dir, backend=backend).pinned())
    say = lambda line: print(line, flush=True, file=sys.stdout)  # noqa: E731
    serve(fleet, token, address, as_json=json, record_in=paths.run_dir, say=say)


@task(auto_shortflags=False, help={**FLEET_HELP, "agent": "Agent whose screen to show (required).", "json": JSON_HELP})
@user_errors
def fleet_screen(
    c: Context,
    agent: str = "",
    home: str = "",
    roster: str = "",
    unit_dir: str = "",
    backend: str = "",
    json: bool = False,
) -> None:
    """Print an agent's visible screen as tmux draws it, colours included.

    --json: {"agent", "host", "text", "columns", "rows"}. An agent without a window is one
    line on stderr, exit 2."""
    from fleetctl.fleet_tasks import open_any  # noqa: PLC0415
    from fleetctl.render import print_json  # noqa: PLC0415

    required("--agent", agent)
    shown = open_any(c, home=home, roster=roster, unit_dir=unit_dir, backend=backend).screen(agent)
    if json:
        print_json(shown.to_json())
    else:
        sys.stdout.write(shown.text)
