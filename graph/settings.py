"""Settings, read from the environment once at start-up."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_DATABASE_URL = "sqlite:///ordergraph.db"


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        return cls(
            database_url=env.get("DATABASE_URL", DEFAULT_DATABASE_URL),
            host=env.get("HOST", "127.0.0.1"),
            port=int(env.get("PORT", "8000")),
            log_level=env.get("LOG_LEVEL", "info"),
        )
