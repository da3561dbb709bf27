"""Run the benchmarks: `python -m benchmarks [lock|fleet|cli ...] [--quick]`."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from benchmarks import record

# Each benchmark module is imported only when chosen, so one needing a user manager (or
# code mid-change) never stops the others from running.
BENCHMARKS = {
    "lock": "benchmarks.lock_bench",
    "fleet": "benchmarks.fleet_bench",
    "cli": "benchmarks.cli_bench",
    "activity": "benchmarks.activity_bench",
    "hosts": "benchmarks.hosts_bench",
    "transcript": "benchmarks.transcript_bench",
    "top": "benchmarks.top_bench",
    "hooks": "benchmarks.hooks_bench",
    "serve": "benchmarks.serve_bench",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "which", nargs="*", default=list(BENCHMARKS), help="which benchmarks to run: " + ", ".join(BENCHMARKS)
    )
    parser.add_argument("--quick", action="store_true", help="fewer samples; skip the 30 s reference crash case")
    parser.add_argument(
        "--results",
        type=Path,
        default=record.DEFAULT_RESULTS,
        help=f"where each run's figures are kept as JSON and compared (default {record.DEFAULT_RESULTS})",
    )
    args = parser.parse_args()
    unknown = sorted(set(args.which) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)} (choose from {', '.join(BENCHMARKS)})")
    chosen = [name for name in BENCHMARKS if name in args.which]
    try:
        for name in chosen:
            importlib.import_module(BENCHMARKS[name]).run(quick=args.quick)
    finally:  # what was measured before a failure is kept too
        record.save(args.results, chosen, args.quick)


if __name__ == "__main__":
    main()
