"""Shared test helpers: servers, databases, brokers, browsers and builders, used by the tests and
the benchmark."""
