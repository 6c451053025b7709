"""Benchmark harness: the native load client, peer servers, scenarios and reports.

Used by `bench/run.py` (`make bench`) and `bench/soak.py` (`make soak`)."""
