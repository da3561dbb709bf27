"""What keeps ``fleet serve`` safe: the token, where it may listen, who may change things.

- **The token** (:func:`ensure_token`, :func:`read_token_file`): a random secret kept 0600
  in the fleet's run dir (or the file ``--token-file`` names). Every request carries it:
  ``Authorization: Bearer``, or the ``HttpOnly; SameSite=Strict`` cookie the page's first
  visit (the printed URL, which holds the token once) sets.
- **Where** (:func:`parse_bind`): loopback unless told; a non-loopback address needs
  ``--token-file`` (the server speaks plain HTTP: TLS goes in front).
- **Changes** (:func:`same_origin`, :class:`RateLimit`): a request that changes something
  also comes from the page itself (``Origin``/``Sec-Fetch-Site``: no other tab can make the
  browser send it with the cookie), and actions are rate limited.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import stat
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from fleetlib.errors import FleetError
from fleetlib.serving import DEFAULT_BIND

TOKEN_FILE: Final = "serve.token"  # noqa: S105 (a file name, not a secret)
COOKIE: Final = "fleet_token"
TOKEN_BYTES: Final = 32
MAX_TOKEN_FILE: Final = 4096  # a token file is a line, never a big file read whole
MIN_TOKEN: Final = 16
ACTIONS_PER_WINDOW: Final = 20
WINDOW_S: Final = 10.0


@dataclass(frozen=True)
class Bind:
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False  # a name: it may resolve anywhere

    def url(self, port: int | None = None) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port if port is None else port}"


def parse_bind(raw: str) -> Bind:
    """``HOST:PORT`` (``[::1]:8470`` for IPv6); FleetError naming the flag otherwise."""
    host, sep, port = raw.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise FleetError(f"--bind {raw!r} is not HOST:PORT (e.g. {DEFAULT_BIND}, or [::1]:8470)")
    return Bind(host, int(port))


def check_exposure(bind: Bind, token_file: str) -> None:
    """FleetError unless ``bind`` is loopback or a token file was given."""
    if not bind.loopback and not token_file:
        raise FleetError(
            f"--bind {bind.host}:{bind.port} listens beyond this machine: give --token-file FILE "
            "(a secret only you can read) and put TLS in front (a reverse proxy); the server speaks plain HTTP"
        )


def _new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def ensure_token(run_dir: Path) -> str:
    """The run dir's token, created 0600 (exclusively, never through a link) when missing;
    one that others can read is replaced."""
    run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = run_dir / TOKEN_FILE
    flags = os.O_RDONLY | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        fd = -1
    except OSError as exc:
        raise FleetError(f"cannot read the server token {path}: {exc.strerror}") from exc
    if fd >= 0:
        with os.fdopen(fd, "rb") as opened:
            info = os.fstat(opened.fileno())
            token = opened.read(MAX_TOKEN_FILE).decode("ascii", "replace").strip()
        private = stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077
        if private and len(token) >= MIN_TOKEN:
            return token
        path.unlink()
    token = _new_token()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token


def read_token_file(raw: str) -> str:
    """The token in ``--token-file``: a regular file only its owner can read, of at least
    :data:`MIN_TOKEN` characters (FleetError saying what is wrong otherwise)."""
    path = Path(raw).expanduser()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise FleetError(f"--token-file {raw}: cannot read it ({exc.strerror})") from exc
    with os.fdopen(fd, "rb") as opened:
        info = os.fstat(opened.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise FleetError(f"--token-file {raw}: not a regular file")
        if info.st_mode & 0o077:
            raise FleetError(f"--token-file {raw}: others can read it; run `chmod 600 {raw}`")
        token = opened.read(MAX_TOKEN_FILE).decode("utf-8", "replace").strip()
    if len(token) < MIN_TOKEN or any(char.isspace() for char in token):
        raise FleetError(
            f"--token-file {raw}: holds no token of at least {MIN_TOKEN} characters on one line; "
            "make one with `python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > FILE`"
        )
    return token


def presented(headers: Mapping[str, str], cookies: Mapping[str, str]) -> tuple[str | None, bool]:
    """The token a request carries and whether it came as the cookie (which a browser adds
    by itself, so a change needs :func:`same_origin` too)."""
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), False
    cookie = cookies.get(COOKIE)
    return (cookie, True) if cookie else (None, False)


def valid(token: str | None, expected: str) -> bool:
    return token is not None and secrets.compare_digest(token.encode(), expected.encode())


def same_origin(headers: Mapping[str, str], by_cookie: bool) -> bool:
    """The request comes from the page itself: ``Sec-Fetch-Site`` (when sent) is
    ``same-origin``, and ``Origin`` (when sent) names this server's host (a TLS proxy in
    front changes the scheme, not the host). A request that carries the cookie must show
    one of them (browsers send both); a script with the bearer header needs neither
    (another page cannot make a browser send that header)."""
    site = headers.get("sec-fetch-site")
    origin = headers.get("origin")
    if site is not None and site != "same-origin":
        return False
    if origin is not None and urlsplit(origin).netloc != headers.get("host", ""):
        return False
    return not by_cookie or site is not None or origin is not None


@dataclass
class RateLimit:
    """At most ``limit`` actions in any ``window`` seconds (a sliding window, one for the server)."""

    limit: int = ACTIONS_PER_WINDOW
    window: float = WINDOW_S
    clock: Callable[[], float] = field(default=lambda: 0.0)
    taken: deque[float] = field(default_factory=deque)

    def allow(self) -> bool:
        now = self.clock()
        while self.taken and self.taken[0] <= now - self.window:
            self.taken.popleft()
        if len(self.taken) >= self.limit:
            return False
        self.taken.append(now)
        return True
