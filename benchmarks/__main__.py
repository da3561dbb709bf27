"""Run the benchmarks: `python -m benchmarks [lock|fleet ...] [--quick]`."""

from __future__ import annotations

import argparse

from benchmarks import fleet_bench, lock_bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("which", nargs="*", default=["lock", "fleet"], help="which benchmarks to run")
    parser.add_argument("--quick", action="store_true", help="fewer samples; skip the 30 s reference crash case")
    args = parser.parse_args()
    if "lock" in args.which:
        lock_bench.run(quick=args.quick)
    if "fleet" in args.which:
        fleet_bench.run(quick=args.quick)


if __name__ == "__main__":
    main()
