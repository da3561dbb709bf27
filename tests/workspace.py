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


# --------------------------------------------------------------------------- the stack's shape

# brain's build copies its message into dist/ (so an unbuilt brain cannot pass) and exports
# the version it reads from its own installed package.json at run time.
BRAIN_BUILD = """const fs = require('fs');
fs.mkdirSync('dist', { recursive: true });
const message = fs.readFileSync('src/message.txt', 'utf8').trim();
fs.writeFileSync('dist/index.js',
  'const config = require("@mosaicstack/config");\\n' +
  'const tiny = require("tiny-dep");\\n' +
  'module.exports = { version: require("../package.json").version, message: ' + JSON.stringify(message) +
  ', config: config.version, tiny: tiny.version };\\n');
"""
CONFIG_INDEX = 'module.exports = { version: require("./package.json").version };\n'
# Both bins read brain when they run, never at build time.
BIN = """#!/usr/bin/env node
const brain = require('@mosaicstack/brain');
console.log(`%s ${require('./package.json').version} brain ${brain.version} "${brain.message}" config ${brain.config} tiny-dep ${brain.tiny}`);
"""


def write_stack(
    root: Path, *, brain_version: str = "1.4.0-dev.1", message: str = "brain of v1", gateway_range: str = "^1.4.0-dev.0"
) -> Path:
    """A workspace in the shape of the real stack: ``packages/brain`` (library; run-time deps on
    the internal ``packages/config`` and the third-party ``tiny-dep``), ``packages/mosaic`` (bin
    ``mosaic``; brain through ``workspace:*``) and ``apps/gateway`` (bin ``mosaic-gateway``; brain
    through a plain registry range, ``gateway_range``). Rewrites only what differs when called
    again, so a second commit can change brain alone."""
    files: dict[str, object] = {
        "package.json": {"name": "stack-root", "version": "0.0.0", "private": True},
        "packages/config/package.json": {
            "name": "@mosaicstack/config", "version": "0.3.0", "main": "index.js", "files": ["index.js"],
        },
        "packages/brain/package.json": {
            "name": "@mosaicstack/brain", "version": brain_version, "main": "dist/index.js", "files": ["dist"],
            "scripts": {"build": "node build.js"},
            "dependencies": {"@mosaicstack/config": "workspace:^", "tiny-dep": "^1.0.0"},
        },
        "packages/mosaic/package.json": {
            "name": "@mosaicstack/mosaic", "version": "0.9.0", "bin": {"mosaic": "cli.js"}, "files": ["cli.js"],
            "dependencies": {"@mosaicstack/brain": "workspace:*"},
        },
        "apps/gateway/package.json": {
            "name": "@mosaicstack/gateway", "version": "0.9.1", "bin": {"mosaic-gateway": "gateway.js"},
            "files": ["gateway.js"], "dependencies": {"@mosaicstack/brain": gateway_range},
        },
        "pnpm-workspace.yaml": "packages:\n  - 'packages/*'\n  - 'apps/*'\n",
        "packages/config/index.js": CONFIG_INDEX,
        "packages/brain/build.js": BRAIN_BUILD,
        "packages/brain/src/message.txt": message + "\n",
        "packages/mosaic/cli.js": BIN % "mosaic",
        "apps/gateway/gateway.js": BIN % "gateway",
    }  # fmt: skip
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else json.dumps(content, indent=2) + "\n")
        if relative.endswith(".js") and "build" not in relative:
            path.chmod(0o755)
    return root


STACK_PACKAGES = ("@mosaicstack/brain", "@mosaicstack/config", "@mosaicstack/gateway", "@mosaicstack/mosaic")
