"""Create a stream with options (3 partitions, 1 h retention), then show its metadata.

    python examples/python/create_stream.py 127.0.0.1:9292 orders
"""

import asyncio
import sys
from datetime import timedelta

import liftbridge


async def main(addr: str, stream: str) -> None:
    async with await liftbridge.Client.connect([addr]) as client:
        try:
            await client.create_stream(
                stream, stream, partitions=3, retention_max_age=timedelta(hours=1), retention_max_messages=1_000_000
            )
            print(f"created stream {stream!r}")
        except liftbridge.StreamExistsError:
            print(f"stream {stream!r} exists already")
        info = await client.wait_for_stream(stream, timedelta(seconds=10))
        for pid, p in sorted(info.partitions.items()):
            meta = await client.fetch_partition_metadata(stream, pid)
            print(f"partition {pid}: leader {p.leader}, newest offset {meta.newest_offset}")


if __name__ == "__main__":
    asyncio.run(main(*(sys.argv[1:3] + ["127.0.0.1:9292", "orders"][len(sys.argv[1:3]):])))
