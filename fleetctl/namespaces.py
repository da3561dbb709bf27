"""The task trees: :data:`ns` for ``inv`` (``fleet.*``, ``roster.*``, ``build.*``) and
:data:`program_ns` for the ``fleet`` program (fleet tasks at the top: ``fleet restart``;
``roster.*`` and ``build.*`` beside them). Both hold the very same task objects."""

from __future__ import annotations

from collections.abc import Container
from typing import Any, Final

from invoke.collection import Collection
from invoke.parser.context import ParserContext

from fleetctl.build_tasks import build_ns
from fleetctl.fleet_tasks import fleet_ns, fleet_tasks
from fleetctl.hosts_tasks import hosts_ns
from fleetctl.roster_tasks import roster_ns
from fleetctl.serve_tasks import fleet_screen, fleet_serve
from fleetctl.top_tasks import fleet_top
from fleetctl.worktree_tasks import worktree_ns

CONFIG: Final[dict[str, Any]] = {
    "fleet": {
        "home": "",
        "roster": "",
        "unit_dir": "",
        "backend": "auto",
        "known_hosts": "~/.ssh/known_hosts",
        "host_timeout": "",
    },
    "build": {"source": ""},
}

# What each value flag takes, for --help (`--timeout=SECONDS`). Invoke itself can only say
# STRING or INT, and every value flag here is a string that the task converts and checks.
PLACEHOLDERS: Final = {
    "timeout": "SECONDS",
    "lock-timeout": "SECONDS",
    "lines": "N",
    "home": "DIR",
    "roster": "FILE",
    "unit-dir": "DIR",
    "cwd": "DIR",
    "prefix": "DIR",
    "agent": "NAME",
    "name": "NAME",
    "package": "NAME",
    "message": "TEXT",
    "description": "TEXT",
    "command": "COMMAND",
    "host": "HOST",
    "batch": "K",
    "host-timeout": "SECONDS",
    "for": "STATE",
    "wait": "STATE",
    "sort": "KEY",
    "interval": "SECONDS",
    "bind": "HOST:PORT",
    "token-file": "FILE",
}


class HelpContext(ParserContext):
    """A task's flags, with a placeholder that says what a value flag takes."""

    def help_for(self, flag: str) -> tuple[str, str]:
        names, text = super().help_for(flag)
        bare = flag.lstrip("-")
        placeholder = PLACEHOLDERS.get(bare) or bare.upper().replace("-", "_")
        return names.replace("=STRING", f"={placeholder}").replace("=INT", f"={placeholder}"), text


class FleetCollection(Collection):
    """The root of a task tree; its parser contexts render flags with :class:`HelpContext`."""

    def to_contexts(
        self, ignore_unknown_help: bool | None = None, *, only: Container[str] | None = None
    ) -> list[ParserContext]:
        """Invoke's contexts (one per task, with its flags), as :class:`HelpContext`; with
        ``only``, just the tasks whose name or an alias is in it: building every task's
        flags costs more than the rest of parsing a command line that names one task."""
        return [
            HelpContext(
                name=primary,
                aliases=aliases,
                args=self[primary].get_arguments(ignore_unknown_help=ignore_unknown_help),
            )
            for primary, aliases in self.task_names.items()
            if only is None or primary in only or any(alias in only for alias in aliases)
        ]


# `top` lives in its own module (Rich and psutil load only when it runs).
all_fleet_tasks: Final = {**fleet_tasks, "top": fleet_top, "serve": fleet_serve, "screen": fleet_screen}
fleet_ns.add_task(fleet_top, name="top")
fleet_ns.add_task(fleet_serve, name="serve")  # starlette and uvicorn load only when it runs
fleet_ns.add_task(fleet_screen, name="screen")

ns = FleetCollection()
ns.add_collection(roster_ns)
ns.add_collection(fleet_ns)
ns.add_collection(build_ns)
ns.add_collection(hosts_ns)
ns.add_collection(worktree_ns)
ns.configure(CONFIG)

program_ns = FleetCollection()
for _name, _task in all_fleet_tasks.items():
    program_ns.add_task(_task, name=_name)
program_ns.add_collection(roster_ns)
program_ns.add_collection(build_ns)
program_ns.add_collection(hosts_ns)
program_ns.add_collection(worktree_ns)
program_ns.configure(CONFIG)
