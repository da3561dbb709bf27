"""A cgroup of its own for each private ``systemd --user`` manager the tests and benchmarks boot.

systemd takes the cgroup it starts in as the root of everything it manages (dropping a
trailing ``/init.scope``). Two managers started from one cgroup therefore share the cgroup of
every unit they both know by name, and stopping a unit in one kills the other's processes of
that unit. :class:`OwnCgroup` makes a fresh, uniquely named cgroup below that root in every
hierarchy systemd uses (``name=systemd`` and cgroup2 on hybrid machines, cgroup2 alone on
unified ones, and the v1 controllers systemd manages), has the manager join it before it
execs (:meth:`OwnCgroup.join_argv`), and after the manager has exited ends whatever still runs
in it and removes every directory it made (:meth:`OwnCgroup.remove`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

NAMED_SYSTEMD: Final = "name=systemd"
INIT_SCOPE: Final = "/init.scope"
# The v1 controllers systemd realizes unit cgroups in; it leaves v1 cpuset and freezer alone
# (and a v1 cpuset child would need cpus and mems copied in before anything can join it).
SYSTEMD_V1_CONTROLLERS: Final = frozenset({"cpu", "cpuacct", "blkio", "memory", "devices", "pids"})
# Joins every cgroup directory named before "--" (so the pid that then execs is inside all of
# them), then execs the argv after "--". A manager rooted above these directories (one started
# from the root cgroup) removes every empty cgroup below its root when it exits, so a directory
# may be gone before it is joined: it is made again (only an empty cgroup is ever trimmed, and a
# joined one is not empty). A join that still fails ends it with 125 and the shell's error.
JOIN_SCRIPT: Final = """\
until [ "$1" = -- ]; do
    tries=0
    until echo $$ >"$1/cgroup.procs"; do
        tries=$((tries + 1))
        if [ "$tries" -ge 20 ] || ! mkdir -p "$1"; then exit 125; fi
    done
    shift
done
shift
exec "$@"
"""
REMOVE_LIMIT_S: Final = 30.0
POLL_S: Final = 0.05


def _unescape(text: str) -> str:
    """A mountinfo path field with its octal escapes (``\\040`` for a space) decoded."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), text)


def _cgroup_mounts(mountinfo: str) -> list[tuple[str, frozenset[str] | None]]:
    """(mount point, super options) of every cgroup v1 mount, (mount point, None) of every
    cgroup2 mount; only mounts of a hierarchy's root, where a cgroup's path maps onto the mount."""
    mounts: list[tuple[str, frozenset[str] | None]] = []
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3 or fields[3] != "/":
            continue
        if tail[0] == "cgroup2":
            mounts.append((_unescape(fields[4]), None))
        elif tail[0] == "cgroup":
            mounts.append((_unescape(fields[4]), frozenset(tail[2].split(","))))
    return mounts


def manager_root(proc_cgroup: str) -> str | None:
    """The cgroup a systemd started with this ``/proc/<pid>/cgroup`` would take as its root:
    its ``name=systemd`` path (else its cgroup2 path) without a trailing ``/init.scope``;
    None when neither hierarchy is there."""
    paths = {}
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            paths[parts[1]] = parts[2]
    path = paths.get(NAMED_SYSTEMD, paths.get(""))
    if path is None:
        return None
    return path.removesuffix(INIT_SCOPE) or "/"


def own_cgroup_dirs(proc_cgroup: str, mountinfo: str, name: str) -> tuple[Path, ...]:
    """The directories of a cgroup ``name`` of its own below :func:`manager_root`, one per
    hierarchy systemd uses that is mounted here: the same path in each, as systemd uses one
    path for a unit in every hierarchy. Empty when there is no systemd or cgroup2 hierarchy."""
    root = manager_root(proc_cgroup)
    if root is None:
        return ()
    relative = f"{root.rstrip('/')}/{name}".lstrip("/")
    mounts = _cgroup_mounts(mountinfo)
    dirs: list[Path] = []
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        controllers = frozenset(parts[1].split(",")) - {""}
        if not controllers:
            wanted = [mount for mount, options in mounts if options is None]
        elif controllers == {NAMED_SYSTEMD} or controllers & SYSTEMD_V1_CONTROLLERS:
            wanted = [mount for mount, options in mounts if options is not None and controllers <= options]
        else:
            continue
        if wanted:
            dirs.append(Path(wanted[0]) / relative)
    return tuple(dirs)


@dataclass
class OwnCgroup:
    """One cgroup directory per hierarchy, all made by :meth:`make` (and only those removed)."""

    dirs: tuple[Path, ...]
    made: list[Path] = field(default_factory=list)  # parents first

    @classmethod
    def make(cls, name: str) -> OwnCgroup:
        """Make the cgroup ``name`` below this process's :func:`manager_root` in every
        hierarchy; raises OSError (after removing what it made) when any cannot be made."""
        dirs = own_cgroup_dirs(Path("/proc/self/cgroup").read_text(), Path("/proc/self/mountinfo").read_text(), name)
        if not dirs:
            raise OSError(errno.ENOENT, "no name=systemd or cgroup2 hierarchy is mounted here")
        cgroup = cls(dirs)
        try:
            for path in dirs:
                missing = [parent for parent in reversed(path.parents) if not parent.exists()]
                for directory in [*missing, path]:
                    directory.mkdir()  # never exist_ok: a name in use is someone else's cgroup
                    cgroup.made.append(directory)
        except OSError:
            cgroup.remove()
            raise
        return cgroup

    @property
    def name(self) -> str:
        return self.dirs[0].name

    def join_argv(self, argv: list[str]) -> list[str]:
        """``argv`` run so that its process is in this cgroup in every hierarchy before exec."""
        return ["/bin/sh", "-c", JOIN_SCRIPT, "sh", *(str(path) for path in self.dirs), "--", *argv]

    def pids(self) -> set[int]:
        """Every process in this cgroup or below it, in any of its hierarchies."""
        found: set[int] = set()
        for path in self.dirs:
            for directory, _, _ in os.walk(path):
                with contextlib.suppress(OSError):
                    found.update(int(pid) for pid in Path(directory, "cgroup.procs").read_text().split())
        return found

    def remove(self, limit: float = REMOVE_LIMIT_S) -> None:
        """SIGKILL everything still in the cgroup, then remove its directories (deepest first,
        systemd's own sub-cgroups included) and the parents :meth:`make` made; raises
        RuntimeError naming what is left when that does not succeed within ``limit`` seconds."""
        deadline = time.monotonic() + limit
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(POLL_S)
        left: list[Path] = []
        for path in self.dirs:
            if path in self.made:
                left += self._remove_tree(path, deadline)
        for parent in reversed(self.made):
            if parent not in self.dirs:
                # Not ours alone: a parent may hold another manager's cgroup by now.
                with contextlib.suppress(OSError):
                    parent.rmdir()
        if pids or left:
            raise RuntimeError(f"cgroup {self.name} not cleaned up: processes {sorted(pids)}, directories {left}")

    @staticmethod
    def _remove_tree(top: Path, deadline: float) -> list[Path]:
        """rmdir every cgroup directory under ``top``, deepest first (a cgroup directory holds
        only kernel files, and rmdir is how it goes); retries a busy one (its last processes
        still exiting) until ``deadline``; returns the directories left."""
        left: list[Path] = []
        for directory, _, _ in os.walk(top, topdown=False):
            while True:
                try:
                    os.rmdir(directory)
                except FileNotFoundError:
                    pass
                except OSError:
                    if time.monotonic() < deadline:
                        time.sleep(POLL_S)
                        continue
                    left.append(Path(directory))
                break
        return left
