"""Benchmarks (`make bench`): each reports botfleet beside a baseline measured in the same run."""
