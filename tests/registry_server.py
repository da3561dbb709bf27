"""A local npm registry stand-in for the build.dev tests: it records every request and serves
a few generated third-party packages (packument + tarball), so installs can be proved to ask
the registry only for third-party names, never write to it, and nothing at all when offline.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.server
import io
import json
import tarfile
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

WRITES = frozenset({"PUT", "POST", "DELETE", "PATCH"})


def package_tarball(files: Mapping[str, str]) -> bytes:
    """An npm tarball: every file under ``package/``, with fixed metadata (reproducible bytes)."""
    buffer = io.BytesIO()
    # gzip's header carries a timestamp: pin it, or the same package changes integrity per request.
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for name, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@dataclass
class FakeRegistry:
    """Serves ``packages`` ({name: {version: {file: text}}}, each with a package.json) under ``url``."""

    packages: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)  # extra paths served verbatim
    url: str = ""

    def add(self, name: str, version: str, files: Mapping[str, str]) -> None:
        self.packages.setdefault(name, {})[version] = dict(files)

    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] in WRITES]

    def requested_names(self) -> set[str]:
        """Package names the requests asked about (packuments and tarballs), decoded."""
        names: set[str] = set()
        for _, path in self.requests:
            parts = urllib.parse.unquote(path.split("?", 1)[0]).strip("/").split("/")
            if parts and parts[0].startswith("@") and len(parts) > 1:
                names.add(f"{parts[0]}/{parts[1]}")
            elif parts and parts[0]:
                names.add(parts[0])
        return names

    def _tarball_path(self, name: str, version: str) -> str:
        return f"/{name}/-/{name.rsplit('/', 1)[-1]}-{version}.tgz"

    def respond(self, method: str, path: str) -> tuple[int, bytes, str]:
        self.requests.append((method, path))
        if method != "GET":
            return 405, b'{"error":"this registry is read-only"}', "application/json"
        plain = urllib.parse.unquote(path.split("?", 1)[0])
        if plain in self.files:
            return 200, self.files[plain], "application/octet-stream"
        for name, versions in self.packages.items():
            for version, files in versions.items():
                if plain == self._tarball_path(name, version):
                    return 200, package_tarball(files), "application/octet-stream"
            if plain == f"/{name}":
                return 200, json.dumps(self.packument(name)).encode(), "application/json"
        return 404, b'{"error":"not found"}', "application/json"

    def packument(self, name: str) -> dict[str, object]:
        versions: dict[str, object] = {}
        for version, files in self.packages[name].items():
            body = package_tarball(files)
            digest = base64.b64encode(hashlib.sha512(body).digest()).decode()
            versions[version] = {
                **json.loads(files["package.json"]),
                "dist": {
                    "tarball": self.url.rstrip("/") + self._tarball_path(name, version),
                    "shasum": hashlib.sha1(body).hexdigest(),  # noqa: S324 - npm's format, not security
                    "integrity": f"sha512-{digest}",
                },
            }
        latest = max(versions, key=lambda v: tuple(int(p) for p in v.split(".")))
        return {"name": name, "dist-tags": {"latest": latest}, "versions": versions}


class _Handler(http.server.BaseHTTPRequestHandler):
    registry: FakeRegistry

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        status, body, kind = self.registry.respond(self.command, self.path)
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _handle

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def serve(registry: FakeRegistry) -> Iterator[FakeRegistry]:
    """Serve ``registry`` on a free localhost port (its ``url`` set) until the block ends."""
    handler = type("Handler", (_Handler,), {"registry": registry})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    registry.url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield registry
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def tiny_dependency(name: str = "tiny-dep", version: str = "1.0.0") -> dict[str, str]:
    """A third-party package whose module exports its name and version."""
    manifest = {"name": name, "version": version, "main": "index.js"}
    return {
        "package.json": json.dumps(manifest),
        "index.js": f"module.exports = {{ name: {json.dumps(name)}, version: {json.dumps(version)} }};\n",
    }
