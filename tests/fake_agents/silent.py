"""A fake runtime that reads its input and never prints anything (not even a prompt).

Exits 0 at end of input. Run: ``python3 tests/fake_agents/silent.py``.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    for _line in sys.stdin:
        pass
    sys.exit(0)
