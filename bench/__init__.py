"""fastmf benchmarks: asv suites, pytest-benchmark files and ``python -m bench.report``."""
