"""Benchmarks for ratiokit: ``python -m benchmarks [suite ...] [--quick]`` (see README.md)."""
