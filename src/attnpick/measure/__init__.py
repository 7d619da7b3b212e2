"""Parity, benchmarks and the measured policy."""
