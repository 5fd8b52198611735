"""Python client throughput, back to back in one run: this package (`liftbridge`) and gufo-liftbridge against
one `liftbridge` server, and nats-py against a JetStream `nats-server`, same workload.

Workloads (N messages of SIZE bytes, one partition / one stream, file storage on both servers):
  publish   - pipelined: every message sent without waiting for the previous ack, at most WINDOW in
              flight; the time runs until the last ack arrived.
              liftbridge: `await client.send()` + gather of the ack futures (max_in_flight=WINDOW)
              gufo:       `publish_bulk()` over its PublishAsync stream, WINDOW messages per stream (acks awaited)
              nats-py:    `await js.publish_async()` + gather (publish_async_max_pending=WINDOW)
  subscribe - read the N stored messages from the start of the stream.
              liftbridge: `async for msg in client.subscribe(start=EARLIEST)`
              gufo:       `async for msg in client.subscribe(start_position=EARLIEST)`
              nats-py:    ordered push consumer (`js.subscribe(ordered_consumer=True)`, deliver all)

Each round runs every client once (order rotated per round); the figures are medians over the rounds.

    python bench.py --server-bin target/release/liftbridge [--n 100000] [--size 128] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import uuid

import liftbridge

READY = re.compile(r"liftbridge is ready.*?addr=(\S+)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_liftbridge(binary: str, data_dir: str) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, LIFTBRIDGE_NATS_EMBEDDED_PORT="0", LIFTBRIDGE_NATS_EMBEDDED_HOST="127.0.0.1", NO_COLOR="1")
    env.setdefault("RUST_LOG", "info")
    proc = subprocess.Popen(
        [binary, "--host", "127.0.0.1", "-p", "0", "-d", data_dir],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )
    found: dict[str, str] = {}
    ready = threading.Event()

    def pump() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            m = READY.search(ANSI.sub("", line))
            if m and not ready.is_set():
                found["addr"] = m.group(1).strip(",").replace("0.0.0.0", "127.0.0.1")
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(30) or "addr" not in found:
        proc.kill()
        raise RuntimeError("liftbridge did not start")
    return proc, found["addr"]


def start_jetstream(data_dir: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", data_dir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"nats://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("nats-server did not start")


# ---- liftbridge (this package) ------------------------------------------------------------------------

async def ours_publish(addr: str, stream: str, n: int, payload: bytes, window: int) -> float:
    async with await liftbridge.Client.connect([addr], max_in_flight=window) as c:
        await c.create_stream(stream, stream)
        await c.wait_for_stream(stream, 10)
        t0 = time.perf_counter()
        futs = [await c.send(stream, payload) for _ in range(n)]
        acks = await asyncio.gather(*futs)
        elapsed = time.perf_counter() - t0
        assert acks[-1].offset == n - 1, acks[-1].offset
        return elapsed


async def ours_subscribe(addr: str, stream: str, n: int) -> float:
    async with await liftbridge.Client.connect([addr]) as c:
        t0 = time.perf_counter()
        count = 0
        async for m in c.subscribe(stream, start=liftbridge.StartPosition.EARLIEST):
            count += 1
            if count == n:
                break
        return time.perf_counter() - t0


# ---- gufo-liftbridge ----------------------------------------------------------------------------------

async def gufo_publish(addr: str, stream: str, n: int, payload: bytes, window: int) -> float:
    from gufo.liftbridge.client import LiftbridgeClient

    async with LiftbridgeClient([addr]) as c:
        await c.create_stream(subject=stream, name=stream, wait_for_stream=True)
        t0 = time.perf_counter()
        # One PublishAsync stream per WINDOW messages, acks awaited per stream: at most WINDOW in flight, as for
        # the other clients. (One stream for all N messages made our server's HTTP/2 layer answer GOAWAY
        # "too_many_data_frames" to grpcio after ~100k small frames.)
        acks = 0
        for start in range(0, n, window):
            reqs = [c.get_publish_request(payload, stream=stream, partition=0) for _ in range(min(window, n - start))]
            async for _ack in c.publish_bulk(reqs, wait=True):
                acks += 1
        elapsed = time.perf_counter() - t0
        assert acks == n, acks
        return elapsed


async def gufo_subscribe(addr: str, stream: str, n: int) -> float:
    from gufo.liftbridge.client import LiftbridgeClient
    from gufo.liftbridge.types import StartPosition

    async with LiftbridgeClient([addr]) as c:
        t0 = time.perf_counter()
        count = 0
        async for m in c.subscribe(stream, partition=0, start_position=StartPosition.EARLIEST):
            count += 1
            if count == n:
                break
        return time.perf_counter() - t0


# ---- nats-py + JetStream ------------------------------------------------------------------------------

async def nats_publish(url: str, stream: str, n: int, payload: bytes, window: int) -> float:
    import nats

    nc = await nats.connect(url)
    try:
        js = nc.jetstream(publish_async_max_pending=window)
        await js.add_stream(name=stream, subjects=[stream])
        t0 = time.perf_counter()
        futs = [await js.publish_async(stream, payload) for _ in range(n)]
        acks = await asyncio.gather(*futs)
        elapsed = time.perf_counter() - t0
        assert acks[-1].seq == n, acks[-1].seq
        return elapsed
    finally:
        await nc.close()


async def nats_subscribe(url: str, stream: str, n: int) -> float:
    import nats
    from nats.js.api import DeliverPolicy

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        t0 = time.perf_counter()
        sub = await js.subscribe(
            stream, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL,
            pending_msgs_limit=1_000_000, pending_bytes_limit=1 << 30,
        )
        count = 0
        async for _ in sub.messages:
            count += 1
            if count == n:
                break
        elapsed = time.perf_counter() - t0
        await sub.unsubscribe()
        return elapsed
    finally:
        await nc.close()


async def run(args: argparse.Namespace) -> None:
    work = tempfile.mkdtemp(prefix="py-bench-")
    lb, lb_addr = start_liftbridge(args.server_bin, os.path.join(work, "lb"))
    js, js_url = start_jetstream(os.path.join(work, "js"))
    payload = b"x" * args.size
    clients = {
        "liftbridge (this package)": (lb_addr, ours_publish, ours_subscribe),
        "gufo-liftbridge": (lb_addr, gufo_publish, gufo_subscribe),
        "nats-py + JetStream": (js_url, nats_publish, nats_subscribe),
    }
    results: dict[str, dict[str, list[float]]] = {k: {"publish": [], "subscribe": []} for k in clients}
    failures: list[str] = []
    try:
        names = list(clients)
        for r in range(args.rounds):
            order = names[r % len(names):] + names[: r % len(names)]
            for name in order:
                addr, pub, sub = clients[name]
                for attempt in (1, 2):
                    stream = "b" + uuid.uuid4().hex[:10]
                    try:
                        tp = await asyncio.wait_for(pub(addr, stream, args.n, payload, args.window), 600)
                        ts = await asyncio.wait_for(sub(addr, stream, args.n), 600)
                        break
                    except BaseException as e:  # noqa: BLE001 - a client failing is reported, then retried once
                        if attempt == 2 or isinstance(e, KeyboardInterrupt):
                            raise
                        print(f"round {r + 1} {name}: failed ({type(e).__name__}: {e}); retrying once", flush=True)
                        failures.append(f"round {r + 1} {name}: {type(e).__name__}")
                results[name]["publish"].append(args.n / tp)
                results[name]["subscribe"].append(args.n / ts)
                print(f"round {r + 1} {name:28s} publish {args.n / tp:>10,.0f} msg/s   subscribe {args.n / ts:>10,.0f} msg/s", flush=True)
    finally:
        for p in (lb, js):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}; "
          f"n={args.n} size={args.size} window={args.window} rounds={args.rounds}")
    print("| client | pipelined publish (msg/s, median) | subscribe (msg/s, median) |")
    print("|---|---:|---:|")
    med = {k: {w: statistics.median(v) for w, v in d.items()} for k, d in results.items()}
    for name in clients:
        print(f"| {name} | {med[name]['publish']:,.0f} | {med[name]['subscribe']:,.0f} |")
    if failures:
        print("failed runs (retried): " + "; ".join(failures))
    ours = med["liftbridge (this package)"]
    for other in ("gufo-liftbridge", "nats-py + JetStream"):
        print(f"ratio vs {other}: publish {ours['publish'] / med[other]['publish']:.2f}x, "
              f"subscribe {ours['subscribe'] / med[other]['subscribe']:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server-bin", required=True, help="the liftbridge server binary (release build)")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--window", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
