"""Settings, read from the environment once at start-up (see the README's table).

Every setting is one ``Var`` line in ``VARIABLES``: the environment variable, the field of
``Settings`` it fills, and a parser that turns the text into a value or raises ``ValueError``
saying what is accepted. ``Settings.from_env`` checks them all and raises ``InvalidSettings``
with one line per wrong value, so an operator fixes every mistake in one go.

Standard library only: ``ordergraph --help`` imports this module and must stay fast.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from readmodels.names import PROJECTION_NAMES  # imports nothing: --help stays fast

DEFAULT_DATABASE_URL = "sqlite:///ordergraph.db"
MAX_LEEWAY = 300.0  # seconds: more clock skew than this is a broken clock, not skew
# Which projections are inline unless INLINE_PROJECTIONS says otherwise, per backend: chosen
# by measurement (docs/performance.md, "Inline projections").
INLINE_BY_DEFAULT: dict[str, tuple[str, ...]] = {"sqlite": ("all",), "postgresql": ("all",)}

Parser = Callable[[str], Any]


class InvalidSettings(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# Parsers: each returns the value or raises ValueError("<what is accepted>").

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def flag(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"expected one of {', '.join(_TRUE + _FALSE)}")


def integer(low: int, high: int) -> Parser:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"expected a whole number from {low} to {high}") from None
        if not low <= value <= high:
            raise ValueError(f"expected a whole number from {low} to {high}")
        return value

    return parse


def seconds(low: float, high: float) -> Parser:
    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"expected a number of seconds from {low:g} to {high:g}") from None
        if not low <= value <= high:  # also refuses nan
            raise ValueError(f"expected a number of seconds from {low:g} to {high:g}")
        return value

    return parse


def number(low: float, high: float) -> Parser:
    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"expected a number from {low:g} to {high:g}") from None
        if not low <= value <= high:  # also refuses nan
            raise ValueError(f"expected a number from {low:g} to {high:g}")
        return value

    return parse


def text(value: str) -> str:
    if not value.strip():
        raise ValueError("expected a value, not blank")
    return value.strip()


def choice(*accepted: str, lower: bool = True) -> Parser:
    def parse(text: str) -> str:
        value = text.strip().lower() if lower else text.strip().upper()
        if value not in accepted:
            raise ValueError(f"expected one of {', '.join(accepted)}")
        return value

    return parse


def projection_names(text: str) -> tuple[str, ...]:
    """``all``, ``none``, or projection names separated by commas."""
    value = text.strip().lower()
    if value == "all":
        return ("all",)
    if value in ("none", ""):
        return ()
    found = tuple(part.strip() for part in value.split(",") if part.strip())
    if not set(found) <= set(PROJECTION_NAMES):
        raise ValueError(f"expected all, none, or some of {', '.join(PROJECTION_NAMES)}")
    return found


def host(text: str) -> str:
    value = text.strip()
    if not value or any(c.isspace() or c in "/@?#" for c in value):
        raise ValueError("expected a host name or IP address, such as 127.0.0.1 or 0.0.0.0")
    return value


def database_url(text: str) -> str:
    """sqlite:///path or postgresql://user@host:port/database (checked without importing
    SQLAlchemy, which --help must not pay for)."""
    value = text.strip()
    accepted = "expected sqlite:///path/to/file.db or postgresql://user@host:port/database"
    scheme, sep, rest = value.partition("://")
    driver = scheme.split("+", 1)[0].lower()
    if not sep or driver not in ("sqlite", "postgresql", "postgres"):
        raise ValueError(accepted)
    if driver == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise ValueError(accepted)
        return value
    try:
        parsed = urllib.parse.urlsplit(value)
        parsed.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise ValueError(f"{accepted} (the port is not a number)") from None
    if not parsed.hostname and "host=" not in parsed.query:
        raise ValueError(f"{accepted} (no host)")
    if not parsed.path.strip("/"):
        raise ValueError(f"{accepted} (no database name)")
    return value


def read_urls(text: str) -> tuple[str, ...]:
    """Standby URLs, separated by commas; each a postgresql:// URL."""
    found = tuple(part.strip() for part in text.split(",") if part.strip())
    for url in found:
        try:
            database_url(url)
        except ValueError as error:
            raise ValueError(f"{url!r}: {error}") from None
        if url.startswith("sqlite"):
            raise ValueError(f"{url!r}: read targets are PostgreSQL standbys (postgresql://...)")
    return found


def origins(value: str) -> tuple[str, ...]:
    """Exact origins, as browsers send them in ``Origin``: a wildcard would let any page act
    with a user's token, so it is refused rather than trusted."""
    from strawberry.http.websocket_origin import normalize_origin  # only when CORS is set

    found = tuple(part.strip() for part in value.split(",") if part.strip())
    for origin in found:
        if "*" in origin or normalize_origin(origin) != origin:
            raise ValueError(
                f"{origin!r} is not an exact origin; give each as"
                " scheme://host[:port] in lower case, no path, no wildcard"
                " (e.g. http://localhost:5173), separated by commas"
            )
    return found


def nats_url(text: str) -> str:
    value = text.strip()
    if (
        urllib.parse.urlsplit(value).scheme not in ("nats", "tls", "ws", "wss")
        or "://" not in value
    ):
        raise ValueError("expected a NATS server URL such as nats://127.0.0.1:4222")
    return value


def nats_name(*, dots: bool) -> Parser:
    """JetStream stream names and subject tokens: no spaces or wildcards (and no dots in a
    stream name), or NATS refuses them at the first publish, long after start-up."""
    safe = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")

    def parse(text: str) -> str:
        value = text.strip()
        tokens = value.split(".") if dots else [value]
        if not all(token and set(token) <= safe for token in tokens):
            what = "dot-separated words" if dots else "one word"
            raise ValueError(f"expected {what} of letters, digits, _ and - (no spaces, *, >)")
        return value

    return parse


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    # auto: human-readable on a terminal, JSON lines otherwise
    log_format: str = "auto"
    request_log: bool = True  # one line per HTTP request
    # Run the projector in this process. Several may run; on PostgreSQL one leads at a time.
    run_projector: bool = True
    # The projections applied inline, in each append's transaction (readmodels/inline.py):
    # ("all",), (), or names; None: the backend's default, INLINE_BY_DEFAULT.
    inline_projections: tuple[str, ...] | None = None
    poll_interval: float = 1.0  # seconds between looks for other processes' appends
    read_wait_seconds: float = 5.0  # how long `atLeast` waits before answering stale
    max_body_bytes: int = 256 * 1024
    max_depth: int = 12
    max_aliases: int = 30
    max_tokens: int = 2000
    pool_size: int = 20
    # Longest wait for a pooled connection, one statement (PostgreSQL) or SQLite's write lock
    # before the request is answered 503 "unavailable, retry" (connecting: db_connect_timeout).
    db_timeout: float = 10.0
    sqlite_synchronous: str = "FULL"
    # Pages on these origins may call the API over HTTP and WebSocket (CORS).
    cors_origins: tuple[str, ...] = ()
    persisted_queries_max_bytes: int = 4 * 1024 * 1024  # 0 turns persisted queries off
    db_connect_timeout: float = 10.0
    # /readyz: a projection behind the head whose position has not moved for this long
    stall_seconds: float = 30.0
    workers: int = 1
    tracing: bool = False  # OpenTelemetry spans; needs the `otel` extra
    # Identity (docs/security.md). None: not chosen, which only SQLite outside production
    # may leave at "none"; PostgreSQL needs AUTH=jwt or an explicit AUTH=none.
    auth: str | None = None
    environment: str = "development"  # "production": no introspection, suggestions, playground
    jwt_secret: str | None = None  # HS256
    jwt_public_key_file: str | None = None  # PEM: RS256 (RSA key) or ES256 (EC key)
    jwt_jwks: str | None = None  # a JWKS document: a file path or an http(s) URL
    jwt_issuer: str = "ordergraph"
    jwt_audience: str = "ordergraph"
    jwt_leeway: float = 30.0  # seconds of clock skew allowed on exp/nbf/iat
    jwt_roles_claim: str = "roles"
    jwt_customer_claim: str = "customer_id"
    # Mutations per second per token subject (token bucket, in memory per process); 0: off.
    mutation_rate: float = 10.0
    mutation_burst: int = 20
    # Budgets for what clients can make the server hold (graph/budgets.py, graph/cost.py).
    max_query_cost: int = 25_000
    max_subscriptions: int = 10_000  # open subscriptions and caughtUp waiters, all sockets
    max_subscriptions_per_socket: int = 100
    max_held_reads: int = 1_000  # atLeast reads waiting at once; beyond, answered stale
    max_wait_ahead: int = 10_000  # positions beyond the head an atLeast/caughtUp may name
    ws_init_timeout: float = 10.0  # seconds a socket may take to send connection_init
    header_timeout: float = 10.0  # seconds a request's headers may take to arrive
    body_timeout: float = 30.0  # seconds a request's body may take to arrive
    # Integration events (docs/integration.md): the relay runs beside the projector when set.
    nats_url: str | None = None
    nats_stream: str = "ORDERS"
    nats_subject_prefix: str = "orders"
    # Queries read these PostgreSQL standbys in turn (docs/operations.md, "Read replicas").
    read_database_urls: tuple[str, ...] = ()
    read_primary_fallback: bool = True  # with no standby in use, read the primary
    read_max_lag_seconds: float = 30.0  # a standby further behind is left out
    read_check_interval: float = 1.0  # seconds between looks at each standby's lag
    # A projection version retired by a switch keeps its tables this long (queries that
    # read it just before the switch still find them), then the projector drops them.
    retired_grace_seconds: float = 600.0

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def inline_names(self, known: Sequence[str]) -> tuple[str, ...]:
        """The projections of ``known`` to apply inline; raises InvalidSettings on a name
        that is not one of them."""
        chosen = self.inline_projections
        if chosen is None:
            chosen = INLINE_BY_DEFAULT["sqlite" if self.is_sqlite else "postgresql"]
        if chosen == ("all",):
            return tuple(known)
        unknown = [name for name in chosen if name not in known]
        if unknown:
            raise InvalidSettings(
                [
                    f"INLINE_PROJECTIONS: no projection {', '.join(map(repr, unknown))};"
                    f" expected all, none, or some of {', '.join(known)}"
                ]
            )
        return tuple(name for name in known if name in chosen)

    @property
    def production(self) -> bool:
        return self.environment.strip().lower() == "production"

    @property
    def auth_mode(self) -> str:
        """``none`` or ``jwt``; raises InvalidSettings when the choice is not allowed. Checked
        by the server only: migrate, project and rebuild serve no one."""
        mode = self.auth
        if mode is None:
            if self.is_sqlite and not self.production:
                return "none"  # the zero-set-up default
            raise InvalidSettings(
                [
                    "AUTH is not set: with PostgreSQL or ENVIRONMENT=production set AUTH=jwt "
                    "(and JWT_SECRET, JWT_PUBLIC_KEY_FILE or JWT_JWKS), or AUTH=none explicitly"
                ]
            )
        mode = mode.strip().lower()
        if mode not in ("none", "jwt"):
            raise InvalidSettings([f"AUTH must be none or jwt, not {self.auth!r}"])
        problems = []
        if mode == "jwt":
            keys = [self.jwt_secret, self.jwt_public_key_file, self.jwt_jwks]
            if sum(k is not None for k in keys) != 1:
                problems.append(
                    "AUTH=jwt needs exactly one of JWT_SECRET, JWT_PUBLIC_KEY_FILE, JWT_JWKS"
                )
            if self.jwt_secret is not None and len(self.jwt_secret.encode()) < 32:
                problems.append("JWT_SECRET must be at least 32 bytes (HS256)")
            if not 0 <= self.jwt_leeway <= MAX_LEEWAY:
                problems.append(f"JWT_LEEWAY must be between 0 and {MAX_LEEWAY:g} seconds")
        if problems:
            raise InvalidSettings(problems)
        return mode

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every variable in VARIABLES; raise InvalidSettings naming each wrong one."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[str] = []
        for var in VARIABLES:
            raw = env.get(var.name)
            if raw is None:
                continue
            try:
                values[var.field] = var.parse(raw)
            except ValueError as error:
                problems.append(f"{var.name}={raw!r}: {error}")
        if values.get("read_database_urls") and str(
            values.get("database_url", DEFAULT_DATABASE_URL)
        ).startswith("sqlite"):
            problems.append(
                "READ_DATABASE_URLS: standbys need DATABASE_URL to be their PostgreSQL primary"
            )
        if problems:
            raise InvalidSettings(problems)
        return cls(**values)


@dataclass(frozen=True)
class Var:
    name: str  # the environment variable
    field: str  # the Settings field it fills
    parse: Parser


# One line per setting. Add the field to Settings, a line here, and a row to the README.
VARIABLES: tuple[Var, ...] = (
    Var("DATABASE_URL", "database_url", database_url),
    Var("HOST", "host", host),
    Var("PORT", "port", integer(1, 65535)),
    Var("LOG_LEVEL", "log_level", choice("critical", "error", "warning", "info", "debug")),
    Var("LOG_FORMAT", "log_format", choice("auto", "json", "text")),
    Var("REQUEST_LOG", "request_log", flag),
    Var("RUN_PROJECTOR", "run_projector", flag),
    Var("INLINE_PROJECTIONS", "inline_projections", projection_names),
    Var("POLL_INTERVAL", "poll_interval", seconds(0.01, 3600)),
    Var("READ_WAIT_SECONDS", "read_wait_seconds", seconds(0, 300)),
    Var("MAX_BODY_BYTES", "max_body_bytes", integer(1024, 64 * 1024 * 1024)),
    Var("MAX_QUERY_DEPTH", "max_depth", integer(1, 100)),
    Var("MAX_QUERY_ALIASES", "max_aliases", integer(1, 1000)),
    Var("MAX_QUERY_TOKENS", "max_tokens", integer(10, 100_000)),
    Var("DB_POOL_SIZE", "pool_size", integer(1, 1000)),
    Var("SQLITE_SYNCHRONOUS", "sqlite_synchronous", choice("FULL", "NORMAL", lower=False)),
    Var("CORS_ORIGINS", "cors_origins", origins),
    Var("PERSISTED_QUERIES_MAX_BYTES", "persisted_queries_max_bytes", integer(0, 1024**3)),
    Var("DB_CONNECT_TIMEOUT", "db_connect_timeout", seconds(0.1, 300)),
    Var("DB_TIMEOUT", "db_timeout", seconds(0.1, 300)),
    Var("STALL_SECONDS", "stall_seconds", seconds(0.1, 86_400)),
    Var("WORKERS", "workers", integer(1, 64)),
    Var("TRACING", "tracing", flag),
    Var("AUTH", "auth", choice("none", "jwt")),
    Var("ENVIRONMENT", "environment", choice("development", "production")),
    Var("JWT_SECRET", "jwt_secret", text),
    Var("JWT_PUBLIC_KEY_FILE", "jwt_public_key_file", text),
    Var("JWT_JWKS", "jwt_jwks", text),
    Var("JWT_ISSUER", "jwt_issuer", text),
    Var("JWT_AUDIENCE", "jwt_audience", text),
    Var("JWT_LEEWAY", "jwt_leeway", seconds(0, MAX_LEEWAY)),
    Var("JWT_ROLES_CLAIM", "jwt_roles_claim", text),
    Var("JWT_CUSTOMER_CLAIM", "jwt_customer_claim", text),
    Var("MUTATION_RATE", "mutation_rate", number(0, 1_000_000)),
    Var("MUTATION_BURST", "mutation_burst", integer(1, 1_000_000)),
    Var("MAX_QUERY_COST", "max_query_cost", integer(10, 10**9)),
    Var("MAX_SUBSCRIPTIONS", "max_subscriptions", integer(1, 10**7)),
    Var("MAX_SUBSCRIPTIONS_PER_SOCKET", "max_subscriptions_per_socket", integer(1, 100_000)),
    Var("MAX_HELD_READS", "max_held_reads", integer(0, 10**7)),
    Var("MAX_WAIT_AHEAD", "max_wait_ahead", integer(0, 2**62)),
    Var("WS_INIT_TIMEOUT", "ws_init_timeout", seconds(0.1, 3600)),
    Var("HEADER_TIMEOUT", "header_timeout", seconds(0.1, 3600)),
    Var("BODY_TIMEOUT", "body_timeout", seconds(0.1, 3600)),
    Var("NATS_URL", "nats_url", nats_url),
    Var("NATS_STREAM", "nats_stream", nats_name(dots=False)),
    Var("NATS_SUBJECT_PREFIX", "nats_subject_prefix", nats_name(dots=True)),
    Var("READ_DATABASE_URLS", "read_database_urls", read_urls),
    Var("READ_PRIMARY_FALLBACK", "read_primary_fallback", flag),
    Var("READ_MAX_LAG_SECONDS", "read_max_lag_seconds", seconds(0.1, 86_400)),
    Var("READ_CHECK_INTERVAL", "read_check_interval", seconds(0.05, 3600)),
    Var("RETIRED_GRACE_SECONDS", "retired_grace_seconds", seconds(0, 30 * 86_400)),
)

assert {v.field for v in VARIABLES} <= {f.name for f in fields(Settings)}
