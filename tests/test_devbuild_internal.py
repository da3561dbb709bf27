"""build.dev installs the branch's own internal packages from the same tree (issue 13).

Pure helpers first; then the real thing: a workspace in the stack's shape (brain, a library
with an internal and a third-party run-time dependency; the mosaic CLI and the gateway, both
needing brain at run time) built from git tags with real pnpm and npm into a temp prefix,
against a local registry that records every request and has never heard of brain.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetlib.devbuild import (
    BuildReport,
    DevBuild,
    DevBuildError,
    bundled_manifest,
    deploy_argv,
    failure_line,
    installed_internal,
    internal_closure,
    internal_dependencies,
    internal_row,
    is_registry_range,
    link_workspace_ranges,
    package_dirs,
    resolve_installed,
)
from fleetlib.runner import Result, SubprocessRunner
from tests.devbuild_env import git_tag_all, registry_env, require_tools, run_bin
from tests.registry_server import FakeRegistry, serve, tiny_dependency
from tests.workspace import STACK_PACKAGES, write_stack

GATEWAY, MOSAIC, BRAIN, CONFIG = (
    "@mosaicstack/gateway",
    "@mosaicstack/mosaic",
    "@mosaicstack/brain",
    "@mosaicstack/config",
)
WORKSPACE = {GATEWAY, MOSAIC, BRAIN, CONFIG}

# --------------------------------------------------------------------------- pure helpers


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("^1.2.0", True),
        (">=1 <2 || 3.x", True),
        ("*", True),
        ("latest", True),
        ("workspace:*", False),
        ("npm:@other/brain@1", False),
        ("file:../brain", False),
        ("link:../brain", False),
        ("github:org/brain", False),
        ("org/brain", False),
        ("https://example.invalid/brain.tgz", False),
        ("catalog:", False),
    ],
)
def test_is_registry_range(spec: str, expected: bool) -> None:
    assert is_registry_range(spec) is expected


def test_link_workspace_ranges_rewrites_only_registry_ranges_on_workspace_names() -> None:
    manifest = {
        "name": "@mosaicstack/gateway",
        "dependencies": {BRAIN: "^1.4.0", "tiny-dep": "^1.0.0", CONFIG: "workspace:^"},
        "peerDependencies": {MOSAIC: "latest"},
        "devDependencies": {BRAIN: "1.4.0"},
        "optionalDependencies": {CONFIG: "npm:@other/config@1"},
    }
    rewritten, changes = link_workspace_ranges(manifest, WORKSPACE)
    assert rewritten["dependencies"] == {BRAIN: "workspace:^1.4.0", "tiny-dep": "^1.0.0", CONFIG: "workspace:^"}
    assert rewritten["peerDependencies"] == {MOSAIC: "workspace:*"}
    assert rewritten["devDependencies"] == {BRAIN: "workspace:1.4.0"}
    assert rewritten["optionalDependencies"] == {CONFIG: "npm:@other/config@1"}  # an alias is someone else
    assert changes == [
        f"{BRAIN}: ^1.4.0 -> workspace:^1.4.0 (dependencies)",
        f"{MOSAIC}: latest -> workspace:* (peerDependencies)",
        f"{BRAIN}: 1.4.0 -> workspace:1.4.0 (devDependencies)",
    ]
    assert manifest["dependencies"][BRAIN] == "^1.4.0"  # the input is not modified
    assert link_workspace_ranges({"name": "x", "dependencies": {"tiny-dep": "1"}}, WORKSPACE)[1] == []


def test_internal_closure_follows_run_time_dependencies_only() -> None:
    manifests = {
        GATEWAY: {"dependencies": {BRAIN: "^1.4.0", "tiny-dep": "1"}, "devDependencies": {MOSAIC: "workspace:*"}},
        MOSAIC: {"dependencies": {BRAIN: "workspace:*"}},
        BRAIN: {"optionalDependencies": {CONFIG: "workspace:^"}, "peerDependencies": {GATEWAY: "workspace:*"}},
        CONFIG: {},
    }
    assert internal_dependencies(manifests[GATEWAY], manifests.keys()) == [BRAIN]
    assert internal_closure(GATEWAY, manifests) == [BRAIN, CONFIG]  # not itself through brain's peer
    assert internal_closure(MOSAIC, manifests) == [BRAIN, CONFIG, GATEWAY]
    assert internal_closure(CONFIG, manifests) == []


def test_bundled_manifest_bundles_what_is_present_and_turns_present_peers_into_dependencies() -> None:
    packed = {
        "name": GATEWAY,
        "dependencies": {BRAIN: "1.4.0", "tiny-dep": "^1.0.0", "platform-only": "1"},
        "optionalDependencies": {"platform-only": "1"},
        "peerDependencies": {CONFIG: "^0.3.0", "react": "^18"},
        "bundledDependencies": ["stale"],
    }
    result = bundled_manifest(packed, {BRAIN, "tiny-dep", CONFIG})
    assert result["bundleDependencies"] == [BRAIN, CONFIG, "tiny-dep"]
    assert result["dependencies"] == {BRAIN: "1.4.0", "tiny-dep": "^1.0.0", "platform-only": "1", CONFIG: "^0.3.0"}
    assert result["peerDependencies"] == {"react": "^18"}  # npm resolves what is not bundled, as before
    assert "bundledDependencies" not in result
    assert "peerDependencies" not in bundled_manifest({"peerDependencies": {CONFIG: "1"}}, {CONFIG})


def test_internal_row_states() -> None:
    assert internal_row(BRAIN, "1.4.0", "1.4.0")["state"] == "current"
    assert internal_row(BRAIN, "1.3.0", "1.4.0")["state"] == "differs"
    assert internal_row(BRAIN, None, "1.4.0") == {
        "name": BRAIN,
        "installed_version": None,
        "source_version": "1.4.0",
        "state": "missing",
    }


def _package(directory: Path, name: str, version: str = "1.0.0") -> Path:
    directory.mkdir(parents=True)
    (directory / "package.json").write_text(json.dumps({"name": name, "version": version}))
    return directory


def test_installed_internal_resolves_as_node_does(tmp_path: Path) -> None:
    gateway = _package(tmp_path / "lib/node_modules/@mosaicstack/gateway", GATEWAY)
    _package(gateway / "node_modules/@mosaicstack/brain", BRAIN, "1.4.0")
    # config nested under brain wins over a hoisted copy, for brain.
    _package(gateway / "node_modules/@mosaicstack/brain/node_modules/@mosaicstack/config", CONFIG, "0.3.0")
    _package(gateway / "node_modules/@mosaicstack/config", CONFIG, "0.2.0")
    manifests = {
        GATEWAY: {"dependencies": {BRAIN: "workspace:*"}},
        BRAIN: {"dependencies": {CONFIG: "workspace:^"}},
        CONFIG: {},
    }
    found = installed_internal(gateway, GATEWAY, manifests)
    assert found == {
        BRAIN: gateway / "node_modules/@mosaicstack/brain",
        CONFIG: gateway / "node_modules/@mosaicstack/brain/node_modules/@mosaicstack/config",
    }
    assert resolve_installed(gateway, "absent") is None
    names = [name for name, _ in package_dirs(gateway / "node_modules")]
    assert names == [BRAIN, CONFIG, CONFIG]


def test_deploy_argv() -> None:
    assert deploy_argv(["corepack", "pnpm@10.6.2"], GATEWAY, Path("/w/deploy/gw"), offline=True) == [
        "corepack", "pnpm@10.6.2", "--filter", GATEWAY, "--prod", "deploy", "/w/deploy/gw",
        "--config.inject-workspace-packages=true", "--config.node-linker=hoisted", "--offline",
    ]  # fmt: skip
    assert "--offline" not in deploy_argv(["pnpm"], GATEWAY, Path("/d"), offline=False)


@pytest.mark.parametrize(
    ("stdout", "stderr", "expected"),
    [
        (
            "/w/packages/brain:\n ERR_PNPM_NO_OFFLINE_META  Failed to resolve tiny-dep@^1\n",
            "",
            "ERR_PNPM_NO_OFFLINE_META  Failed to resolve tiny-dep@^1",
        ),
        (
            "",
            "npm error code E404\nnpm error 404 Not Found - GET http://r/@mosaicstack%2fbrain\n",
            "npm error 404 Not Found - GET http://r/@mosaicstack%2fbrain",
        ),
        ("", "something broke\nhint\n", "something broke"),
        ("", "", "exit status 3"),
    ],
)
def test_failure_line_finds_the_line_that_says_why(stdout: str, stderr: str, expected: str) -> None:
    assert failure_line(Result(("x",), 3, stdout, stderr)) == expected


def test_report_json_keeps_every_existing_key() -> None:
    keys = set(BuildReport("src", "main", "/p").to_json())
    assert {"source", "ref", "prefix", "packages", "workdir", "warnings"} <= keys


# --------------------------------------------------------------------------- the real thing


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temp dir DevBuild makes its work dir in (this process's, so it can be inspected)."""
    path = tmp_path / "tmp"
    path.mkdir(exist_ok=True)
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    return path


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    """Knows only the third-party tiny-dep: brain's version is published nowhere."""
    require_tools()
    fake = FakeRegistry()
    fake.add("tiny-dep", "1.0.0", tiny_dependency())
    with serve(fake) as running:
        yield running


def make_build(env: dict[str, str], repo: Path, ref: str, prefix: Path, **options: object) -> DevBuild:
    return DevBuild(
        source=str(repo),
        runner=SubprocessRunner(env=env, timeout=600),
        ref=ref,
        prefix=str(prefix),
        packages=(MOSAIC, GATEWAY),
        environ=env,
        report=lambda line: None,
        **options,  # type: ignore[arg-type]
    )


def assert_no_workspace_requests(registry: FakeRegistry) -> None:
    assert registry.requested_names() & set(STACK_PACKAGES) == set(), registry.requests
    assert registry.writes() == []


@pytest.mark.timeout(600)
def test_the_tagged_trees_brain_is_installed_and_a_rebuild_installs_the_next_one(
    tmp_path: Path, registry: FakeRegistry, scratch: Path
) -> None:
    repo = write_stack(tmp_path / "stack")
    git_tag_all(repo, "v1")
    write_stack(repo, brain_version="1.5.0", message="brain of v2")  # the only change: brain
    git_tag_all(repo, "v2")
    env = registry_env(tmp_path, registry.url)
    prefix = tmp_path / "prefix"

    steps: list[tuple[str, float]] = []
    report = make_build(env, repo, "v1", prefix, progress=lambda step, elapsed: steps.append((step, elapsed))).build()

    line = 'brain 1.4.0-dev.1 "brain of v1" config 0.3.0 tiny-dep 1.0.0'
    assert run_bin(prefix, "mosaic-gateway") == f"gateway 0.9.1 {line}"
    assert run_bin(prefix, "mosaic") == f"mosaic 0.9.0 {line}"
    assert_no_workspace_requests(registry)
    assert "tiny-dep" in registry.requested_names()  # third-party packages still come from the registry
    assert [row["name"] for row in report.packages] == [GATEWAY, MOSAIC]
    assert report.packages[0]["internal"] == [
        internal_row(BRAIN, "1.4.0-dev.1", "1.4.0-dev.1"),
        internal_row(CONFIG, "0.3.0", "0.3.0"),
    ]
    json.dumps(report.to_json())  # serialisable as is
    names = [step for step, _ in steps]
    assert names.index("pnpm install") < names.index(f"deploy {GATEWAY}") < names.index(f"install {GATEWAY}")
    assert names.index(f"install {GATEWAY}") < names.index(f"install {MOSAIC}")
    assert names[-1] == "done"
    assert [elapsed for _, elapsed in steps] == sorted(elapsed for _, elapsed in steps)
    assert {s["name"] for s in report.steps} >= {"pnpm install", f"bundle {MOSAIC}"}
    assert list(scratch.glob("fleet-build-dev-*")) == []

    registry.requests.clear()
    report = make_build(env, repo, "v2", prefix).build()
    line = 'brain 1.5.0 "brain of v2" config 0.3.0 tiny-dep 1.0.0'
    assert run_bin(prefix, "mosaic-gateway") == f"gateway 0.9.1 {line}"
    assert run_bin(prefix, "mosaic") == f"mosaic 0.9.0 {line}"
    assert_no_workspace_requests(registry)

    checked = make_build(env, repo, "v1", prefix).check()
    assert [(row["name"], row["installed_version"], row["source_version"]) for row in checked.packages] == [
        (GATEWAY, "0.9.1", "0.9.1"),
        (MOSAIC, "0.9.0", "0.9.0"),
    ]
    assert checked.packages[1]["internal"] == [
        internal_row(BRAIN, "1.5.0", "1.4.0-dev.1"),  # installed from v2, the source is v1
        internal_row(CONFIG, "0.3.0", "0.3.0"),
    ]
    assert_no_workspace_requests(registry)


def registry_brain(version: str) -> dict[str, str]:
    """A brain someone published at the branch's version: it must never be installed."""
    manifest = {"name": BRAIN, "version": version, "main": "index.js"}
    return {
        "package.json": json.dumps(manifest),
        "index.js": f'module.exports = {{ version: "{version}", message: "the registry\'s brain" }};\n',
    }


@pytest.mark.timeout(600)
def test_offline_needs_no_registry_once_the_store_has_everything(
    tmp_path: Path, registry: FakeRegistry, scratch: Path
) -> None:
    # The registry even publishes brain at the branch's version: the tree's brain still wins.
    registry.add(BRAIN, "1.4.0-dev.1", registry_brain("1.4.0-dev.1"))
    repo = write_stack(tmp_path / "stack")
    git_tag_all(repo, "v1")
    env = registry_env(tmp_path, registry.url)
    make_build(env, repo, "v1", tmp_path / "online").build()
    assert_no_workspace_requests(registry)
    assert 'brain 1.4.0-dev.1 "brain of v1"' in run_bin(tmp_path / "online", "mosaic")

    registry.requests.clear()
    prefix = tmp_path / "offline"
    report = make_build(env, repo, "v1", prefix, offline=True).build()
    assert registry.requests == []  # not one request, third-party included
    assert report.offline
    assert report.to_json()["offline"] is True
    assert 'brain 1.4.0-dev.1 "brain of v1"' in run_bin(prefix, "mosaic-gateway")

    # A store that lacks tiny-dep: one line says what is missing and what to do; nothing installed.
    empty = registry_env(tmp_path / "fresh", registry.url, store=tmp_path / "fresh-store")
    with pytest.raises(DevBuildError) as failed:
        make_build(empty, repo, "v1", tmp_path / "never", offline=True).build()
    message = str(failed.value)
    assert "\n" not in message
    assert "failed at step 'pnpm install'" in message
    assert "--offline" in message
    assert "tiny-dep" in message
    assert "run once without --offline" in message
    assert not (tmp_path / "never").exists()
    assert registry.requests == []
    assert list(scratch.glob("fleet-build-dev-*")) == []


@pytest.mark.timeout(300)
def test_a_range_the_workspace_cannot_satisfy_fails_before_installing_and_never_asks_the_registry(
    tmp_path: Path, registry: FakeRegistry, scratch: Path
) -> None:
    repo = write_stack(tmp_path / "stack", gateway_range="^2.0.0")
    git_tag_all(repo, "v1")
    env = registry_env(tmp_path, registry.url)
    with pytest.raises(DevBuildError) as failed:
        make_build(env, repo, "v1", tmp_path / "prefix").build()
    assert failed.value.step == f"check {GATEWAY}"
    assert "do not satisfy its manifest" in str(failed.value)
    assert f"invalid: {BRAIN}@1.4.0-dev.1" in str(failed.value)
    assert_no_workspace_requests(registry)
    assert not (tmp_path / "prefix").exists()
    assert list(scratch.glob("fleet-build-dev-*")) == []
