"""Pipelined publishing: `send` returns once the message is queued, its ack is awaited later, so many messages
are in flight at once (the client's in-flight window applies backpressure).

    python examples/python/publish_async.py 127.0.0.1:9292 bulk 100000
"""

import asyncio
import sys
import time

import liftbridge


async def main(addr: str, stream: str, count: int) -> None:
    async with await liftbridge.Client.connect([addr], max_in_flight=1024) as client:
        await client.create_stream(stream, stream, if_not_exists=True)
        await client.wait_for_stream(stream, 10)
        payload = b"x" * 128
        started = time.perf_counter()
        acks = []
        for _ in range(count):
            acks.append(await client.send(stream, payload))  # an asyncio.Future of the Ack
        last = (await asyncio.gather(*acks))[-1].offset
        elapsed = time.perf_counter() - started
        print(f"{count} messages acked in {elapsed:.2f} s ({count / elapsed:,.0f} msg/s), last offset {last}")


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(
        main(
            args[0] if len(args) > 0 else "127.0.0.1:9292",
            args[1] if len(args) > 1 else "bulk",
            int(args[2]) if len(args) > 2 else 10_000,
        )
    )
