"""Settings, read from the environment once at start-up (see the README's table)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from strawberry.http.websocket_origin import normalize_origin

DEFAULT_DATABASE_URL = "sqlite:///ordergraph.db"


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _origins(value: str) -> tuple[str, ...]:
    """Exact origins, as browsers send them in ``Origin``: a wildcard would let any page act
    with a user's token, so it is refused rather than trusted."""
    origins = tuple(part.strip() for part in value.split(",") if part.strip())
    for origin in origins:
        if "*" in origin or normalize_origin(origin) != origin:
            raise ValueError(
                f"CORS_ORIGINS: {origin!r} is not an exact origin; give each as"
                " scheme://host[:port] in lower case, no path, no wildcard"
                " (e.g. http://localhost:5173), separated by commas"
            )
    return origins


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    # Run the projector in this process. Several may run; they take turns per batch.
    run_projector: bool = True
    poll_interval: float = 1.0  # seconds between looks for other processes' appends
    read_wait_seconds: float = 5.0  # how long `atLeast` waits before answering stale
    max_body_bytes: int = 256 * 1024
    max_depth: int = 12
    max_aliases: int = 30
    max_tokens: int = 2000
    pool_size: int = 20
    sqlite_synchronous: str = "FULL"
    # Pages on these origins may call the API over HTTP and WebSocket (CORS).
    cors_origins: tuple[str, ...] = ()
    persisted_queries_max_bytes: int = 4 * 1024 * 1024  # 0 turns persisted queries off

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        d = cls()
        return cls(
            database_url=env.get("DATABASE_URL", d.database_url),
            host=env.get("HOST", d.host),
            port=int(env.get("PORT", d.port)),
            log_level=env.get("LOG_LEVEL", d.log_level),
            run_projector=_flag(env.get("RUN_PROJECTOR", "true")),
            poll_interval=float(env.get("POLL_INTERVAL", d.poll_interval)),
            read_wait_seconds=float(env.get("READ_WAIT_SECONDS", d.read_wait_seconds)),
            max_body_bytes=int(env.get("MAX_BODY_BYTES", d.max_body_bytes)),
            max_depth=int(env.get("MAX_QUERY_DEPTH", d.max_depth)),
            max_aliases=int(env.get("MAX_QUERY_ALIASES", d.max_aliases)),
            max_tokens=int(env.get("MAX_QUERY_TOKENS", d.max_tokens)),
            pool_size=int(env.get("DB_POOL_SIZE", d.pool_size)),
            sqlite_synchronous=env.get("SQLITE_SYNCHRONOUS", d.sqlite_synchronous),
            cors_origins=_origins(env.get("CORS_ORIGINS", "")),
            persisted_queries_max_bytes=int(
                env.get("PERSISTED_QUERIES_MAX_BYTES", d.persisted_queries_max_bytes)
            ),
        )
