"""The ``fleet`` console script: an Invoke :class:`~invoke.program.Program` with its own
task tree (fleet tasks at the top, ``roster.*`` and ``build.*`` beside them).

Beyond Invoke's own behaviour: ``--version`` reads the installed distribution's version;
every parse error (unknown flag, a flag missing its value) is one ``error: ...`` line on
stderr with exit 2, like every other user error; and the core options that only make
sense for running shell commands from tasks (``--echo``, ``--pty``, ``--hide``, ...) are
not offered.

Start-up: the task tree (:mod:`fleetctl.namespaces`, and through it every task module) is
imported only once a command needs it, so ``fleet --version`` loads Invoke and this module
and nothing of the fleet; each task module in turn imports :mod:`fleetlib` inside its
task bodies, so ``fleet --list`` loads the task tree and no library code
(docs/development/startup.md).
"""

from __future__ import annotations

import gc
import os
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from invoke.completion.complete import print_completion_script
from invoke.config import AmbiguousMergeError
from invoke.exceptions import Exit, ParseError, UnknownFileType
from invoke.parser.argument import Argument
from invoke.parser.context import ParserContext
from invoke.parser.parser import Parser, ParseResult
from invoke.program import Program
from invoke.util import enable_logging
from invoke.vendor.yaml import YAMLError

from fleetctl import options

if TYPE_CHECKING:
    from invoke.collection import Collection

    from fleetctl.namespaces import FleetCollection

DISTRIBUTION: Final = "fleet"
CORE_FLAGS: Final = (
    "complete",
    "config",
    "debug",
    "help",
    "list",
    "list-depth",
    "list-format",
    "print-completion-script",
    "version",
)
CONFIG_ROOTS: Final = ("fleet", "build")  # the config sections the task tree declares (namespaces.py)
_NEEDS_VALUE: Final = re.compile(r"Flag <Argument: ([^ >]+)[^>]*> needed value")


def parse_error_line(exc: Exception) -> str:
    """Invoke's parse error as one ``error:`` line in this tool's words."""
    text = str(exc)
    needs = _NEEDS_VALUE.search(text)
    if needs:
        return f"error: --{needs.group(1).replace('_', '-')} needs a value"
    if text.startswith("No idea what "):
        what = text.removeprefix("No idea what ").removesuffix(" is!")
        return f"error: {what} is not a command or flag here (see --help)"
    return f"error: {text}"


def config_error_line(path: str, exc: Exception) -> str:
    """Why Invoke could not take the config file at ``path``, as one ``error:`` line."""
    if isinstance(exc, UnknownFileType):
        problem = "is of a type Invoke does not read: its name must end in .yaml, .yml, .json or .py"
    elif isinstance(exc, AmbiguousMergeError):
        problem = "cannot merge with the fleet's settings: `fleet:` and `build:` must each be a mapping of keys"
    elif isinstance(exc, YAMLError):
        problem = "is not valid YAML: " + " ".join(str(exc).split())
    else:
        problem = "cannot be read: " + (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc))
    return f"error: config file {path} {problem}"


def installed_version(name: str) -> str | None:
    """The version of the installed distribution ``name``, None when it is not installed.

    Read from the name of its ``<name>-<version>.dist-info`` directory, the first on
    ``sys.path`` (the one importlib.metadata would read): importing importlib.metadata
    loads the email package, ~15 ms, more than the rest of ``--version``. Anything else
    (an ``.egg-info`` install) is left to importlib.metadata.
    """
    prefix = name.replace("-", "_") + "-"
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:  # a zip file, a missing directory
            continue
        for found in names:
            if found.startswith(prefix) and found.endswith(".dist-info"):
                return found.removeprefix(prefix).removesuffix(".dist-info")
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version(name)
    except PackageNotFoundError:
        return None


class FleetProgram(Program):
    """``fleet``: see the module docstring."""

    @property  # Invoke assigns a plain attribute; this reads it lazily instead
    def namespace(self) -> FleetCollection:
        """The task tree, imported on first use (``--version`` never gets here)."""
        from fleetctl.namespaces import program_ns  # noqa: PLC0415  # start-up: see the module docstring

        return program_ns

    @namespace.setter
    def namespace(self, _given: Collection | None) -> None:
        # Program.__init__ assigns its argument; the tree is always program_ns, loaded above.
        pass

    @property
    def initial_context(self) -> ParserContext:
        # Program's, without asking whether a namespace was given (that would load it
        # before --version is seen): this program always has one, so no task-loading flags.
        return ParserContext(args=self.core_args())

    def core_args(self) -> list[Argument]:
        # Only what a fleet user needs: fleet's tasks never run shell commands, so Invoke's
        # run() options (--echo, --pty, --hide, --dry: not our --dry-run!) would mislead.
        return [arg for arg in super().core_args() if arg.name in CORE_FLAGS]

    def print_version(self) -> None:
        print(f"fleet {installed_version(DISTRIBUTION) or 'unknown (not installed)'}")

    def parse_core(self, argv: list[str] | None) -> None:
        # Program.parse_core, minus the flags dropped above (--write-pyc).
        self.normalize_argv(argv)
        try:
            self.parse_core_args()
        except (ParseError, ValueError) as exc:
            raise Exit(parse_error_line(exc), code=options.USAGE_EXIT) from None
        if self.args.debug.value:
            enable_logging()
        if self.args.version.value:
            self.print_version()
            raise Exit
        if self.args["print-completion-script"].value:
            try:
                print_completion_script(shell=self.args["print-completion-script"].value, names=self.binary_names)
            except ParseError as exc:  # an unknown shell
                raise Exit(parse_error_line(exc), code=options.USAGE_EXIT) from None
            raise Exit

    def update_config(self, merge: bool = True) -> None:
        # Program.update_config, minus the run() overrides of the dropped flags; a config
        # file named with -f (or INVOKE_RUNTIME_CONFIG) that is missing or unreadable is one
        # line and exit 2, not Invoke's traceback (nor, when missing, silently ignored).
        runtime_path: str | None = self.args.config.value or os.environ.get("INVOKE_RUNTIME_CONFIG")
        if runtime_path and not os.path.isfile(os.path.expanduser(runtime_path)):
            given = "given with -f or INVOKE_RUNTIME_CONFIG"
            raise Exit(f"error: config file {runtime_path} not found ({given})", code=options.USAGE_EXIT)
        self.config.set_runtime_path(runtime_path)  # type: ignore[arg-type]  # Invoke's stub says PathLike; it takes str
        try:
            self.config.load_runtime(merge=False)
            if merge:
                self.config.merge()
                # The tasks' own defaults merge in only when a task runs: a `fleet:` that is
                # not a mapping would then be Invoke's AmbiguousMergeError traceback.
                for root in CONFIG_ROOTS:
                    if not isinstance(self.config.get(root, {}), dict):
                        raise AmbiguousMergeError(root)
                    self._settle_values(root, runtime_path or "")
        except (YAMLError, UnknownFileType, AmbiguousMergeError, OSError, ValueError) as exc:
            raise Exit(config_error_line(runtime_path or "", exc), code=options.USAGE_EXIT) from None

    def _settle_values(self, root: str, path: str) -> None:
        """Every setting of ``root`` is text (a path, a name, seconds): a number becomes its
        text (``host_timeout: 30``); a list, a mapping or a boolean is one error line. Left
        a number, ``home: 5`` failed as a traceback, and so did an environment variable
        for it (``INVOKE_FLEET_HOME``), which Invoke casts to the type of the file's value."""
        if root not in self.config:
            return
        section = self.config[root]  # a proxy: setting a key records a modification
        for key, value in list(section.items()):
            if isinstance(value, int | float) and not isinstance(value, bool):
                section[key] = str(value)
            elif value is not None and not isinstance(value, str):
                where = f"config file {path}" if path else "the configuration"
                raise Exit(
                    f"error: {where}: {root}.{key} must be text (a path, a name or a number), got {value!r}",
                    code=options.USAGE_EXIT,
                )

    def parse_tasks(self) -> None:
        if self.args.list.value and not self.args.help.value and not self.core.unparsed:
            # `fleet --list` names no task: the listing needs the task names and docstrings,
            # not a parser over every task's flags.
            self.core_via_tasks = ParserContext()
            self.tasks = ParseResult()
            return
        try:
            super().parse_tasks()
        except (ParseError, ValueError) as exc:
            raise Exit(parse_error_line(exc), code=options.USAGE_EXIT) from None

    def _make_parser(self) -> Parser:
        # Contexts for the tasks this command line could name (any word of it, and the task
        # of `--help TASK`), not for all of them: see FleetCollection.to_contexts. A word
        # that is a task name but meant as a flag's value only adds a context that stays
        # unused; a word that names no task is refused as before. Completion needs all.
        words = None if self.args.complete.value else {*self.core.unparsed, str(self.args.help.value)}
        return Parser(
            initial=self.initial_context,
            contexts=self.namespace.to_contexts(ignore_unknown_help=self.config.tasks.ignore_unknown_help, only=words),
        )

    def parse_cleanup(self) -> None:
        try:
            super().parse_cleanup()
        except ParseError as exc:
            raise Exit(parse_error_line(exc), code=options.USAGE_EXIT) from None


def build_program() -> FleetProgram:
    return FleetProgram(name="fleet", binary="fleet", binary_names=["fleet"])


def main() -> None:
    """Entry point of the ``fleet`` console script."""
    # What start-up made (Invoke, this program) lives as long as the process: frozen, the
    # collector never walks it again while the command runs. Frozen again at the end, so the
    # full collection the interpreter makes at exit skips everything the command loaded: a
    # process about to end has nothing to reclaim, and that walk was 10-15 ms of a
    # `fleet status` of 200 agents (benchmarks/cli_bench.py).
    gc.freeze()
    options.use_fleet_command_names()
    try:
        build_program().run(sys.argv)
    except BrokenPipeError:
        # The reader went away (`fleet --help | head`): stop quietly, like coreutils.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(options.BROKEN_PIPE_EXIT)
    finally:
        gc.freeze()


def render_parse_errors_of_running_inv() -> None:
    """Under ``inv``, render parse errors like ``fleet`` does (one ``error:`` line, exit 2).

    ``inv`` is Invoke's own Program, which prints a parse error in its words and exits 1,
    and offers no hook for it. It imports ``tasks.py`` (and so calls this) before it parses
    the task flags, so wrapping ``parse_tasks``/``parse_cleanup`` of that one running
    instance changes how the rest of this run reports errors, and nothing else: no class
    is patched, and nothing happens when ``tasks.py`` is imported outside ``inv``.
    """
    running = sys.modules.get("invoke.main")
    program = getattr(running, "program", None)
    if not isinstance(program, Program) or isinstance(program, FleetProgram):
        return
    for step in ("parse_tasks", "parse_cleanup"):
        original = getattr(program, step)

        def rendered(original: Callable[[], None] = original) -> None:
            try:
                original()
            except (ParseError, ValueError) as exc:
                raise Exit(parse_error_line(exc), code=options.USAGE_EXIT) from None

        setattr(program, step, rendered)
