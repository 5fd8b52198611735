"""Interop: gufo-liftbridge (an independent Python Liftbridge client from PyPI) against our server.

Usage: python gufo_smoke.py HOST:PORT
Exits non-zero with a message on the first mismatch.
"""
import asyncio
import sys

from gufo.liftbridge.client import LiftbridgeClient
from gufo.liftbridge.error import ErrorAlreadyExists
from gufo.liftbridge.types import StartPosition

N = 20


async def collect(client, stream, n, **kwargs):
    out = []

    async def run():
        async for msg in client.subscribe(stream, **kwargs):
            out.append(msg)
            if len(out) == n:
                return

    await asyncio.wait_for(run(), 15)
    return out


async def main(addr: str) -> None:
    async with LiftbridgeClient([addr]) as client:
        await client.create_stream("gufo", subject="gufo.subject", partitions=1, wait_for_stream=True)
        try:
            await client.create_stream("gufo", subject="gufo.subject")
        except ErrorAlreadyExists:
            pass
        else:
            raise AssertionError("creating an existing stream must raise ErrorAlreadyExists")

        for i in range(N):
            await client.publish(
                f"value-{i}".encode(), stream="gufo", key=f"key-{i}".encode(), headers={"n": str(i).encode()}
            )
        msgs = await collect(client, "gufo", N, start_position=StartPosition.EARLIEST)
        assert [m.offset for m in msgs] == list(range(N)), [m.offset for m in msgs]
        assert msgs[3].value == b"value-3" and msgs[3].key == b"key-3", msgs[3]
        assert msgs[3].headers["n"] == b"3", msgs[3].headers

        reqs = [client.get_publish_request(f"bulk-{i}".encode(), stream="gufo") for i in range(N)]
        acks = [ack async for ack in client.publish_bulk(reqs)]
        assert len(acks) == N, f"{len(acks)} acks for {N} bulk publishes"

        meta = await client.get_partition_metadata("gufo", 0)
        assert meta.high_watermark == 2 * N - 1, meta
        assert meta.newest_offset == 2 * N - 1, meta

        md = await client.get_metadata()
        assert any(s.name == "gufo" for s in md.metadata), md
        assert len(md.brokers) == 1 and md.brokers[0].port > 0, md.brokers

        # Offsets past the end wait for new data.
        async def first_after_end():
            async for msg in client.subscribe("gufo", start_position=StartPosition.OFFSET, start_offset=2 * N):
                return msg

        waiter = asyncio.ensure_future(first_after_end())
        await asyncio.sleep(0.3)
        assert not waiter.done(), "nothing may arrive before a new publish"
        await client.publish(b"late", stream="gufo")
        late = await asyncio.wait_for(waiter, 15)
        assert late.offset == 2 * N and late.value == b"late", late

        await client.delete_stream("gufo")
        md = await client.get_metadata()
        names = [s.name for s in md.metadata]
        assert "gufo" not in names, names
    print("gufo-liftbridge interop: ok")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
