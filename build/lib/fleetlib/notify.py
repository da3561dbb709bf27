"""Notifications through Apprise: the roster key ``notify`` (ntfy, Telegram, Slack, Pushover,
e-mail, desktop, ... URLs), so a phone hears "coder3 needs input" or "coder3 done".

Three parts, kept apart so the long-lived watcher never imports Apprise (its memory budget):

- what is told and how it reads (:func:`event_of`, :func:`title_of`, :func:`body_of`):
  pure, imported by the watcher;
- the roster's check of each URL with Apprise's own parser (:func:`url_problem`), and
  :func:`mask`, which shows a URL without its secrets (a password, a token);
- the sender, ``python -m fleetlib.notify``, a child the watcher starts per transition
  like an ``on_state_change`` command (same timeout, same cap). The URLs reach it in its
  environment (:data:`URLS_ENV`), readable only by its user, never on its command line,
  which every user of the machine can read in /proc.

A URL is never printed in full: errors and the sender's output use :func:`mask`.
"""

from __future__ import annotations

import os
import socket
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from apprise import NotifyBase

URLS_ENV: Final = "FLEET_NOTIFY_URLS"  # the agent's URLs, one a line (a URL holds no line break)
MODULE: Final = "fleetlib.notify"
# What a transition says, by new state; "done" only from working (see event_of).
EVENTS: Final = {"waiting": "needs input", "idle": "done", "exited": "exited", "failed": "failed"}
BODY_MAX: Final = 1000  # characters: what a phone shows whole (Pushover's limit is 1024)
MESSAGE_MAX: Final = 4000  # characters of FLEET_MESSAGE (an environment string may hold 128 KiB)
SCREEN_BODY_LINES: Final = 8  # the screen's last lines a notification shows when no message is known
WIKI: Final = "https://github.com/caronc/apprise/wiki"


def event_of(old: str | None, new: str) -> str | None:
    """What a transition tells a person, or None when it is not worth a notification:
    ``needs input`` (into waiting), ``done`` (working to idle: a turn ended; an agent that
    comes up idle, or answers and idles without being seen working, is not "done"),
    ``exited`` or ``failed``."""
    if new == "idle" and old != "working":
        return None
    return EVENTS.get(new)


def title_of(name: str, event: str) -> str:
    """``coder3 needs input``: the agent and what happened, what a lock screen shows."""
    return f"{name} {event}"


def body_of(name: str, host: str, old: str | None, new: str, message: str, screen: str) -> str:
    """Where and what: ``coder3 on buildbox: working -> waiting``, then the agent's last
    message when a hook gave one, else the screen's last non-blank lines; at most
    :data:`BODY_MAX` characters, cut at the start of the detail (the newest text stays)."""
    head = f"{name} on {host}: {old or 'unknown'} -> {new}"
    detail = message.strip()
    if not detail:
        lines = [line.rstrip() for line in screen.splitlines() if line.strip()]
        detail = "\n".join(lines[-SCREEN_BODY_LINES:])
    if not detail:
        return head
    room = BODY_MAX - len(head) - 1
    if len(detail) > room:
        detail = "…" + detail[-(room - 1) :]
    return f"{head}\n{detail}"


def truncate_message(message: str | None) -> str:
    """FLEET_MESSAGE's value: the message's end when it is long (the conclusion is what
    a person wants), empty when none is known."""
    if not message:
        return ""
    message = message.replace("\0", "")
    return message if len(message) <= MESSAGE_MAX else "…" + message[-(MESSAGE_MAX - 1) :]


# --------------------------------------------------------------------------- URLs


def mask(url: str) -> str:
    """The URL as it may be shown: only its scheme (``tgram://…``). Apprise services keep
    secrets anywhere (a Telegram bot token is the host part, a Slack token the path), so
    nothing after the scheme is shown; the roster's field (``agents[0].notify[1]``) says
    which URL is meant."""
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme.isascii() or not scheme.replace("+", "").replace("-", "").isalnum():
        return "…"
    return f"{scheme}://…"


def url_problem(url: str) -> str | None:
    """Why Apprise cannot use ``url`` (one phrase, the URL masked), or None when it can."""
    if not url.strip():
        return "is empty; give an Apprise URL such as ntfy://TOPIC"
    if "\n" in url or "\r" in url:
        return f"{mask(url)} contains a line break; a URL is one line"
    try:
        plugin = _plugin(url)
    except ImportError:
        return "needs the Python package apprise; install it (pip install apprise) or remove notify"
    if plugin is None:
        return f"{mask(url)} is not a notification URL Apprise understands (see {WIKI})"
    return None


# --------------------------------------------------------------------------- the sender


def _apprise() -> ModuleType:
    """Apprise, imported on first use: only rosters with ``notify`` and the sender pay for
    it (never the watcher). Its own imports' deprecation warnings (``imghdr``) are not ours
    to show."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import apprise  # noqa: PLC0415

    return apprise


def _plugin(url: str) -> NotifyBase | None:
    """Apprise's plugin for ``url`` (its own parser), None when it cannot use it."""
    with warnings.catch_warnings():  # Apprise loads its plugins on first use (see _apprise)
        warnings.simplefilter("ignore", DeprecationWarning)
        plugin: NotifyBase | None = _apprise().Apprise.instantiate(url, suppress_exceptions=True)
    return plugin


def _shown(url: str, plugin: NotifyBase | None) -> str:
    """The URL in Apprise's privacy form (``json://user:****@host/``, ``tgram://1...t/``),
    without its options; :func:`mask` when Apprise cannot parse it."""
    if plugin is None:
        return mask(url)
    private: Callable[..., str] = plugin.url  # untyped in Apprise
    return private(privacy=True).partition("?")[0]


def send(environ: Mapping[str, str]) -> list[str]:
    """Send one transition (``FLEET_*`` in ``environ``, as the watcher sets them) to every
    URL of :data:`URLS_ENV`; returns one line per URL it did not reach, URLs masked."""
    apprise = _apprise()
    name, new = environ.get("FLEET_AGENT_NAME", "?"), environ.get("FLEET_NEW_STATE", "")
    old = environ.get("FLEET_OLD_STATE")
    event = event_of(old or None, new) or new
    title = title_of(name, event)
    body = body_of(
        name, socket.gethostname(), old, new, environ.get("FLEET_MESSAGE", ""), environ.get("FLEET_SCREEN", "")
    )
    kind = {"needs input": apprise.NotifyType.WARNING, "done": apprise.NotifyType.SUCCESS}.get(
        event, apprise.NotifyType.FAILURE if new == "failed" else apprise.NotifyType.INFO
    )
    failed = []
    for url in filter(None, environ.get(URLS_ENV, "").splitlines()):
        plugin = _plugin(url)
        try:
            ok = plugin is not None and bool(plugin.notify(body=body, title=title, notify_type=kind))
        except Exception as exc:  # a plugin's bug must not keep the other URLs from being told
            ok = False
            print(f"fleet notify: {_shown(url, plugin)}: {type(exc).__name__}", file=sys.stderr, flush=True)
        if not ok:
            failed.append(
                f"fleet notify: {title!r} not delivered to {_shown(url, plugin)} (check the service and the URL)"
            )
    return failed


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fleetlib.notify`` (no arguments: everything comes in the environment).
    Exit 0 when every URL was reached, 1 otherwise (each failure one line on stderr)."""
    if list(sys.argv[1:] if argv is None else argv):
        print(f"usage: {URLS_ENV}=... python -m {MODULE}", file=sys.stderr)
        return 2
    environ = dict(os.environ)
    os.environ.pop(URLS_ENV, None)  # what a service's helper process inherits has no URLs
    try:
        failed = send(environ)
    except ImportError:  # installed without its dependencies (the roster check needs it too)
        print(f"fleet notify: apprise is not installed for {sys.executable}; pip install apprise", file=sys.stderr)
        return 1
    for line in failed:
        print(line, file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
