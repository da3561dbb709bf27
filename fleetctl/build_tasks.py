"""``build.*``: build the stack from source and install it from local tarballs.

The build code (:mod:`fleetlib.devbuild`, which loads tarfile, urllib and YAML) is imported
only when a ``build.*`` task runs, never for another command or ``--list``.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from invoke.collection import Collection
from invoke.context import Context
from invoke.tasks import task

from fleetctl.options import user_errors

if TYPE_CHECKING:
    from fleetlib.devbuild import BuildReport

BUILD_STEP_TIMEOUT_S = 3600  # one pnpm/npm step may download and compile for a long time


def report_lines(report: BuildReport, check: bool) -> list[str]:
    """The text of a build (what was installed where) or a check (installed and source
    versions, and the same for each internal workspace package a package carries)."""
    lines = []
    for row in report.packages:
        if check:
            installed = row["installed_version"] or "(none)"
            lines.append(f"{row['name']}: installed {installed}, source {row['source_version']}")
        else:
            lines.append(f"installed {row['name']}@{row['version']} into {report.prefix} (from {row['tarball']})")
        internal: list[dict[str, Any]] = list(row.get("internal") or [])
        for inner in internal:
            installed = inner.get("installed_version") or "(none)"
            lines.append(
                f"    internal {inner['name']}: installed {installed}, source {inner['source_version']}"
                f" ({inner.get('state', '?')})"
            )
    lines += [f"warning: {warning}" for warning in report.warnings]
    return lines


@task(
    auto_shortflags=False,
    iterable=["package"],
    help={
        "source": "Git repository (exported at --ref), directory or .tar.gz URL (default: config build.source or .).",
        "ref": "Git ref to build when --source is a git repository (default main).",
        "prefix": "npm global prefix to install into (default: `npm prefix -g`).",
        "package": "Workspace package to build and install; repeat for several (default: gateway and CLI).",
        "check": "Only report installed and source versions; change nothing.",
        "keep_workdir": "Keep the temp work dir (for debugging a failed build).",
        "offline": "Install only from the local pnpm/npm store; never ask a registry (fails naming what is missing).",
        "json": "Print a JSON report on stdout (progress goes to stderr).",
    },
)
@user_errors
def build_dev(
    c: Context,
    source: str = "",
    ref: str = "",
    prefix: str = "",
    package: list[str] | None = None,
    check: bool = False,
    keep_workdir: bool = False,
    offline: bool = False,
    json: bool = False,
) -> None:
    """Build the CLI and gateway from source and install them from local tarballs (no registry writes)."""
    # Imported here, not above: see the module docstring.
    from fleetctl.render import LiveLine, StepTicker, print_json  # noqa: PLC0415
    from fleetlib.devbuild import DEFAULT_PACKAGES, SKIP_GATEWAY_ENV, DevBuild  # noqa: PLC0415
    from fleetlib.runner import SubprocessRunner, user_environment  # noqa: PLC0415

    line = LiveLine.on_stderr(quiet=json)
    ticker = StepTicker(line, "build.dev")
    out = sys.stderr if json else sys.stdout

    def report(text: str) -> None:
        line.above(lambda: print(text, file=out, flush=True))

    def progress(step: str, _since_start: float) -> None:
        ticker.step(step)  # the ticker counts this step's own seconds from now

    build = DevBuild(
        source=source or c.config.get("build", {}).get("source") or ".",
        runner=SubprocessRunner(env=user_environment(SKIP_GATEWAY_ENV), timeout=BUILD_STEP_TIMEOUT_S),
        ref=ref or "main",
        prefix=prefix,
        packages=package or DEFAULT_PACKAGES,
        keep_workdir=keep_workdir,
        report=report,
        offline=offline,
        progress=progress,
    )
    with ticker.running():
        result = build.check() if check else build.build()
    if json:
        print_json(result.to_json())
        return
    for text in report_lines(result, check):
        print(text)


build_ns = Collection("build")
build_ns.add_task(build_dev, name="dev")
