"""Running the app: :func:`serve` listens on an address already checked by
:mod:`fleetweb.guard`, says where (text or JSON, the token in the address once) and serves
until interrupted."""

from __future__ import annotations

import json
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import uvicorn

from fleetlib import serving
from fleetlib.errors import FleetError
from fleetweb.app import create_app
from fleetweb.fleet import WebFleet
from fleetweb.guard import Bind

GRACE_S = 1.0  # open event streams never end by themselves: a stop closes them after this


def listen(bind: Bind) -> socket.socket:
    """A listening socket on ``bind`` (port 0: any free port); FleetError naming the address."""
    family = socket.AF_INET6 if ":" in bind.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((bind.host, bind.port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise FleetError(f"--bind {bind.host}:{bind.port}: cannot listen there ({exc.strerror})") from exc
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server that also ends the app's event streams when asked to stop."""

    def __init__(self, config: uvicorn.Config, end_streams: Callable[[], None]) -> None:
        super().__init__(config)
        self.end_streams = end_streams

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.end_streams()
        super().handle_exit(sig, frame)


def _exit_quietly(signum: int, _: object) -> None:
    raise SystemExit(0)


def serve(
    fleet: WebFleet,
    token: str,
    bind: Bind,
    *,
    as_json: bool,
    record_in: Path | None = None,
    say: Callable[[str], None] = print,
) -> None:
    """Serve ``fleet`` on ``bind`` until SIGINT/SIGTERM; first say the URL (with the token)
    and the pid, as text or one JSON object. ``record_in`` (the run dir) holds the address
    and pid while it serves, for ``fleet doctor`` (see :mod:`fleetlib.serving`)."""
    sock = listen(bind)
    port = sock.getsockname()[1]
    url = f"{bind.url(port)}/?token={token}"
    pid = os.getpid()
    app = create_app(fleet, token)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=int(GRACE_S),
    )
    # uvicorn stops on SIGINT/SIGTERM, then raises the signal again with the handler it found:
    # these handlers end the process through Python, so the record is removed on the way out.
    previous = signal.signal(signal.SIGTERM, _exit_quietly)
    try:
        if record_in is not None:  # before the address is said: whoever reads it finds the record
            serving.write_record(record_in, bind.url(port), pid)
        if as_json:
            say(json.dumps({"url": url, "pid": pid, "bind": f"{bind.host}:{port}"}))
        else:
            say(f"serving the fleet at {url} (pid {pid}; Ctrl-C stops)")
            if not bind.loopback:
                say("this address is reachable from other machines: put TLS in front (a reverse proxy)")
        _Server(config, app.end_streams).run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()
        if record_in is not None:
            serving.remove_record(record_in, pid)
