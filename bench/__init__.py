"""Benchmarks: ``python -m bench`` (or ``bash scripts/bench``) prints the tables and writes JSON."""
