"""build.dev for real: a pnpm workspace made here, built, packed and installed into a temp prefix.

The npm registry is pointed at a local HTTP server that records every request, to prove the
build never writes to a registry.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetlib.devbuild import Package, install_order, path_warning, pnpm_version_from
from tests.conftest import run_inv
from tests.devbuild_env import require_tools
from tests.workspace import git_commit_all, write_workspace

PACKAGES = ("--package", "@t/gateway", "--package", "@t/cli")


# --------------------------------------------------------------------------- pure helpers


def test_install_order_puts_the_gateway_first() -> None:
    assert install_order(["@mosaicstack/mosaic", "@mosaicstack/gateway"]) == [
        "@mosaicstack/gateway",
        "@mosaicstack/mosaic",
    ]
    assert install_order(["b", "a", "b"]) == ["b", "a"]


def test_tarball_names_and_pinned_pnpm() -> None:
    assert Package("@mosaicstack/gateway", "1.2.3", Path()).tarball_name == "mosaicstack-gateway-1.2.3.tgz"
    assert Package("plain", "0.1.0", Path()).tarball_name == "plain-0.1.0.tgz"
    assert pnpm_version_from({"packageManager": "pnpm@10.6.2+sha512.abc"}) == "10.6.2"
    assert pnpm_version_from({"packageManager": "yarn@4.0.0"}) is None
    assert pnpm_version_from({}) is None


def test_path_warning_gives_the_line_to_add() -> None:
    assert path_warning(Path("/opt/npm"), "/usr/bin:/opt/npm/bin") is None
    warning = path_warning(Path("/opt/npm"), "/usr/bin")
    assert warning is not None
    assert 'export PATH="/opt/npm/bin:$PATH"' in warning


# --------------------------------------------------------------------------- the real thing


class Recorder(http.server.BaseHTTPRequestHandler):
    """A registry stand-in: records every request, serves files from ``directory``, else 404."""

    requests: list[tuple[str, str]]
    directory: Path

    def _handle(self) -> None:
        self.requests.append((self.command, self.path))
        target = self.directory / self.path.lstrip("/")
        if self.command == "GET" and self.path != "/" and target.is_file():
            body = target.read_bytes()
            self.send_response(200)
        else:
            body = b'{"error":"not found"}'
            self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, list[tuple[str, str]], Path]]:
    served = tmp_path / "served"
    served.mkdir()
    requests: list[tuple[str, str]] = []
    handler = type("Handler", (Recorder,), {"requests": requests, "directory": served})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", requests, served
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def pnpm() -> None:
    require_tools()  # node, npm, pnpm and git: a failure in CI, a skip elsewhere


@pytest.fixture
def build_env(tmp_path: Path, server: tuple[str, list[tuple[str, str]], Path]) -> dict[str, str]:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    registry = server[0]
    return {
        **os.environ,
        "npm_config_registry": registry,
        "NPM_CONFIG_REGISTRY": registry,
        "COREPACK_NPM_REGISTRY": registry.rstrip("/"),
        "npm_config_cache": str(tmp_path / "npm-cache"),
        "npm_config_update_notifier": "false",
        "TMPDIR": str(scratch),
    }


def build(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_inv(["build.dev", *args], env, timeout=600)


def git_out(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def run_bin(prefix: Path, name: str) -> str:
    return subprocess.run([str(prefix / "bin" / name)], capture_output=True, text=True, check=True).stdout.strip()


pytestmark = pytest.mark.usefixtures("pnpm")


def test_builds_from_a_directory_and_installs_working_bins_without_registry_writes(
    tmp_path: Path, build_env: dict[str, str], server: tuple[str, list[tuple[str, str]], Path]
) -> None:
    source = write_workspace(tmp_path / "ws")
    prefix = tmp_path / "prefix"
    result = build(build_env, "--source", str(source), "--prefix", str(prefix), *PACKAGES, "--keep-workdir", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert [p["name"] for p in report["packages"]] == ["@t/gateway", "@t/cli"]  # gateway first
    assert run_bin(prefix, "t-cli") == "t-cli 2.0.0 (lib 1.2.3)"
    assert run_bin(prefix, "t-gateway") == "t-gateway 0.5.0"
    # pnpm pack rewrote workspace:* to the workspace package's version.
    with tarfile.open(Path(report["workdir"]) / "tarballs" / "t-cli-2.0.0.tgz") as tar:
        member = tar.extractfile("package/package.json")
        assert member is not None
        assert json.load(member)["devDependencies"] == {"@t/lib": "1.2.3"}
    assert "==> pnpm install" in result.stderr
    assert "    " in result.stderr  # each step's output, indented
    assert any("is not on your PATH" in w for w in report["warnings"])
    shutil.rmtree(report["workdir"])
    requests = server[1]
    assert not [r for r in requests if r[0] in ("PUT", "POST", "DELETE")]


def test_builds_from_a_git_repository_at_a_tag_and_at_a_branch(tmp_path: Path, build_env: dict[str, str]) -> None:
    repo = write_workspace(tmp_path / "repo")
    git_commit_all(repo, tag="v1")
    gateway = repo / "packages/gateway/package.json"
    data = json.loads(gateway.read_text())
    subprocess.run(["git", "-C", str(repo), "checkout", "-q", "-b", "feature"], check=True)
    gateway.write_text(json.dumps({**data, "version": "0.6.0"}))
    git_commit_all(repo)
    subprocess.run(["git", "-C", str(repo), "checkout", "-q", "main"], check=True)
    (repo / "uncommitted.txt").write_text("the user's work in progress")
    status_before = git_out(repo, "status", "--porcelain")

    prefix = tmp_path / "prefix"
    for ref, version in (("v1", "0.5.0"), ("feature", "0.6.0")):
        result = build(
            build_env, "--source", str(repo), "--ref", ref, "--prefix", str(prefix), "--package", "@t/gateway"
        )
        assert result.returncode == 0, result.stdout + result.stderr
        installed = json.loads((prefix / "lib/node_modules/@t/gateway/package.json").read_text())
        assert installed["version"] == version
    assert git_out(repo, "status", "--porcelain") == status_before
    assert git_out(repo, "branch", "--show-current").strip() == "main"
    assert list((Path(build_env["TMPDIR"])).glob("fleet-build-dev-*")) == []


def test_builds_from_a_tarball_served_on_localhost(
    tmp_path: Path, build_env: dict[str, str], server: tuple[str, list[tuple[str, str]], Path]
) -> None:
    source = write_workspace(tmp_path / "stack")
    url, requests, served = server
    with tarfile.open(served / "stack.tar.gz", "w:gz") as tar:
        tar.add(source, arcname="stack")
    prefix = tmp_path / "prefix"
    result = build(build_env, "--source", url + "stack.tar.gz", "--prefix", str(prefix), *PACKAGES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert run_bin(prefix, "t-cli") == "t-cli 2.0.0 (lib 1.2.3)"
    assert ("GET", "/stack.tar.gz") in requests
    assert not [r for r in requests if r[0] in ("PUT", "POST", "DELETE")]
    assert list(Path(build_env["TMPDIR"]).glob("fleet-build-dev-*")) == []


def test_a_broken_build_stops_names_the_step_and_installs_nothing(tmp_path: Path, build_env: dict[str, str]) -> None:
    source = write_workspace(tmp_path / "ws", broken_cli=True)
    prefix = tmp_path / "prefix"
    result = build(build_env, "--source", str(source), "--prefix", str(prefix), *PACKAGES)
    assert result.returncode == 1
    assert "failed at step 'build'" in result.stderr
    assert "Traceback" not in result.stderr
    assert "exit 3" in result.stdout  # the failing step's output is kept
    assert not (prefix / "lib" / "node_modules" / "@t").exists()
    assert not (prefix / "bin").exists()
    assert list(Path(build_env["TMPDIR"]).glob("fleet-build-dev-*")) == []


def test_check_reports_versions_and_changes_nothing(tmp_path: Path, build_env: dict[str, str]) -> None:
    source = write_workspace(tmp_path / "ws")
    prefix = tmp_path / "prefix"
    result = build(build_env, "--source", str(source), "--prefix", str(prefix), *PACKAGES, "--check")
    assert result.returncode == 0, result.stderr
    assert "@t/gateway: installed (none), source 0.5.0" in result.stdout
    assert not prefix.exists()


def test_unknown_package_and_missing_pnpm_are_one_line_errors(tmp_path: Path, build_env: dict[str, str]) -> None:
    source = write_workspace(tmp_path / "ws")
    unknown = build(build_env, "--source", str(source), "--prefix", str(tmp_path / "p"), "--package", "@t/nope")
    assert unknown.returncode == 2
    assert "@t/nope not in the source's workspace" in unknown.stderr
    # A PATH with node, npm and corepack but no pnpm; corepack's download cannot succeed.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("node", "npm", "corepack", "git"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    env = {**build_env, "PATH": str(bin_dir)}
    missing = build(env, "--source", str(source), "--prefix", str(tmp_path / "p"), *PACKAGES)
    assert missing.returncode == 2, missing.stderr
    lines = missing.stderr.strip().splitlines()
    assert "pnpm is not on PATH and corepack could not provide pnpm" in lines[-1]
    assert "npm install -g pnpm" in lines[-1]
    assert "Traceback" not in missing.stderr
