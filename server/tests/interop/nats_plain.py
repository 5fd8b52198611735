"""Interop: plain NATS messages from nats-py are recorded by a stream; envelope acks reach a nats-py inbox.

Usage: python nats_plain.py NATS_URL SUBJECT COUNT
"""
import asyncio
import sys

import nats


async def main(url: str, subject: str, count: int) -> None:
    nc = await nats.connect(url)
    for i in range(count):
        await nc.publish(subject, f"py-{i}".encode(), reply="py.reply")
    await nc.flush()
    await nc.close()
    print("nats-py published", count)


asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
