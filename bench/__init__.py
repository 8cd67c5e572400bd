"""Benchmarks of ordergraph (not part of the installed distribution)."""
