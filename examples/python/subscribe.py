"""Read a stream from the beginning up to its newest message, then stop.

    python examples/python/subscribe.py 127.0.0.1:9292 orders
"""

import asyncio
import sys

import liftbridge
from liftbridge import StartPosition, StopPosition


async def main(addr: str, stream: str) -> None:
    async with await liftbridge.Client.connect([addr]) as client:
        count = 0
        async for msg in client.subscribe(
            stream, all_partitions=True, start=StartPosition.EARLIEST, stop=StopPosition.LATEST
        ):
            print(f"{msg.partition}/{msg.offset} {msg.timestamp:%H:%M:%S} key={msg.key!r} value={msg.value!r}")
            count += 1
        print(f"read {count} messages")


if __name__ == "__main__":
    asyncio.run(main(*(sys.argv[1:3] + ["127.0.0.1:9292", "orders"][len(sys.argv[1:3]):])))
