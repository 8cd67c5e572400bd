"""Integration tests: several processes, servers of our own (PostgreSQL, NATS), faults and
operations."""
