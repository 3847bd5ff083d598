"""Benchmarks and load tests (not part of make test)."""
