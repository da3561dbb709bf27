"""Build the stack from source at a ref and install it from local tarballs (``inv build.dev``).

A port of the reference installer's ``--dev`` mode. The source (a git repository exported
at a ref without touching the checkout, a plain directory, or a ``.tar.gz`` URL) is
fetched once into a temp work dir. Then, each step printed with its output indented:
``pnpm install``; build the selected packages and their workspace dependencies
(``--filter NAME...``); ``pnpm pack`` each into the work dir; check every tarball exists;
``npm install -g`` each from its tarball into the prefix, the gateway before the CLI.

Guarantees: no registry writes (nothing here calls publish; installs come from local
tarballs; the registry configuration is whatever the caller's environment says). The work
dir is removed on success and on failure unless ``keep_workdir``. A failing step stops
the build with a :class:`DevBuildError` naming the step and carrying its output; nothing
is installed unless every package built and packed. ``MOSAIC_GATEWAY_SKIP_NPM_INSTALL=1``
is exported to every step, so a later set-up step does not replace the gateway with the
registry's build.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from fleetlib.errors import FleetError, FleetOperationError
from fleetlib.runner import Result, Runner

DEFAULT_PACKAGES: Final = ("@mosaicstack/gateway", "@mosaicstack/mosaic")
GATEWAY: Final = "@mosaicstack/gateway"
SKIP_GATEWAY_ENV: Final = {"MOSAIC_GATEWAY_SKIP_NPM_INSTALL": "1"}


class DevBuildError(FleetOperationError):
    """A build step failed; ``step`` names it and ``output`` keeps what it printed."""

    def __init__(self, step: str, output: str, hint: str = "") -> None:
        self.step = step
        self.output = output
        super().__init__(f"build.dev failed at step '{step}'" + (f": {hint}" if hint else ""))


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    directory: Path

    @property
    def tarball_name(self) -> str:
        """What ``pnpm pack`` calls the tarball: ``@scope/name`` -> ``scope-name-<version>.tgz``."""
        return f"{self.name.lstrip('@').replace('/', '-')}-{self.version}.tgz"


@dataclass
class BuildReport:
    source: str
    ref: str | None
    prefix: str
    packages: list[dict[str, Any]] = field(default_factory=list)
    workdir: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "ref": self.ref,
            "prefix": self.prefix,
            "packages": self.packages,
            "workdir": self.workdir,
            "warnings": self.warnings,
        }


def install_order(names: Sequence[str]) -> list[str]:
    """The gateway first (the CLI's set-up expects it installed), the rest as given."""
    return sorted(dict.fromkeys(names), key=lambda name: name != GATEWAY)


def pnpm_version_from(package_json: Mapping[str, Any]) -> str | None:
    """The pnpm version pinned in ``packageManager`` (``pnpm@10.6.2+sha...`` -> ``10.6.2``)."""
    spec = package_json.get("packageManager")
    if not isinstance(spec, str) or not spec.startswith("pnpm@"):
        return None
    return spec.removeprefix("pnpm@").split("+", 1)[0] or None


def path_warning(prefix: Path, path_env: str) -> str | None:
    """A warning with the line to add when ``<prefix>/bin`` is not on PATH."""
    bin_dir = prefix / "bin"
    if str(bin_dir) in path_env.split(os.pathsep):
        return None
    return f'{bin_dir} is not on your PATH; add to your shell rc: export PATH="{bin_dir}:$PATH"'


def indent(text: str) -> str:
    return "".join(f"    {line}\n" for line in text.rstrip().splitlines())


@dataclass
class DevBuild:
    """One build.dev run; ``runner`` executes every command, ``report`` prints progress."""

    source: str
    runner: Runner
    ref: str = "main"
    prefix: str = ""
    packages: Sequence[str] = DEFAULT_PACKAGES
    keep_workdir: bool = False
    report: Callable[[str], None] = print
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    # ----------------------------------------------------------------- fetching

    @contextmanager
    def workdir(self) -> Iterator[Path]:
        """A temp work dir, removed afterwards unless ``keep_workdir``."""
        path = Path(tempfile.mkdtemp(prefix="fleet-build-dev-"))
        try:
            yield path
        finally:
            if self.keep_workdir:
                self.report(f"kept work dir {path}")
            else:
                shutil.rmtree(path, ignore_errors=True)

    def fetch(self, work: Path) -> Path:
        """Bring the source into ``work/src`` once; returns the source root."""
        dest = work / "src"
        if self.source.startswith(("http://", "https://")):
            self._step("download source", lambda: self._download(self.source, work / "source.tar.gz"))
            return _extract(work / "source.tar.gz", dest)
        local = Path(self.source).expanduser()
        if not local.exists():
            raise FleetError(f"--source {self.source}: no such directory, repository or URL")
        if _is_git(local):
            tar = work / "source.tar"
            self._run("export source", ["git", "-C", str(local), "archive", "--format=tar", "-o", str(tar), self.ref])
            return _extract(tar, dest)
        if local.is_file() and local.name.endswith((".tar.gz", ".tgz")):
            return _extract(local, dest)
        self._step(
            "copy source",
            lambda: shutil.copytree(local, dest, symlinks=True, ignore=shutil.ignore_patterns("node_modules", ".git")),
        )
        return dest

    def _download(self, url: str, target: Path) -> str:
        with urllib.request.urlopen(url, timeout=120) as response, target.open("wb") as out:  # noqa: S310 - http(s) only
            shutil.copyfileobj(response, out)
        return f"downloaded {target.stat().st_size} bytes from {url}"

    # ----------------------------------------------------------------- steps

    def _step(self, name: str, action: Callable[[], object]) -> None:
        self.report(f"==> {name}")
        try:
            output = action()
        except OSError as exc:
            raise DevBuildError(name, str(exc), str(exc)) from None
        if isinstance(output, str) and output.strip():
            self.report(indent(output).rstrip("\n"))

    def _run(self, name: str, argv: Sequence[str], cwd: Path | None = None) -> Result:
        self.report(f"==> {name}: {' '.join(argv)}")
        result = self.runner.run(argv, cwd=str(cwd) if cwd else None)
        output = (result.stdout + result.stderr).strip()
        if output:
            self.report(indent(output).rstrip("\n"))
        if not result.ok:
            raise DevBuildError(name, output, result.error_line())
        return result

    def pnpm(self, root: Path) -> list[str]:
        """pnpm from PATH, else through corepack at the version the source pins."""
        if shutil.which("pnpm", path=self.environ.get("PATH")):
            return ["pnpm"]
        version = pnpm_version_from(_read_json(root / "package.json"))
        spec = f"pnpm@{version}" if version else "pnpm"
        probe = self.runner.run(["corepack", spec, "--version"], cwd=str(root))
        if probe.ok:
            return ["corepack", spec]
        reason = probe.error_line()
        if "signature" in (probe.stdout + probe.stderr).lower():
            reason = f"corepack's download of {spec} failed its signature check ({reason})"
        raise FleetError(
            f"pnpm is not on PATH and corepack could not provide {spec}: {reason}; "
            f"install pnpm (`npm install -g {spec}`) and retry"
        )

    def workspace_packages(self, root: Path) -> dict[str, Package]:
        """Every package of the pnpm workspace at ``root``, by name."""
        patterns = ["."]
        workspace = root / "pnpm-workspace.yaml"
        if workspace.exists():
            data = yaml.safe_load(workspace.read_text()) or {}
            patterns += [p for p in data.get("packages", []) if isinstance(p, str) and not p.startswith("!")]
        found: dict[str, Package] = {}
        for pattern in patterns:
            for manifest in sorted(root.glob(f"{pattern.rstrip('/')}/package.json")):
                if "node_modules" in manifest.parts:
                    continue
                data = _read_json(manifest)
                if isinstance(data.get("name"), str):
                    found[data["name"]] = Package(data["name"], str(data.get("version", "0.0.0")), manifest.parent)
        return found

    def select(self, root: Path) -> list[Package]:
        available = self.workspace_packages(root)
        missing = [name for name in self.packages if name not in available]
        if missing:
            known = ", ".join(sorted(available)) or "none"
            raise FleetError(f"--package {', '.join(missing)} not in the source's workspace (it has: {known})")
        return [available[name] for name in install_order(self.packages)]

    def npm_prefix(self) -> str:
        if self.prefix:
            return str(Path(self.prefix).expanduser().absolute())
        result = self.runner.run(["npm", "prefix", "-g"])
        if not result.ok or not result.stdout.strip():
            raise FleetError(f"cannot find npm's global prefix ({result.error_line()}); pass --prefix")
        return result.stdout.strip()

    # ----------------------------------------------------------------- the two modes

    def _new_report(self, prefix: str) -> BuildReport:
        return BuildReport(self.source, self.ref if _is_git_source(self.source) else None, prefix)

    def build(self) -> BuildReport:
        """Fetch, install, build, pack, check, install globally. See the module docstring."""
        prefix = self.npm_prefix()
        report = self._new_report(prefix)
        with self.workdir() as work:
            if self.keep_workdir:
                report.workdir = str(work)
            root = self.fetch(work)
            selected = self.select(root)
            pnpm = self.pnpm(root)
            self._run("pnpm install", [*pnpm, "install"], cwd=root)
            filters = [arg for p in selected for arg in ("--filter", f"{p.name}...")]
            self._run("build", [*pnpm, *filters, "run", "--if-present", "build"], cwd=root)
            tarballs = work / "tarballs"
            tarballs.mkdir()
            for package in selected:
                self._run(
                    f"pack {package.name}", [*pnpm, "pack", "--pack-destination", str(tarballs)], cwd=package.directory
                )
            missing = [p.tarball_name for p in selected if not (tarballs / p.tarball_name).is_file()]
            if missing:
                raise DevBuildError("check tarballs", "", f"pnpm pack did not produce {', '.join(missing)}")
            for package in selected:
                tarball = tarballs / package.tarball_name
                self._run(f"install {package.name}", ["npm", "install", "-g", str(tarball), f"--prefix={prefix}"])
                report.packages.append(
                    {"name": package.name, "version": package.version, "tarball": tarball.name, "installed": True}
                )
        warning = path_warning(Path(prefix), self.environ.get("PATH", ""))
        if warning:
            report.warnings.append(warning)
        return report

    def check(self) -> BuildReport:
        """Report each package's installed version and the source's version; change nothing."""
        prefix = self.npm_prefix()
        report = self._new_report(prefix)
        with self.workdir() as work:
            for package in self.select(self.fetch(work)):
                installed = _read_json(Path(prefix) / "lib" / "node_modules" / package.name / "package.json")
                report.packages.append(
                    {
                        "name": package.name,
                        "source_version": package.version,
                        "installed_version": installed.get("version"),
                    }
                )
        return report


def _is_git(path: Path) -> bool:
    return path.is_dir() and ((path / ".git").exists() or ((path / "HEAD").is_file() and (path / "objects").is_dir()))


def _is_git_source(source: str) -> bool:
    return not source.startswith(("http://", "https://")) and _is_git(Path(source).expanduser())


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _extract(archive: Path, dest: Path) -> Path:
    """Extract safely (no absolute paths, links or devices out of ``dest``); a single top-level
    directory (as archive services produce) is the source root."""
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise DevBuildError("extract source", str(exc), f"{archive.name} is not a readable tar archive") from None
    entries = list(dest.iterdir())
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else dest
