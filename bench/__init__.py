"""Benchmark and load scripts; ``bench.load`` is also the driver of the load tests."""
