"""A contender that follows the reference tool's protocol, written from its description.

It creates the mutex with O_CREAT|O_EXCL and only then writes its content (the window the
Python lock avoids), judges the mutex stale only by mtime, reads just the first three lock
lines, polls every 250 ms-style interval (shortened here), and knows nothing of hosts,
liveness or wake-ups. Used to show that it and fleetlib.lock exclude each other.

    python reference_contender.py HOME WITNESS COUNTER CYCLES
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

from filelock import FileLock
from lock_worker import witnessed_increment

POLL_S = 0.005
STALE_S = 60.0


def mutex(lock: Path, token: str) -> None:
    path = lock.with_name(lock.name + ".mutex")
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            try:
                if time.time() - path.stat().st_mtime >= STALE_S:
                    path.unlink()
            except FileNotFoundError:
                pass
            time.sleep(0.002)
            continue
        os.write(fd, f"{os.getpid()}\n{int(time.time() * 1000)}\n{token}\n".encode())
        os.close(fd)
        return


def unmutex(lock: Path, token: str) -> None:
    path = lock.with_name(lock.name + ".mutex")
    try:
        if path.read_text().split("\n")[2] == token:
            path.unlink()
    except (FileNotFoundError, IndexError):
        pass


def acquire(lock: Path) -> str:
    token = str(uuid.uuid4())
    while True:
        mutex(lock, token)
        try:
            try:
                lines = lock.read_text().split("\n")
            except FileNotFoundError:
                lock.write_text(f"{os.getpid()}\n{int(time.time() * 1000)}\n{token}\n")
                return token
            stamp = lines[1].strip() if len(lines) > 1 else ""
            if not stamp.isdigit() or time.time() - int(stamp) / 1000 >= STALE_S:
                lock.write_text(f"{os.getpid()}\n{int(time.time() * 1000)}\n{token}\n")
                return token
        finally:
            unmutex(lock, token)
        time.sleep(POLL_S)


def release(lock: Path, token: str) -> None:
    mutex(lock, token)
    try:
        lines = lock.read_text().split("\n")
        if len(lines) > 2 and lines[2].strip() == token:
            lock.unlink()
    except FileNotFoundError:
        pass
    finally:
        unmutex(lock, token)


def main(home: str, witness: str, counter: str, cycles: int) -> int:
    lock = Path(home) / "fleet" / "run" / "restart.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    witness_lock = FileLock(witness)
    for _ in range(cycles):
        token = acquire(lock)
        try:
            if not witnessed_increment(witness_lock, Path(counter)):
                return 3
        finally:
            release(lock, token)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
