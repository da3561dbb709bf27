"""The hosts of a roster: where each part of a fleet runs.

A roster may name other machines under ``hosts:``; every agent runs on one host (``host:``,
default ``local``). ``local`` is this machine: implicit, never listed, and reserved.
This module holds the model and the pure checks of an SSH target; the roster module
validates the YAML around them (``file:line``, did-you-mean) and calls these.

Nothing here opens a connection: :mod:`fleetlib.remote` does, lazily, only when a roster
has hosts, so a roster without hosts costs nothing more than before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

LOCAL: Final = "local"
DEFAULT_KNOWN_HOSTS: Final = "~/.ssh/known_hosts"
DEFAULT_HOST_TIMEOUT_S: Final = 10.0
HOST_KEYS: Final = ("ssh", "identity_file", "backend")
HOST_BACKENDS: Final = ("auto", "systemd", "tmux")
# Host names appear in output columns, JSON and `--host`: the agent-name alphabet.
HOST_NAME_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
# user@address[:port] or an ssh_config alias; no whitespace, no option-looking leading '-'.
_TARGET: Final = re.compile(
    r"(?:(?P<user>[A-Za-z0-9._][A-Za-z0-9._-]*)@)?"
    r"(?P<address>[A-Za-z0-9._%-]+|\[[0-9A-Fa-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
)


@dataclass(frozen=True)
class SshTarget:
    """Where to connect: ``address`` (a name, an IP, or an ssh_config alias), and the user
    and port when the target names them (otherwise ssh_config or the defaults apply)."""

    address: str
    user: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        text = f"{self.user}@{self.address}" if self.user else self.address
        return f"{text}:{self.port}" if self.port is not None else text


def parse_target(text: str) -> SshTarget:
    """``user@address[:port]`` or an alias as an :class:`SshTarget`; ``ValueError`` with the
    problem (one phrase, no trailing period) for anything else."""
    match = _TARGET.fullmatch(text)
    if text.startswith("-") or match is None:
        raise ValueError(f"invalid SSH target {text!r}: write user@address[:port] or an ~/.ssh/config alias")
    port = match.group("port")
    if port is not None and not 1 <= int(port) <= 65535:
        raise ValueError(f"invalid port {port} in SSH target {text!r}: use 1-65535")
    address = match.group("address").removeprefix("[").removesuffix("]")
    return SshTarget(address=address, user=match.group("user"), port=int(port) if port is not None else None)


@dataclass(frozen=True)
class Host:
    """One remote machine of the fleet: how to reach it and which backend its fleet uses."""

    name: str
    ssh: SshTarget
    identity_file: str | None = None
    backend: str = "auto"

    def to_dict(self) -> str | dict[str, str]:
        """As a roster would hold it: the target string alone when nothing else is set."""
        if self.identity_file is None and self.backend == "auto":
            return str(self.ssh)
        data = {"ssh": str(self.ssh)}
        if self.identity_file is not None:
            data["identity_file"] = self.identity_file
        if self.backend != "auto":
            data["backend"] = self.backend
        return data
