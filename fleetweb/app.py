"""The ASGI app of ``fleet serve``: :func:`create_app` over a :class:`~fleetweb.fleet.WebFleet`.

Routes (every one, unknown ones too, answers 401 without the token; see :mod:`fleetweb.guard`):

- ``GET /`` the page (``GET /?token=T`` sets the cookie and redirects to ``/``), ``GET /static/*``;
- ``GET /api/agents`` the cards; ``GET /api/events`` the same as server-sent events, sent
  when anything on a card changes (the fleet is polled only while a page listens);
- ``GET /api/agents/{name}/screen`` the screen as HTML; ``.../transcript?page=N`` the transcript;
- ``POST /api/agents/{name}/send`` (``{"message": ..., "answer": false}``), ``.../restart``,
  ``.../stop``, ``POST /api/fleet/restart``: each answers ``{"ok", "lines", "error",
  "exit_code"}``, what the command line would print.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Final

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from fleetlib import transcript
from fleetlib.errors import FleetError
from fleetweb.fleet import Said, WebFleet, said_error
from fleetweb.guard import COOKIE, RateLimit, presented, same_origin, valid
from fleetweb.screen import screen_html

POLL_S: Final = 0.5  # how often the fleet's witness is read while a page listens: a change shows within a second
REFRESH_S: Final = 10.0  # the whole status at least this often (memory figures move without the witness)
# Without a witness (several hosts: each host's status is an SSH connection and a `fleet
# status` there), the whole status at most this often, or when an action wakes the hub:
# read at every poll it kept a core of every host busy while a page was open.
BLIND_REFRESH_S: Final = 3.0
KEEPALIVE_S: Final = 15.0
PAGE_LINES: Final = 200
MAX_PAGES: Final = 500
STATIC: Final = {"app.js": "text/javascript", "style.css": "text/css", "index.html": "text/html"}
SECURITY_HEADERS: Final = {
    # The page runs only its own script and never shows itself in another site's frame.
    "content-security-policy": (
        "default-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def _asset(name: str) -> str:
    return resources.files("fleetweb").joinpath("static", name).read_text(encoding="utf-8")


class Hub:
    """Reads the cards while anyone listens and hands each listener every change."""

    def __init__(self, fleet: WebFleet, poll: float, blind_refresh: float = BLIND_REFRESH_S) -> None:
        self.fleet, self.poll, self.blind_refresh = fleet, poll, blind_refresh
        self.listeners: set[asyncio.Queue[str]] = set()
        self.latest: str | None = None
        self.task: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()
        self.woken = False
        self.closing = asyncio.Event()  # the server stops: every stream ends (a page reconnects)

    async def listen(self) -> AsyncIterator[str]:
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
        self.listeners.add(queue)
        if self.latest is not None:
            queue.put_nowait(self.latest)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run())
        closing = asyncio.ensure_future(self.closing.wait())
        try:
            while not self.closing.is_set():
                got = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({got, closing}, timeout=KEEPALIVE_S, return_when=asyncio.FIRST_COMPLETED)
                if got in done:
                    yield got.result()
                    continue
                got.cancel()
                if not done:
                    yield ""
        finally:
            closing.cancel()
            self.listeners.discard(queue)

    async def _run(self) -> None:
        witnessed: str | None = None
        read_at = -math.inf
        while self.listeners:
            # The whole status (every card, a few clients and /proc reads per agent) only
            # when the fleet's cheap witness moved, an action woke us, or the figures that
            # move without it (memory, "since") are REFRESH_S old: an unchanged fleet costs
            # one tmux client a tick. With no witness (several hosts, or tmux did not answer
            # in time), every BLIND_REFRESH_S.
            try:
                witness = await run_in_threadpool(self.fleet.witness)
            except FleetError:
                witness = None
            now = time.monotonic()
            quiet = witness == witnessed and not self.fleet.settling()
            every = REFRESH_S if witness is not None else self.blind_refresh
            if quiet and now - read_at < every and not self.woken:
                await self._sleep()
                continue
            self.woken = False
            witnessed, read_at = witness, now
            try:
                cards = json.dumps(await run_in_threadpool(self.fleet.cards))
            except FleetError:
                cards = self.latest or "[]"
            if cards != self.latest:
                self.latest = cards
                for queue in list(self.listeners):
                    if queue.full():  # a slow page gets the newest cards, not a backlog
                        queue.get_nowait()
                    queue.put_nowait(cards)
            await self._sleep()
        self.latest = None

    async def _sleep(self) -> None:
        """Until the next tick, or until an action wakes the hub (then the cards are read)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), self.poll)
        if self.wake.is_set():
            self.woken = True
        self.wake.clear()


class Guard:
    """Every request shows the token; every change also comes from the page itself and
    keeps within the rate limit (see :mod:`fleetweb.guard`). :attr:`end_streams` ends the
    event streams (they never end by themselves) so the server can stop at once."""

    def __init__(self, app: ASGIApp, token: str, limit: RateLimit, end_streams: Callable[[], None]) -> None:
        self.app, self.token, self.limit = app, token, limit
        self.end_streams = end_streams

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        response = self.refusal(request)
        if response is None:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)

    def refusal(self, request: Request) -> Response | None:
        given = request.query_params.get("token")
        if request.url.path == "/" and given is not None and request.method == "GET":
            if not valid(given, self.token):
                return _plain("401: the token in the address is not this server's", 401)
            # The address held the token once; from now on the cookie carries it, and the
            # address bar (history, screenshots) no longer does.
            moved = RedirectResponse("/", status_code=303)
            moved.set_cookie(COOKIE, self.token, httponly=True, samesite="strict", path="/")
            return moved
        token, by_cookie = presented(request.headers, request.cookies)
        if not valid(token, self.token):
            answer = _plain("401: this server needs its token (open the address `fleet serve` printed)", 401)
            answer.headers["www-authenticate"] = "Bearer"
            return answer
        if request.method not in ("GET", "HEAD"):
            if not same_origin(request.headers, by_cookie):
                return _plain("403: changes are accepted from this server's own page only", 403)
            if not self.limit.allow():
                return _plain("429: too many actions; wait a few seconds", 429)
        return None


def _plain(text: str, status: int) -> PlainTextResponse:
    return PlainTextResponse(text, status_code=status, headers=SECURITY_HEADERS)


def _said(said: Said) -> JSONResponse:
    return JSONResponse(said.to_json(), headers=SECURITY_HEADERS)


def _error(text: str, status: int) -> JSONResponse:
    return JSONResponse({"ok": False, "lines": [], "error": f"error: {text}", "exit_code": 2}, status_code=status)


def create_app(
    fleet: WebFleet,
    token: str,
    *,
    clock: Callable[[], float] = time.monotonic,
    poll: float = POLL_S,
    limit: RateLimit | None = None,
) -> Guard:
    """The app: ``fleet`` is what it shows and acts on, ``token`` the secret every request
    carries, ``clock`` times the rate limit (``limit``, default 20 actions in 10 s)."""
    hub: Hub | None = None
    loop: asyncio.AbstractEventLoop | None = None

    def the_hub() -> Hub:
        nonlocal hub, loop
        if hub is None:  # made on the server's event loop, at the first page
            hub, loop = Hub(fleet, poll), asyncio.get_running_loop()
        return hub

    def end_streams() -> None:
        """End every event stream (safe from a signal handler or another thread)."""
        if hub is not None and loop is not None:
            loop.call_soon_threadsafe(hub.closing.set)

    async def page(_: Request) -> Response:
        return HTMLResponse(_asset("index.html"), headers=SECURITY_HEADERS)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return _plain("404: no such file", 404)
        return Response(_asset(name), media_type=STATIC[name], headers=SECURITY_HEADERS)

    async def agents(_: Request) -> Response:
        try:
            return JSONResponse(await run_in_threadpool(fleet.cards), headers=SECURITY_HEADERS)
        except FleetError as exc:  # the fleet cannot be read (its units not installed, tmux frozen)
            return _error(str(exc).partition("\n")[0], 503)

    async def events(_: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            async for cards in the_hub().listen():
                yield f"data: {cards}\n\n" if cards else ": keep-alive\n\n"

        headers = {**SECURITY_HEADERS, "x-accel-buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    def known(request: Request) -> str | None:
        name: str = request.path_params["name"]
        return name if name in fleet.names() else None

    async def screen(request: Request) -> Response:
        name = known(request)
        if name is None:
            return _error(f"no agent {request.path_params['name']!r} in the roster", 404)
        try:
            shown = await run_in_threadpool(fleet.screen, name)
        except FleetError as exc:
            return _error(str(exc).partition("\n")[0], 409)
        body = {
            "html": screen_html(shown.text, shown.columns, shown.rows),
            "columns": shown.columns,
            "rows": shown.rows,
            "host": shown.host,
        }
        return JSONResponse(body, headers=SECURITY_HEADERS)

    async def transcript_page(request: Request) -> Response:
        name = known(request)
        if name is None:
            return _error(f"no agent {request.path_params['name']!r} in the roster", 404)
        raw = request.query_params.get("page", "0")
        if not raw.isdigit() or int(raw) >= MAX_PAGES:
            return _error(f"page {raw!r} is not a number from 0 to {MAX_PAGES - 1}", 400)
        number = int(raw)
        try:
            text = await run_in_threadpool(fleet.transcript, name, (number + 1) * PAGE_LINES)
        except transcript.NoTranscript as exc:
            return _error(str(exc), 404)
        except FleetError as exc:
            return _error(str(exc).partition("\n")[0], 409)
        lines = text.text.splitlines()
        older = len(lines) >= (number + 1) * PAGE_LINES
        shown = lines[: len(lines) - number * PAGE_LINES] if number else lines
        body = {"lines": shown[-PAGE_LINES:], "page": number, "older": older}
        return JSONResponse(body, headers=SECURITY_HEADERS)

    async def acted(work: Callable[[], Awaitable[Said]]) -> Response:
        said = await work()
        if hub is not None:
            hub.wake.set()  # the cards show what the action did without waiting for the next poll
        return _said(said)

    async def send(request: Request) -> Response:
        name = known(request)
        if name is None:
            return _said(said_error(FleetError(f"no agent {request.path_params['name']!r} in the roster")))
        try:
            body = await request.json()
        except ValueError:
            return _error("the request body is not JSON", 400)
        message = body.get("message") if isinstance(body, dict) else None
        answer = body.get("answer", False) if isinstance(body, dict) else None
        if not isinstance(message, str) or not isinstance(answer, bool):
            return _error('send takes {"message": TEXT, "answer": true|false}', 400)
        if not message:
            return _said(said_error(FleetError("the message is empty; type the text to send")))
        return await acted(lambda: run_in_threadpool(fleet.send, name, message, answer=answer))

    async def agent_action(request: Request) -> Response:
        name = known(request)
        if name is None:
            return _said(said_error(FleetError(f"no agent {request.path_params['name']!r} in the roster")))
        action: str = request.path_params["action"]
        return await acted(lambda: run_in_threadpool(fleet.act, action, name))

    async def fleet_restart(_: Request) -> Response:
        return await acted(lambda: run_in_threadpool(fleet.act, "restart", None))

    routes = [
        Route("/", page),
        Route("/static/{name}", static),
        Route("/api/agents", agents),
        Route("/api/events", events),
        Route("/api/agents/{name}/screen", screen),
        Route("/api/agents/{name}/transcript", transcript_page),
        Route("/api/agents/{name}/send", send, methods=["POST"]),
        Route("/api/agents/{name}/{action:str}", agent_action, methods=["POST"]),
        Route("/api/fleet/restart", fleet_restart, methods=["POST"]),
    ]
    inner = Starlette(routes=routes)
    return Guard(inner, token, limit or RateLimit(clock=clock), end_streams)
