"""Runtime behaviour: the GIL is free while Rust waits, loops closed with work in flight, TLS end to end."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import pytest

import liftbridge
from liftbridge import StartPosition, StopPosition

from conftest import start_server


async def test_gil_is_released_while_rust_waits(client, stream):
    """A Python thread keeps running while the loop awaits a subscription that has nothing to deliver."""
    counter = 0
    stop = threading.Event()

    def spin():
        nonlocal counter
        while not stop.is_set():
            counter += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        sub = client.subscribe(stream)
        nxt = asyncio.ensure_future(sub.__anext__())
        before = counter
        done, _ = await asyncio.wait([nxt], timeout=0.5)
        assert not done
        assert counter - before > 1000
        nxt.cancel()
        sub.close()
    finally:
        stop.set()
        t.join()


def run_script(code: str, server_addr: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", textwrap.dedent(code), server_addr],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_closing_the_loop_with_work_in_flight_does_not_crash(server):
    """Pending fetches, publishes and acks whose loop is closed under them, then interpreter exit."""
    r = run_script(
        """
        import asyncio, sys, uuid, liftbridge
        addr = sys.argv[1]
        loop = asyncio.new_event_loop()
        async def start():
            c = await liftbridge.Client.connect([addr])
            s = "s-" + uuid.uuid4().hex[:8]
            await c.create_stream(s, s)
            await c.wait_for_stream(s, 10)
            sub = c.subscribe(s)
            pending = [asyncio.ensure_future(sub.__anext__())]
            for i in range(200):
                pending.append(asyncio.ensure_future(c.publish(s, b"x")))
            pending.append(asyncio.ensure_future(c.send(s, b"y")))
            pending.append(asyncio.ensure_future(c.fetch_metadata()))
            return c, sub, pending
        c, sub, pending = loop.run_until_complete(start())
        loop.close()          # work still in flight on the Rust side
        import time; time.sleep(1.0)   # results arrive for a closed loop
        # A second loop still works.
        async def again():
            c2 = await liftbridge.Client.connect([addr])
            await c2.fetch_metadata()
            await c2.close()
        asyncio.run(again())
        print("ok")
        """,
        server.addr,
    )
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout
    assert "panicked" not in r.stderr
    assert "Traceback" not in r.stderr, r.stderr


def test_exit_with_subscription_running(server):
    """The interpreter exits cleanly while a subscription is being read at full speed."""
    r = run_script(
        """
        import asyncio, sys, uuid, liftbridge
        addr = sys.argv[1]
        async def main():
            c = await liftbridge.Client.connect([addr])
            s = "s-" + uuid.uuid4().hex[:8]
            await c.create_stream(s, s)
            await c.wait_for_stream(s, 10)
            futs = [await c.send(s, b"z" * 100) for _ in range(3000)]
            await asyncio.gather(*futs)
            n = 0
            async def reader():
                async for m in c.subscribe(s, start=liftbridge.StartPosition.EARLIEST):
                    pass
            bg = asyncio.ensure_future(reader())   # still reading when main() returns
            async for m in c.subscribe(s, start=liftbridge.StartPosition.EARLIEST):
                n += 1
                if n == 1000:
                    print("read", n, flush=True)
                    break
            asyncio.ensure_future(c.publish(s, b"in flight at exit"))
        asyncio.run(main())
        """,
        server.addr,
    )
    assert r.returncode == 0, r.stderr
    assert "read 1000" in r.stdout
    assert "panicked" not in r.stderr


class TlsProxy:
    """A TLS-terminating TCP proxy (Python's ssl, ALPN h2) in front of the plain-text server: the client's TLS
    stack is exercised end to end against a real certificate chain."""

    def __init__(self, backend: str, cert: str, key: str, listen: tuple[str, int] = ("127.0.0.1", 0)):
        self.listen = listen
        self.backend_host, port = backend.rsplit(":", 1)
        self.backend_port = int(port)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.ctx.set_alpn_protocols(["h2"])
        self.server: asyncio.base_events.Server | None = None
        self.handshakes = 0

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, *self.listen, ssl=self.ctx)
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    async def _handle(self, reader, writer):
        self.handshakes += 1
        br, bw = await asyncio.open_connection(self.backend_host, self.backend_port)

        async def pipe(r, w):
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except (ConnectionError, asyncio.CancelledError, ssl.SSLError):
                pass
            finally:
                w.close()

        await asyncio.gather(pipe(reader, bw), pipe(br, writer))

    async def stop(self) -> None:
        if self.server:
            self.server.close()


def make_cert(d: str) -> tuple[str, str, str]:
    """A test CA and a server certificate for localhost/127.0.0.1 signed by it: (ca, cert, key) paths."""
    ca, ca_key = os.path.join(d, "ca.pem"), os.path.join(d, "ca.key")
    cert, key, csr, ext = (os.path.join(d, n) for n in ("cert.pem", "key.pem", "leaf.csr", "leaf.ext"))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", *ec, "-days", "1", "-keyout", ca_key, "-out", ca, "-subj", "/CN=liftbridge test CA")
    run("req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "1", "-out", cert, "-extfile", ext)
    return ca, cert, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
async def test_tls_end_to_end(stream_name):
    # The server listens in plain text on 127.0.0.1:P and advertises 127.0.0.2:P, where the TLS proxy listens:
    # every connection the client makes (seed and leader) goes through TLS.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    srv = start_server(host="127.0.0.2", port=port, env_extra={"LIFTBRIDGE_LISTEN": f"127.0.0.1:{port}"})
    d = tempfile.mkdtemp(prefix="liftbridge-tls-")
    ca, cert, key = make_cert(d)
    proxy = TlsProxy(f"127.0.0.1:{port}", cert, key, listen=("127.0.0.2", port))
    addr = await proxy.start()
    try:
        tls = liftbridge.TlsOptions(ca_file=ca, server_name="localhost")
        async with await liftbridge.Client.connect([addr], tls=tls) as c:
            await c.create_stream(stream_name, stream_name)
            await c.wait_for_stream(stream_name, 10)
            md = await c.fetch_metadata()
            assert md.brokers[0].addr == addr
            assert (await c.publish(stream_name, b"secret")).offset == 0
            got = [m.value async for m in c.subscribe(stream_name, start=StartPosition.EARLIEST, stop=StopPosition.LATEST)]
            assert got == [b"secret"]
        assert proxy.handshakes >= 1
        with open(ca) as f:
            pem = f.read()
        async with await liftbridge.Client.connect([addr], tls=liftbridge.TlsOptions(ca_pem=pem, server_name="localhost")) as c:
            assert (await c.fetch_metadata()).has_stream(stream_name)
        # A CA that did not sign the certificate is refused.
        other_ca, _, _ = make_cert(tempfile.mkdtemp(prefix="liftbridge-tls-other-"))
        with pytest.raises(liftbridge.TlsError) as e:
            await liftbridge.Client.connect([addr], tls=liftbridge.TlsOptions(ca_file=other_ca, server_name="localhost"), connect_timeout=1)
        assert e.value.code == "tls"
        # Plain text to a TLS endpoint fails too.
        with pytest.raises(liftbridge.LiftbridgeError):
            await liftbridge.Client.connect([addr], connect_timeout=1)
    finally:
        await proxy.stop()
        srv.stop()
        shutil.rmtree(d, ignore_errors=True)
