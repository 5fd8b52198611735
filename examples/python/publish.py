"""Publish a few messages one by one, each awaited until the server acknowledges it.

    python examples/python/publish.py 127.0.0.1:9292 orders
"""

import asyncio
import sys

import liftbridge
from liftbridge import AckPolicy, PartitionBy


async def main(addr: str, stream: str) -> None:
    async with await liftbridge.Client.connect([addr]) as client:
        await client.create_stream(stream, stream, if_not_exists=True)
        await client.wait_for_stream(stream, 10)
        for i in range(5):
            ack = await client.publish(
                stream,
                f"order {i}".encode(),
                key=f"customer-{i % 2}".encode(),
                headers={"source": b"example"},
                ack_policy=AckPolicy.ALL,
                partition_by=PartitionBy.KEY,
            )
            print(f"stored at {ack.stream}/{ack.partition} offset {ack.offset}")


if __name__ == "__main__":
    asyncio.run(main(*(sys.argv[1:3] + ["127.0.0.1:9292", "orders"][len(sys.argv[1:3]):])))
