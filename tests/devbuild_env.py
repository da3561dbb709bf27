"""What the real build.dev tests need: node, npm, pnpm and git (a failure in CI, a skip
elsewhere), and an environment that points npm and pnpm at a local recording registry with
private caches and store, so nothing is read from or written to the user's."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fleetlib.devbuild import SKIP_GATEWAY_ENV

TOOLS = ("node", "npm", "pnpm", "git")


def require_tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if not missing:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must install {', '.join(missing)} (see .ci/run)")
    pytest.skip(f"not installed: {', '.join(missing)}")


def registry_env(base: Path, registry: str, *, store: Path | None = None) -> dict[str, str]:
    """The caller's environment with every registry, cache and store setting pointed into
    ``base`` (``store`` shared between builds when given)."""
    scratch = base / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    store = store or base / "pnpm-store"
    return {
        **os.environ,
        **SKIP_GATEWAY_ENV,
        "npm_config_registry": registry,
        "NPM_CONFIG_REGISTRY": registry,
        "COREPACK_NPM_REGISTRY": registry.rstrip("/"),
        "npm_config_cache": str(base / "npm-cache"),
        "npm_config_store_dir": str(store),
        "npm_config_cache_dir": str(store.parent / f"{store.name}-metadata"),
        "npm_config_fetch_retries": "0",
        "npm_config_update_notifier": "false",
        "npm_config_userconfig": str(base / "npmrc"),  # no ~/.npmrc: the registry is only ours
        "TMPDIR": str(scratch),
    }


def git_tag_all(root: Path, tag: str) -> None:
    """Commit the whole tree and tag it (the repository is made on first use)."""

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)

    if not (root / ".git").exists():
        git("init", "-q", "-b", "main")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "--allow-empty", "-m", tag)
    git("tag", tag)


def run_bin(prefix: Path, name: str) -> str:
    done = subprocess.run([str(prefix / "bin" / name)], capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
