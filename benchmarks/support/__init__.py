"""Processes the benchmarks start: the echo baseline server and the counting proxy."""
