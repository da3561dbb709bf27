"""Benchmarks for fleet, run with `nox -s bench` (or `python -m benchmarks`)."""
