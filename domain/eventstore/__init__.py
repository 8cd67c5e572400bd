"""The event store on SQLAlchemy: the append-only table, group commit, the event codec and the
engines for SQLite and PostgreSQL. The model above it never imports SQLAlchemy."""
