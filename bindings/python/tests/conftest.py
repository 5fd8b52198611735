"""Fixtures: a real `liftbridge` server process (standalone, embedded NATS) on free loopback ports, and
clients connected to it.

The server binary comes from $LIFTBRIDGE_SERVER_BIN (scripts/test-python builds it and sets it)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest

import liftbridge

READY = re.compile(r"liftbridge is ready.*?addr=(\S+)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Server:
    """A running `liftbridge` process; `addr` is its gRPC `host:port`."""

    def __init__(self, proc: subprocess.Popen[str], addr: str, data_dir: str, log: list[str]):
        self.proc = proc
        self.addr = addr
        self.data_dir = data_dir
        self.log = log

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def server_binary() -> str:
    path = os.environ.get("LIFTBRIDGE_SERVER_BIN")
    if not path or not Path(path).is_file():
        raise RuntimeError(
            "LIFTBRIDGE_SERVER_BIN must point to a built `liftbridge` server binary "
            "(scripts/test-python builds it: cargo build -p liftbridge-server --bin liftbridge)"
        )
    return path


def start_server(
    extra_args: list[str] | None = None,
    timeout: float = 30.0,
    host: str = "127.0.0.1",
    port: int = 0,
    env_extra: dict[str, str] | None = None,
) -> Server:
    """Starts a standalone server on free loopback ports and waits for its ready line."""
    data_dir = tempfile.mkdtemp(prefix="liftbridge-py-")
    env = dict(os.environ)
    env["LIFTBRIDGE_NATS_EMBEDDED_PORT"] = "0"
    env["LIFTBRIDGE_NATS_EMBEDDED_HOST"] = "127.0.0.1"
    env.setdefault("RUST_LOG", "info")
    env["NO_COLOR"] = "1"
    env.update(env_extra or {})
    proc = subprocess.Popen(
        [server_binary(), "--host", host, "-p", str(port), "-d", data_dir, *(extra_args or [])],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    log: list[str] = []
    found: dict[str, str] = {}
    ready = threading.Event()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            line = ANSI.sub("", line)
            log.append(line)
            if not ready.is_set():
                m = READY.search(line)
                if m:
                    found["addr"] = m.group(1).strip(",").replace("0.0.0.0", "127.0.0.1")
                    ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(timeout) or "addr" not in found:
        proc.kill()
        proc.wait(timeout=5)
        raise RuntimeError("liftbridge did not become ready:\n" + "".join(log[-30:]))
    return Server(proc, found["addr"], data_dir, log)


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    srv = start_server()
    yield srv
    srv.stop()


@pytest.fixture
async def client(server: Server) -> AsyncIterator[liftbridge.Client]:
    async with await liftbridge.Client.connect([server.addr]) as c:
        yield c


@pytest.fixture
def stream_name() -> str:
    return "s-" + uuid.uuid4().hex[:12]


@pytest.fixture
async def stream(client: liftbridge.Client, stream_name: str) -> str:
    """A fresh single-partition stream (its subject is its name)."""
    await client.create_stream(stream_name, stream_name)
    await client.wait_for_stream(stream_name, 10)
    return stream_name


async def wait_until(cond, timeout: float = 10.0, what: str = "condition") -> None:
    """Polls an (async or plain) condition until it holds, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        ok = cond()
        if asyncio.iscoroutine(ok):
            ok = await ok
        if ok:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
