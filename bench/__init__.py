"""Benchmarks (`make bench`): each prints its figures beside a bare baseline run in the same process."""
