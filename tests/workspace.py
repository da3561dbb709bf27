"""A small pnpm workspace made by the tests: three packages, no external dependencies.

@t/lib is a build-time dependency of @t/cli through ``workspace:*``; @t/cli and
@t/gateway each have a bin that prints its version.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

LIB_BUILD = "require('fs').mkdirSync('dist',{recursive:true}); require('fs').writeFileSync('dist/index.js', 'module.exports={version:\"1.2.3\"};\\n');\n"
CLI_BUILD = (
    "const lib=require('@t/lib'); const fs=require('fs'); fs.mkdirSync('dist',{recursive:true});\n"
    "fs.writeFileSync('dist/cli.js', '#!/usr/bin/env node\\nconsole.log(\"t-cli 2.0.0 (lib '+lib.version+')\");\\n');\n"
)


def write_workspace(root: Path, *, broken_cli: bool = False) -> Path:
    files = {
        "package.json": {"name": "ws-root", "version": "0.0.0", "private": True},
        "packages/lib/package.json": {
            "name": "@t/lib", "version": "1.2.3", "main": "dist/index.js", "files": ["dist"],
            "scripts": {"build": "node build.js"},
        },
        "packages/cli/package.json": {
            "name": "@t/cli", "version": "2.0.0", "bin": {"t-cli": "dist/cli.js"}, "files": ["dist"],
            "scripts": {"build": "exit 3" if broken_cli else "node build.js"},
            "devDependencies": {"@t/lib": "workspace:*"},
        },
        "packages/gateway/package.json": {
            "name": "@t/gateway", "version": "0.5.0", "bin": {"t-gateway": "gw.js"}, "files": ["gw.js"],
        },
    }  # fmt: skip
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2) + "\n")
    (root / "pnpm-workspace.yaml").write_text("packages:\n  - 'packages/*'\n")
    (root / "packages/lib/build.js").write_text(LIB_BUILD)
    (root / "packages/cli/build.js").write_text(CLI_BUILD)
    (root / "packages/gateway/gw.js").write_text('#!/usr/bin/env node\nconsole.log("t-gateway 0.5.0");\n')
    return root


def git_commit_all(root: Path, tag: str | None = None, branch: str = "main") -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)

    if not (root / ".git").exists():
        git("init", "-q", "-b", branch)
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "workspace")
    if tag:
        git("tag", tag)
