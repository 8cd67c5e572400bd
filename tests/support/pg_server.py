"""A PostgreSQL server of a test's own (never the shared one): a fresh cluster on a free
port and a private socket directory, which the test may stop at will."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.serving import free_port

BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(*args: str) -> None:
    command = [str(BIN / args[0]), *args[1:]]
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, capture_output=True, timeout=120)


@dataclass
class OwnServer:
    url: str  # postgresql://postgres@127.0.0.1:PORT (no database)
    data: Path
    running: bool = True

    def stop(self) -> None:
        if self.running:
            _as_postgres("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            self.running = False


@contextlib.contextmanager
def own_server() -> Iterator[OwnServer]:
    if not (BIN / "initdb").exists():
        pytest.skip(f"no PostgreSQL 15 binaries in {BIN} to start a server of our own")
    root = Path(tempfile.mkdtemp(prefix="ordergraph-own-pg-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    port = free_port()
    try:
        _as_postgres("initdb", "-D", str(data), "-U", "postgres", "--auth=trust")
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {port}\n"
                f"unix_socket_directories = '{sockets}'\nfsync = off\n"
            )
        _as_postgres("pg_ctl", "-D", str(data), "-w", "-l", str(root / "log"), "start")
        server = OwnServer(f"postgresql://postgres@127.0.0.1:{port}", data)
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
