"""Settings checked at start-up: one clear line per wrong value, naming the variable and what
is accepted; ``--help`` fast whatever the environment holds."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import fields

import pytest

from graph.runtime.settings import VARIABLES, InvalidSettings, Settings


def run_cli(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "graph.runtime.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("PORT", "abc", "PORT='abc': expected a whole number from 1 to 65535"),
        ("PORT", "70000", "PORT='70000': expected a whole number from 1 to 65535"),
        ("RUN_PROJECTOR", "flase", "RUN_PROJECTOR='flase': expected one of 1, true, yes, on, 0,"),
        ("REQUEST_LOG", "maybe", "REQUEST_LOG='maybe': expected one of 1, true"),
        ("TRACING", "", "TRACING='': expected one of"),
        ("DATABASE_URL", "mysql://db/orders", "DATABASE_URL='mysql://db/orders': expected sqlite:"),
        ("DATABASE_URL", "postgresql://h:port/db", "(the port is not a number)"),
        ("DATABASE_URL", "postgresql://127.0.0.1:5432", "(no database name)"),
        ("DATABASE_URL", "sqlite://relative.db", "expected sqlite:///path/to/file.db"),
        ("READ_DATABASE_URLS", "postgresql://h/db,sqlite:///x.db", "read targets are PostgreSQL"),
        ("READ_DATABASE_URLS", "postgresql://h:x/db", "(the port is not a number)"),
        ("READ_MAX_LAG_SECONDS", "0", "READ_MAX_LAG_SECONDS='0': expected a number of seconds"),
        ("HOST", "http://x", "HOST='http://x': expected a host name or IP address"),
        ("LOG_LEVEL", "verbose", "LOG_LEVEL='verbose': expected one of critical, error,"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT='xml': expected one of auto, json, text"),
        ("POLL_INTERVAL", "soon", "POLL_INTERVAL='soon': expected a number of seconds from 0.01"),
        ("READ_WAIT_SECONDS", "-1", "READ_WAIT_SECONDS='-1': expected a number of seconds from 0"),
        ("READ_WAIT_SECONDS", "nan", "expected a number of seconds"),
        ("MAX_BODY_BYTES", "1", "MAX_BODY_BYTES='1': expected a whole number from 1024"),
        ("MAX_QUERY_DEPTH", "0", "MAX_QUERY_DEPTH='0': expected a whole number from 1 to 100"),
        ("MAX_QUERY_ALIASES", "x", "MAX_QUERY_ALIASES='x': expected a whole number"),
        ("MAX_QUERY_TOKENS", "1e9", "MAX_QUERY_TOKENS='1e9': expected a whole number"),
        ("DB_POOL_SIZE", "0", "DB_POOL_SIZE='0': expected a whole number from 1 to 1000"),
        ("SQLITE_SYNCHRONOUS", "OFF", "SQLITE_SYNCHRONOUS='OFF': expected one of FULL, NORMAL"),
        ("DB_CONNECT_TIMEOUT", "0", "DB_CONNECT_TIMEOUT='0': expected a number of seconds"),
        ("STALL_SECONDS", "a while", "STALL_SECONDS='a while': expected a number of seconds"),
        ("WORKERS", "many", "WORKERS='many': expected a whole number from 1 to 64"),
        ("INLINE_PROJECTIONS", "orders", "INLINE_PROJECTIONS='orders': expected all, none, or"),
        ("INLINE_PROJECTIONS", "all,order_views", "expected all, none, or some of order_views"),
    ],
)
def test_each_wrong_value_is_named_with_what_is_accepted(
    variable: str, value: str, says: str
) -> None:
    with pytest.raises(InvalidSettings) as raised:
        Settings.from_env({variable: value})
    (problem,) = raised.value.problems
    assert says in problem


def test_every_setting_is_read_and_defaults_hold() -> None:
    assert Settings.from_env({}) == Settings()
    assert {v.field for v in VARIABLES} == {f.name for f in fields(Settings)}
    assert len({v.name for v in VARIABLES}) == len(VARIABLES)
    settings = Settings.from_env(
        {
            "RUN_PROJECTOR": " Off ",
            "PORT": "8080",
            "SQLITE_SYNCHRONOUS": "normal",
            "DATABASE_URL": "postgresql://u:secret@db.example:6543/orders",
        }
    )
    assert settings.run_projector is False
    assert settings.port == 8080
    assert settings.sqlite_synchronous == "NORMAL"
    assert settings.database_url == "postgresql://u:secret@db.example:6543/orders"


def test_inline_projections_are_all_by_default_and_chosen_by_name() -> None:
    names = ("order_views", "customer_summaries", "daily_sales")
    for url in ("sqlite:///x.db", "postgresql://u@h/db"):
        assert Settings.from_env({"DATABASE_URL": url}).inline_names(names) == names
    chosen = Settings.from_env({"INLINE_PROJECTIONS": " daily_sales, Order_Views "})
    assert chosen.inline_names(names) == ("order_views", "daily_sales")
    assert Settings.from_env({"INLINE_PROJECTIONS": "none"}).inline_names(names) == ()


def test_the_command_says_every_mistake_at_once_and_exits_2() -> None:
    done = run_cli("serve", PORT="abc", RUN_PROJECTOR="flase", DATABASE_URL="mysql://x/y")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "ordergraph: DATABASE_URL='mysql://x/y': expected sqlite:///path/to/file.db or "
        "postgresql://user@host:port/database",
        "ordergraph: PORT='abc': expected a whole number from 1 to 65535",
        "ordergraph: RUN_PROJECTOR='flase': expected one of 1, true, yes, on, 0, false, no, off",
    ]


def test_a_wrong_command_line_value_is_refused_by_argparse() -> None:
    done = run_cli("serve", "--port", "abc")
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        "ordergraph serve: error: argument --port: 'abc': expected a whole number from 1 to 65535"
    )
    assert "Traceback" not in done.stderr


def test_help_is_fast_and_works_with_a_broken_environment() -> None:
    done = run_cli("--help", PORT="abc")
    assert done.returncode == 0
    assert "serve" in done.stdout
    assert "Exit codes" in done.stdout
    # --help imports none of the heavy libraries (they cost about 1.7 s here)
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            # readmodels.names is the one module of ours it needs: a few constants.
            "import sys; from graph.runtime import cli; "
            "print(sorted({m for m in sys.modules if m.split('.')[0] in "
            "{'sqlalchemy', 'strawberry', 'starlette', 'uvicorn', 'alembic', 'asyncpg', "
            "'prometheus_client', 'graphql', 'domain', 'readmodels', 'migrations'}} "
            "- {'readmodels', 'readmodels.names'}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "[]"


def test_read_targets_are_postgresql_standbys_of_a_postgresql_primary() -> None:
    found = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://u@primary/db",
            "READ_DATABASE_URLS": " postgresql://u@s1/db , postgresql://u@s2:5433/db ",
        }
    )
    assert found.read_database_urls == ("postgresql://u@s1/db", "postgresql://u@s2:5433/db")
    assert Settings().read_database_urls == ()
    with pytest.raises(InvalidSettings, match="standbys need DATABASE_URL to be their"):
        Settings.from_env({"READ_DATABASE_URLS": "postgresql://u@s1/db"})
