"""Build the stack from source at a ref and install it from local tarballs (``inv build.dev``).

A port of the reference installer's ``--dev`` mode that goes beyond it: the branch's own
internal packages are installed from the same tree, never from a registry. The source (a
git repository exported at a ref without touching the checkout, a plain directory, or a
``.tar.gz`` URL) is fetched once into a temp work dir. Then, each step printed with its
output indented:

1. every dependency on a workspace package's name written as a registry range (``^1.2.0``)
   is rewritten to ``workspace:^1.2.0`` in the temp copy, so pnpm resolves it inside the
   workspace without asking a registry (and fails if the workspace's version does not match);
2. ``pnpm install``; build the selected packages and their workspace dependencies
   (``--filter NAME...``);
3. ``pnpm pack`` each selected package and each internal package it needs at run time
   (dependencies, optionalDependencies, peerDependencies, transitively);
4. per selected package, ``pnpm deploy --prod`` (injected workspace packages, hoisted
   ``node_modules``) gives every run-time dependency in one plain tree; each internal package
   in it is replaced by its own ``pnpm pack`` tarball's content (what publishing this tree
   would ship), the packed manifest lists every dependency in ``bundleDependencies``,
   ``npm ls`` (offline) checks every dependency is present and in range, and ``npm pack``
   makes one self-contained tarball;
5. only when every package built and packed: ``npm install -g`` each tarball into the
   prefix, the gateway before the CLI, then check that the installed tree carries each
   internal package byte for byte (its ``package.json``) as packed from this tree.

npm never resolves a bundled dependency, so it is never asked for a workspace package (nor,
in practice, for anything); third-party packages come from pnpm's store or from whatever
registry configuration the environment gives pnpm. ``offline`` passes ``--offline`` to
pnpm and npm: nothing is fetched, everything must already be in pnpm's store.

Guarantees: no registry writes (nothing here publishes). The work dir is removed on success
and on failure unless ``keep_workdir``. A failing step stops the build with a
:class:`DevBuildError` naming the step and carrying its output.
``MOSAIC_GATEWAY_SKIP_NPM_INSTALL=1`` is exported to every step (by the caller's runner),
so a later set-up step does not replace the gateway with the registry's build.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
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

# What a package needs at run time; devDependencies only at build time.
RUNTIME_SECTIONS: Final = ("dependencies", "optionalDependencies", "peerDependencies")
LINKED_SECTIONS: Final = (*RUNTIME_SECTIONS, "devDependencies")
# For `pnpm deploy` only: injected workspace packages are real copies (pnpm 10 refuses a
# non-injected deploy unless --legacy, and the legacy deploy asks the registry for them);
# a hoisted node_modules is a plain npm-style tree that `npm pack` can bundle. Not given to
# `pnpm install`: injected copies made before the build would lack the build's output.
DEPLOY_CONFIG: Final = ("--config.inject-workspace-packages=true", "--config.node-linker=hoisted")
MANIFEST_LIMIT: Final = 1 << 20  # an installed package.json is read from disk: cap it
NODE_MODULES: Final = "node_modules"


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
    manifest: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def tarball_name(self) -> str:
        """What ``pnpm pack`` calls the tarball: ``@scope/name`` -> ``scope-name-<version>.tgz``."""
        return f"{self.name.lstrip('@').replace('/', '-')}-{self.version}.tgz"

    @property
    def slug(self) -> str:
        return self.name.lstrip("@").replace("/", "-")


@dataclass
class BuildReport:
    """What a build or check did. Each ``packages`` row may carry ``internal``: a list of
    ``{"name", "installed_version", "source_version", "state"}`` (see :func:`internal_row`)."""

    source: str
    ref: str | None
    prefix: str
    packages: list[dict[str, Any]] = field(default_factory=list)
    workdir: str | None = None
    warnings: list[str] = field(default_factory=list)
    offline: bool = False
    steps: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "ref": self.ref,
            "prefix": self.prefix,
            "packages": self.packages,
            "workdir": self.workdir,
            "warnings": self.warnings,
            "offline": self.offline,
            "steps": self.steps,
        }


# --------------------------------------------------------------------------- pure helpers


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


def is_registry_range(spec: str) -> bool:
    """A semver range or dist-tag, which npm and pnpm resolve from a registry: not
    ``workspace:``, ``npm:`` aliases, ``file:``/``link:`` paths, URLs, git or ``catalog:``."""
    return ":" not in spec and "/" not in spec


def workspace_spec(spec: str) -> str:
    """The ``workspace:`` form of a registry range (``^1.2.0`` -> ``workspace:^1.2.0``)."""
    spec = spec.strip()
    return "workspace:*" if spec in ("", "*", "latest") else f"workspace:{spec}"


def link_workspace_ranges(manifest: Mapping[str, Any], workspace: Collection[str]) -> tuple[dict[str, Any], list[str]]:
    """``manifest`` with each registry range on a workspace package's name in ``workspace:`` form,
    and one ``name: old -> new`` line per change. pnpm then resolves them inside the workspace
    and never asks a registry (with ``link-workspace-packages`` it still fetches the registry's
    metadata first); a range the workspace's version does not satisfy fails the install."""
    result = dict(manifest)
    changes: list[str] = []
    for section in LINKED_SECTIONS:
        deps = manifest.get(section)
        if not isinstance(deps, dict):
            continue
        rewritten = dict(deps)
        for name, spec in deps.items():
            if name in workspace and isinstance(spec, str) and is_registry_range(spec):
                rewritten[name] = workspace_spec(spec)
                changes.append(f"{name}: {spec} -> {rewritten[name]} ({section})")
        result[section] = rewritten
    return result, changes


def internal_dependencies(manifest: Mapping[str, Any], workspace: Collection[str]) -> list[str]:
    """The workspace packages ``manifest`` needs at run time: a ``workspace:`` range or a
    registry range (which :func:`link_workspace_ranges` turns into one) on a workspace name."""
    found: set[str] = set()
    for section in RUNTIME_SECTIONS:
        deps = manifest.get(section)
        if not isinstance(deps, dict):
            continue
        for name, spec in deps.items():
            if (
                name in workspace
                and isinstance(spec, str)
                and (spec.startswith("workspace:") or is_registry_range(spec))
            ):
                found.add(name)
    return sorted(found)


def internal_closure(name: str, manifests: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Every workspace package ``name`` needs at run time, transitively (without itself)."""
    seen: set[str] = set()
    stack = [name]
    while stack:
        for dep in internal_dependencies(manifests[stack.pop()], manifests.keys()):
            if dep != name and dep not in seen:
                seen.add(dep)
                stack.append(dep)
    return sorted(seen)


def bundled_manifest(packed: Mapping[str, Any], present: Collection[str]) -> dict[str, Any]:
    """The packed manifest with every run-time dependency found in its ``node_modules``
    (``present``) bundled. A peer found there becomes a dependency: a global install has no
    parent to provide it, and npm would otherwise fetch it from a registry."""
    result = dict(packed)
    dependencies = dict(result.get("dependencies") or {})
    peers = dict(result.get("peerDependencies") or {})
    for name in [n for n in peers if n in present]:
        dependencies.setdefault(name, peers.pop(name))
    result["dependencies"] = dependencies
    if peers:
        result["peerDependencies"] = peers
    else:
        result.pop("peerDependencies", None)
    optional = result.get("optionalDependencies") or {}
    result.pop("bundledDependencies", None)
    result["bundleDependencies"] = sorted(n for n in {*dependencies, *optional} if n in present)
    return result


def internal_row(name: str, installed_version: str | None, source_version: str) -> dict[str, Any]:
    """One internal package a selected package carries. ``state``: ``current`` (installed is
    the source's version), ``differs`` or ``missing`` (nothing installed resolves it)."""
    state = "missing" if installed_version is None else "current" if installed_version == source_version else "differs"
    return {"name": name, "installed_version": installed_version, "source_version": source_version, "state": state}


def resolve_installed(start: Path, name: str) -> Path | None:
    """The directory Node's ``require(name)`` finds from a package at ``start``: its own
    ``node_modules``, then each ancestor's (directories named ``node_modules`` skipped)."""
    for directory in (start, *start.parents):
        if directory.name == NODE_MODULES:
            continue
        candidate = directory / NODE_MODULES / name
        if (candidate / "package.json").is_file():
            return candidate
    return None


def installed_internal(root: Path, name: str, manifests: Mapping[str, Mapping[str, Any]]) -> dict[str, Path | None]:
    """Where the installed package at ``root`` finds each internal package it needs, following
    the source's dependency graph from the copy each consumer actually loads."""
    found: dict[str, Path | None] = {}
    queue: list[tuple[Path, str]] = [(root, name)]
    while queue:
        directory, consumer = queue.pop(0)
        for dep in internal_dependencies(manifests[consumer], manifests.keys()):
            if dep in found or dep == name:
                continue
            found[dep] = location = resolve_installed(directory, dep)
            if location is not None:
                queue.append((location, dep))
    return found


def package_dirs(node_modules: Path) -> Iterator[tuple[str, Path]]:
    """Every package under a ``node_modules`` tree as ``(name, directory)``, nested ones too;
    symbolic links are yielded, never followed."""
    if not node_modules.is_dir() or node_modules.is_symlink():
        return
    for entry in sorted(node_modules.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.name.startswith("@") and entry.is_dir() and not entry.is_symlink():
            candidates = [(f"{entry.name}/{sub.name}", sub) for sub in sorted(entry.iterdir())]
        else:
            candidates = [(entry.name, entry)]
        for name, directory in candidates:
            yield name, directory
            if not directory.is_symlink():
                yield from package_dirs(directory / NODE_MODULES)


def _read_json(path: Path, limit: int = MANIFEST_LIMIT) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = json.loads(handle.read(limit))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _read_bytes(path: Path, limit: int = MANIFEST_LIMIT) -> bytes | None:
    try:
        with path.open("rb") as handle:
            return handle.read(limit)
    except OSError:
        return None


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def _tar_entries(tarball: Path) -> tuple[tarfile.TarFile, list[tarfile.TarInfo]]:
    """An npm tarball opened, its members renamed without their top directory (``package/``)."""
    tar = tarfile.open(tarball)  # noqa: SIM115 - closed by the callers
    members = []
    for member in tar.getmembers():
        _, _, rest = member.name.partition("/")
        if rest:
            members.append(member.replace(name=rest, deep=False))
    return tar, members


def unpack_package(tarball: Path, dest: Path) -> None:
    """Extract an npm tarball's content into ``dest`` safely (no paths, links or devices out)."""
    tar, members = _tar_entries(tarball)
    with tar:
        tar.extractall(dest, members=members, filter="data")


def packed_manifest_bytes(tarball: Path) -> bytes:
    tar, members = _tar_entries(tarball)
    with tar:
        for member in members:
            if member.name == "package.json" and member.isfile():
                handle = tar.extractfile(member)
                if handle is not None:
                    return handle.read(MANIFEST_LIMIT)
    return b""


def deploy_argv(pnpm: Sequence[str], name: str, dest: Path, offline: bool) -> list[str]:
    """``pnpm deploy`` of one package's production dependencies into ``dest`` (see DEPLOY_CONFIG)."""
    return [*pnpm, "--filter", name, "--prod", "deploy", str(dest), *DEPLOY_CONFIG, *(["--offline"] if offline else [])]


def failure_line(result: Result) -> str:
    """The line that says why: pnpm's ``ERR_PNPM_...`` line (on stdout), else npm's first
    ``npm error`` line after its code (``npm error 404 Not Found - GET ...``), else the first
    line of stderr."""
    lines = [line.strip() for line in (result.stdout + "\n" + result.stderr).splitlines()]
    for line in lines:
        if "ERR_PNPM_" in line:
            return line
    for line in lines:
        if line.startswith("npm error ") and not line.startswith(("npm error code ", "npm error A complete log")):
            return line
    return result.error_line()


# --------------------------------------------------------------------------- the build


@dataclass
class DevBuild:
    """One build.dev run; ``runner`` executes every command, ``report`` prints progress lines,
    ``progress`` (optional) is told ``(step, seconds since the run began)`` as each step
    starts, and ``("done", total seconds)`` at the end."""

    source: str
    runner: Runner
    ref: str = "main"
    prefix: str = ""
    packages: Sequence[str] = DEFAULT_PACKAGES
    keep_workdir: bool = False
    report: Callable[[str], None] = print
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    offline: bool = False
    progress: Callable[[str, float], None] | None = None
    clock: Callable[[], float] = time.monotonic
    _started: float | None = field(default=None, init=False, repr=False)
    _steps: list[dict[str, Any]] = field(default_factory=list, init=False, repr=False)
    _root: Path = field(default=Path(), init=False, repr=False)  # the fetched source, once build() has it
    _pnpm: list[str] = field(default_factory=list, init=False, repr=False)

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

    def _begin(self, name: str) -> float:
        now = self.clock()
        if self._started is None:
            self._started = now
        if self.progress is not None:
            self.progress(name, now - self._started)
        return now

    def _end(self, name: str, began: float) -> None:
        self._steps.append({"name": name, "seconds": round(self.clock() - began, 3)})

    def _step(self, name: str, action: Callable[[], object]) -> None:
        self.report(f"==> {name}")
        began = self._begin(name)
        try:
            output = action()
        except OSError as exc:
            raise DevBuildError(name, str(exc), str(exc)) from None
        finally:
            self._end(name, began)
        if isinstance(output, str) and output.strip():
            self.report(indent(output).rstrip("\n"))

    def _run(self, name: str, argv: Sequence[str], cwd: Path | None = None, why: str = "") -> Result:
        self.report(f"==> {name}: {' '.join(argv)}")
        began = self._begin(name)
        try:
            result = self.runner.run(argv, cwd=str(cwd) if cwd else None)
        finally:
            self._end(name, began)
        output = (result.stdout + result.stderr).strip()
        if output:
            self.report(indent(output).rstrip("\n"))
        if not result.ok:
            hint = failure_line(result)
            if self.offline and ("OFFLINE" in hint or "ENOTCACHED" in output):
                hint = f"--offline and something is not in the local store ({hint}); run once without --offline"
            raise DevBuildError(name, output, f"{why}: {hint}" if why else hint)
        return result

    def _done(self, report: BuildReport) -> None:
        report.steps = list(self._steps)
        if self.progress is not None and self._started is not None:
            self.progress("done", self.clock() - self._started)

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
                if NODE_MODULES in manifest.parts:
                    continue
                data = _read_json(manifest)
                if isinstance(data.get("name"), str):
                    name = data["name"]
                    found[name] = Package(name, str(data.get("version", "0.0.0")), manifest.parent, data)
        return found

    def select(self, available: Mapping[str, Package]) -> list[Package]:
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

    def _offline_flag(self) -> list[str]:
        return ["--offline"] if self.offline else []

    # ----------------------------------------------------------------- build stages

    def link_ranges(self, root: Path, available: Mapping[str, Package]) -> bool:
        """Rewrite registry ranges on workspace names to ``workspace:`` in the temp copy;
        True when something changed (the lockfile then has to follow)."""
        lines: list[str] = []
        for package in available.values():
            rewritten, changes = link_workspace_ranges(package.manifest, available.keys())
            if changes:
                _write_json(package.directory / "package.json", rewritten)
                relative = package.directory.relative_to(root).as_posix()
                lines += [f"{relative}: {change}" for change in changes]
        if lines:
            self._step("link workspace ranges", lambda: "\n".join(lines))
        return bool(lines)

    def stage(
        self, package: Package, closure: Sequence[str], tarballs: Path, available: Mapping[str, Package], work: Path
    ) -> Path:
        """Deploy ``package``, put each internal package's packed content in its tree, and
        return the staged package directory (its manifest bundling every dependency)."""
        deployed = work / "deploy" / package.slug
        root = work / "stage" / package.slug
        self._run(
            f"deploy {package.name}", deploy_argv(self._pnpm, package.name, deployed, self.offline), cwd=self._root
        )

        def assemble() -> str:
            root.mkdir(parents=True)
            unpack_package(tarballs / package.tarball_name, root)
            node_modules = root / NODE_MODULES
            if (deployed / NODE_MODULES).is_dir():
                shutil.move(deployed / NODE_MODULES, node_modules)
                for entry in node_modules.iterdir():  # pnpm's own state: .pnpm, .modules.yaml, .bin
                    if entry.name.startswith("."):
                        _remove(entry)
            placed: dict[str, list[str]] = {}
            for name, directory in list(package_dirs(node_modules)):
                if name not in closure:
                    continue
                _replace_with(directory, tarballs / available[name].tarball_name)
                placed.setdefault(name, []).append(directory.relative_to(root).as_posix())
            missing = [name for name in closure if name not in placed]
            if missing:
                raise DevBuildError(
                    f"stage {package.name}", "", f"pnpm deploy did not put {', '.join(missing)} in its node_modules"
                )
            top_level = {
                name
                for name, where in package_dirs(node_modules)
                if node_modules in (where.parent, where.parent.parent)
            }
            _write_json(root / "package.json", bundled_manifest(_read_json(root / "package.json"), top_level))
            return "\n".join(
                f"{name} {available[name].version} from this tree at {', '.join(where)}"
                for name, where in sorted(placed.items())
            )

        self._step(f"stage {package.name}", assemble)
        # npm's own view of the staged tree, offline: every run-time dependency present and in
        # range. pnpm links a workspace: range even when the workspace's version misses it.
        self._run(
            f"check {package.name}",
            ["npm", "ls", "--all", "--omit=dev", "--offline"],
            cwd=root,
            why="its bundled dependencies do not satisfy its manifest",
        )
        return root

    # ----------------------------------------------------------------- the two modes

    def _new_report(self, prefix: str) -> BuildReport:
        self._started, self._steps = None, []
        return BuildReport(self.source, self.ref if _is_git_source(self.source) else None, prefix, offline=self.offline)

    def build(self) -> BuildReport:
        """Fetch, link, install, build, pack, stage, check, install globally, verify. See the
        module docstring. Nothing is installed unless every package built, packed and staged."""
        prefix = self.npm_prefix()
        report = self._new_report(prefix)
        with self.workdir() as work:
            if self.keep_workdir:
                report.workdir = str(work)
            root = self._root = self.fetch(work)
            available = self.workspace_packages(root)
            selected = self.select(available)
            pnpm = self._pnpm = self.pnpm(root)
            changed = self.link_ranges(root, available)
            available = self.workspace_packages(root)  # the manifests as rewritten
            install = [*pnpm, "install", *self._offline_flag()]
            if changed and (root / "pnpm-lock.yaml").exists():
                install.append("--no-frozen-lockfile")  # the rewritten specifiers must reach the lockfile
            self._run("pnpm install", install, cwd=root)
            filters = [arg for p in selected for arg in ("--filter", f"{p.name}...")]
            self._run("build", [*pnpm, *filters, "run", "--if-present", "build"], cwd=root)
            manifests = {name: p.manifest for name, p in available.items()}
            closures = {p.name: internal_closure(p.name, manifests) for p in selected}
            to_pack = [*selected, *(available[n] for n in sorted({n for c in closures.values() for n in c}))]
            tarballs = work / "tarballs"
            tarballs.mkdir()
            for package in dict.fromkeys(to_pack):
                self._run(
                    f"pack {package.name}", [*pnpm, "pack", "--pack-destination", str(tarballs)], cwd=package.directory
                )
            missing = [p.tarball_name for p in to_pack if not (tarballs / p.tarball_name).is_file()]
            if missing:
                raise DevBuildError("check tarballs", "", f"pnpm pack did not produce {', '.join(missing)}")
            bundles = work / "bundles"
            bundles.mkdir()
            for package in selected:
                staged = self.stage(package, closures[package.name], tarballs, available, work)
                self._run(
                    f"bundle {package.name}",
                    ["npm", "pack", "--ignore-scripts", "--pack-destination", str(bundles), *self._offline_flag()],
                    cwd=staged,
                )
            missing = [p.tarball_name for p in selected if not (bundles / p.tarball_name).is_file()]
            if missing:
                raise DevBuildError("check bundles", "", f"npm pack did not produce {', '.join(missing)}")
            for package in selected:
                bundle = bundles / package.tarball_name
                self._run(
                    f"install {package.name}",
                    ["npm", "install", "-g", str(bundle), f"--prefix={prefix}", *self._offline_flag()],
                )
                report.packages.append(
                    {"name": package.name, "version": package.version, "tarball": bundle.name, "installed": True}
                )
            for row, package in zip(report.packages, selected, strict=True):
                row["internal"] = self._verify(Path(prefix), package, available, tarballs)
        warning = path_warning(Path(prefix), self.environ.get("PATH", ""))
        if warning:
            report.warnings.append(warning)
        self._done(report)
        return report

    def _verify(
        self, prefix: Path, package: Package, available: Mapping[str, Package], tarballs: Path
    ) -> list[dict[str, Any]]:
        """The installed tree must carry each internal package exactly as packed here."""
        rows: list[dict[str, Any]] = []
        wrong: list[str] = []

        def check() -> str:
            locations = installed_internal(_global_dir(prefix, package.name), package.name, _manifests(available))
            for name, location in sorted(locations.items()):
                source = available[name]
                installed = _read_json(location / "package.json") if location else {}
                rows.append(internal_row(name, _version(installed), source.version))
                if location is None or _read_bytes(location / "package.json") != packed_manifest_bytes(
                    tarballs / source.tarball_name
                ):
                    wrong.append(f"{name} (source {source.version}, installed {_version(installed) or 'nothing'})")
            if wrong:
                raise DevBuildError(
                    f"verify {package.name}", "", f"the installed tree does not carry this tree's {', '.join(wrong)}"
                )
            return "\n".join(f"{r['name']} {r['installed_version']}: this tree's" for r in rows)

        self._step(f"verify {package.name}", check)
        return rows

    def check(self) -> BuildReport:
        """Report each package's installed version and the source's, and the same for each
        internal package it carries (its ``internal`` rows); change nothing."""
        prefix = self.npm_prefix()
        report = self._new_report(prefix)
        with self.workdir() as work:
            available = self.workspace_packages(self.fetch(work))
            manifests = _manifests(available)
            for package in self.select(available):
                directory = _global_dir(Path(prefix), package.name)
                installed = _read_json(directory / "package.json")
                locations = installed_internal(directory, package.name, manifests) if installed else {}
                internal = [
                    internal_row(name, _installed_version(locations.get(name)), available[name].version)
                    for name in internal_closure(package.name, manifests)
                ]
                report.packages.append(
                    {
                        "name": package.name,
                        "source_version": package.version,
                        "installed_version": installed.get("version"),
                        "internal": internal,
                    }
                )
        self._done(report)
        return report


def _manifests(available: Mapping[str, Package]) -> dict[str, Mapping[str, Any]]:
    return {name: package.manifest for name, package in available.items()}


def _global_dir(prefix: Path, name: str) -> Path:
    return prefix / "lib" / NODE_MODULES / name


def _installed_version(location: Path | None) -> str | None:
    return _version(_read_json(location / "package.json")) if location is not None else None


def _version(manifest: Mapping[str, Any]) -> str | None:
    version = manifest.get("version")
    return version if isinstance(version, str) else None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _replace_with(directory: Path, tarball: Path) -> None:
    """Make ``directory`` hold exactly ``tarball``'s content, keeping its nested
    ``node_modules`` (its own third-party dependencies, when hoisting could not share them)."""
    if directory.is_symlink():
        directory.unlink()
    directory.mkdir(parents=True, exist_ok=True)
    for entry in directory.iterdir():
        if entry.name != NODE_MODULES:
            _remove(entry)
    unpack_package(tarball, directory)


def _is_git(path: Path) -> bool:
    return path.is_dir() and ((path / ".git").exists() or ((path / "HEAD").is_file() and (path / "objects").is_dir()))


def _is_git_source(source: str) -> bool:
    return not source.startswith(("http://", "https://")) and _is_git(Path(source).expanduser())


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
