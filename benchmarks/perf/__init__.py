"""Performance benchmarks (pytest-benchmark); run with ``python -m benchmarks.perf.run``."""
