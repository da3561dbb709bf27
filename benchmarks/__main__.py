"""Run the benchmarks: `python -m benchmarks [lock|fleet|cli ...] [--quick]`."""

from __future__ import annotations

import argparse
import importlib

# Each benchmark module is imported only when chosen, so one needing a user manager (or
# code mid-change) never stops the others from running.
BENCHMARKS = {
    "lock": "benchmarks.lock_bench",
    "fleet": "benchmarks.fleet_bench",
    "cli": "benchmarks.cli_bench",
    "activity": "benchmarks.activity_bench",
    "hosts": "benchmarks.hosts_bench",
    "transcript": "benchmarks.transcript_bench",
    "hooks": "benchmarks.hooks_bench",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "which", nargs="*", default=list(BENCHMARKS), help="which benchmarks to run: " + ", ".join(BENCHMARKS)
    )
    parser.add_argument("--quick", action="store_true", help="fewer samples; skip the 30 s reference crash case")
    args = parser.parse_args()
    unknown = sorted(set(args.which) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)} (choose from {', '.join(BENCHMARKS)})")
    for name, module in BENCHMARKS.items():
        if name in args.which:
            importlib.import_module(module).run(quick=args.quick)


if __name__ == "__main__":
    main()
