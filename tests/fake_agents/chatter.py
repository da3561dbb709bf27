"""A fake runtime that prints a numbered line every second and never reads its input.

The case `send` must not mistake for acceptance: new text appears, yet nothing was read.
Run: ``python3 tests/fake_agents/chatter.py``; stops only when killed.
"""

from __future__ import annotations

import itertools
import sys
import time

if __name__ == "__main__":
    for n in itertools.count(1):
        print(f"chatter line {n}", flush=True)
        time.sleep(1.0)
    sys.exit(0)
