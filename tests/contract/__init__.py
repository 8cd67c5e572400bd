"""Contract tests: the event store, the handlers and the projections, each run on SQLite and on
PostgreSQL."""
