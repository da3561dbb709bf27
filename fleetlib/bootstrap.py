"""Put the controller's exact fleet on a host, without any registry on that host.

:func:`build_wheels` builds, on the controller, a wheel of this very source tree plus
wheels of every dependency (pip's cache, else whatever index the controller's pip uses).
:func:`install_on` uploads them to ``~/.local/share/fleet/wheels`` on the host, creates the
private virtualenv ``~/.local/share/fleet/venv`` with the host's ``python3`` (>= 3.11) when
missing, installs with ``--no-index --find-links`` (the host never contacts an index) and
reinstalls the fleet wheel itself even at an unchanged version, then checks that the
host's ``fleet --version`` is the controller's. Every step that fails is a
:class:`~fleetlib.remote.HostError` naming the step and the remote's last line.
"""

from __future__ import annotations

import importlib.util
import shlex
import shutil
import sys
from pathlib import Path
from typing import Final

from fleetlib.errors import FleetError, FleetOperationError
from fleetlib.remote import VENV, Deadline, HostError, HostLink
from fleetlib.runner import SubprocessRunner

WHEELS: Final = ".local/share/fleet/wheels"  # relative to the remote home
# A host gets fleet with the hosts extra (Fabric), like the controller: it may drive hosts too.
EXTRAS: Final = "[hosts]"
BUILD_TIMEOUT_S: Final = 600.0
INSTALL_TIMEOUT_S: Final = 600.0
MIN_PYTHON: Final = (3, 11)


def source_tree() -> Path:
    """The source tree this fleet runs from (an editable install or a checkout):
    the directory holding ``pyproject.toml`` next to the ``fleetlib`` package."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file():
        raise FleetError(
            f"cannot build a wheel of this fleet: no pyproject.toml in {root}; "
            "install fleet from a clone (pip install -e .) on the controller"
        )
    return root


# What a wheel of fleet is built from (copied, so the build never writes into the tree).
SOURCE_FILES: Final = ("pyproject.toml", "README.md", "fleetlib", "fleetctl")


def _copy_source(tree: Path, into: Path) -> Path:
    into.mkdir()
    for name in SOURCE_FILES:
        origin = tree / name
        if origin.is_dir():
            shutil.copytree(origin, into / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, into / name)
    return into


def build_wheels(directory: Path, source: Path | None = None) -> list[Path]:
    """Build the fleet wheel and its dependencies' wheels (the :data:`EXTRAS` included) into
    ``directory``; return them.

    Runs ``pip wheel`` once on a copy of the source (setuptools would otherwise leave
    ``build/`` in the tree); without build isolation when setuptools and wheel are both
    importable, so nothing is fetched to build our own pure-Python wheel.
    :class:`FleetOperationError` with pip's error line on failure."""
    tree = source or source_tree()
    copy = _copy_source(tree, directory / "source")
    out = directory / "wheels"
    argv = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "-w", str(out)]
    if all(importlib.util.find_spec(name) is not None for name in ("setuptools", "wheel")):
        argv.append("--no-build-isolation")
    done = SubprocessRunner(timeout=BUILD_TIMEOUT_S).run([*argv, f"{copy}{EXTRAS}"])
    if done.timed_out:
        raise FleetOperationError(f"pip wheel did not finish within {BUILD_TIMEOUT_S:g}s")
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error") or "ERROR" in line]
        raise FleetOperationError(f"building wheels failed: {(errors or lines or [str(done.returncode)])[0]}")
    wheels = sorted(out.glob("*.whl"))
    if not any(wheel.name.startswith("fleet-") for wheel in wheels):
        raise FleetOperationError(f"pip wheel built no fleet wheel in {out}")
    return wheels


def _step(link: HostLink, what: str, command: str, timeout: float = INSTALL_TIMEOUT_S) -> str:
    run = link.run(command, deadline=Deadline(timeout))
    if run.exit_code != 0:
        raise HostError(f"{what} failed: {run.error_line()}")
    return run.stdout


def install_on(link: HostLink, wheels: list[Path], version: str) -> str:
    """Upload ``wheels`` and install fleet ``version`` into the host's private venv;
    return the host's ``fleet --version`` line."""
    venv = f'"$HOME"/{VENV}'
    store = f'"$HOME"/{WHEELS}'
    wanted = ".".join(str(part) for part in MIN_PYTHON)
    _step(
        link,
        "python check",
        f"python3 -c 'import sys; sys.exit(sys.version_info < {MIN_PYTHON!r})' "
        f"|| {{ echo 'error: python3 >= {wanted} is needed on the host' >&2; exit 1; }}",
        timeout=link.settings.timeout,
    )
    _step(link, "clearing the wheel directory", f"rm -rf {store} && mkdir -p {store}", timeout=link.settings.timeout)
    for wheel in wheels:
        link.put_file(wheel, f"{WHEELS}/{wheel.name}")
    fleet_wheel = next(wheel.name for wheel in wheels if wheel.name.startswith("fleet-"))
    pip = f"{venv}/bin/pip install --quiet --disable-pip-version-check --no-index --find-links {store}"
    # A venv without pip (an interrupted earlier bootstrap) is made again from scratch.
    _step(link, "creating the virtualenv", f"[ -x {venv}/bin/pip ] || {{ rm -rf {venv} && python3 -m venv {venv}; }}")
    _step(link, "installing dependencies", f"{pip} {shlex.quote(f'fleet{EXTRAS}=={version}')}")
    _step(link, "installing fleet", f"{pip} --no-deps --force-reinstall {store}/{shlex.quote(fleet_wheel)}")
    answer = _step(link, "checking the version", f"{venv}/bin/fleet --version", timeout=link.settings.timeout).strip()
    if answer != f"fleet {version}":
        raise HostError(f"installed, but the host's fleet says {answer!r}, not 'fleet {version}'")
    return answer
