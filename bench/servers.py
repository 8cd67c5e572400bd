"""Subprocesses: the servers under test, and the commands around them.

Every process started here is stopped by the context manager that started it (SIGTERM, then
SIGKILL), whatever happens inside; each runs in its own session so a stray child cannot keep
the benchmark's terminal or pipes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 60.0
STOP_GRACE = 10.0
BIN = Path(sys.executable).parent  # the venv's bin: ordergraph and python live here


@dataclass(frozen=True, slots=True)
class Server:
    name: str
    pid: int
    base_url: str
    log: Path

    def peak_memory_kib(self) -> int:
        """VmHWM: the resident set's high-water mark since the process started."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise RuntimeError(f"no VmHWM for pid {self.pid}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def production_env(database_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # AUTH=none explicitly: PostgreSQL requires a choice, and the benchmark measures
    # the write path, not token checks.
    env.update(DATABASE_URL=database_url, LOG_LEVEL="warning", AUTH="none", **extra)
    return env


def ordergraph_command(port: int) -> list[str]:
    return [str(BIN / "ordergraph"), "serve", "--host", HOST, "--port", str(port)]


def baseline_command(port: int) -> list[str]:
    return [str(BIN / "python"), "-m", "bench.baseline_server", "--port", str(port)]


@contextlib.asynccontextmanager
async def serve(
    name: str, command: Sequence[str], port: int, env: Mapping[str, str], log_dir: Path
) -> AsyncIterator[Server]:
    """Start a server and yield it once its port accepts connections (uvicorn binds only
    after the app's lifespan start-up has finished, so that means ready)."""
    log = log_dir / f"{name}.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            *command, env=dict(env), stdout=output, stderr=output, start_new_session=True
        )
        try:
            await _wait_listening(process, port, log)
            yield Server(name, process.pid, f"http://{HOST}:{port}", log)
        finally:
            await stop(process)


@contextlib.asynccontextmanager
async def background(
    name: str, command: Sequence[str], env: Mapping[str, str], log_dir: Path
) -> AsyncIterator[None]:
    """A process with no port to wait on (the projector); stopped like the servers."""
    log = log_dir / f"{name}.log"
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            *command, env=dict(env), stdout=output, stderr=output, start_new_session=True
        )
        try:
            yield
        finally:
            await stop(process)


async def _wait_listening(process: asyncio.subprocess.Process, port: int, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline and process.returncode is None:
        try:
            _, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise RuntimeError(
        f"server on port {port} did not start (exit {process.returncode}):\n{log_tail(log)}"
    )


def log_tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_GRACE)
        except TimeoutError:
            process.kill()
    await process.wait()


async def run_command(command: Sequence[str], env: Mapping[str, str], within: float = 900.0) -> str:
    """Run to completion and return stdout; raise with its output if it fails."""
    process = await asyncio.create_subprocess_exec(
        *command,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), within)
    finally:
        await stop(process)  # only does anything when the wait was cut short
    if process.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited {process.returncode}:\n{err.decode()[-3000:]}"
        )
    return out.decode()
