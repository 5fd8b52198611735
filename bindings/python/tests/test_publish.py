"""Publishing: publish, send (pipelined), publish_to_subject, partitioning, acks and publish errors."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

import liftbridge
from liftbridge import (
    Ack,
    AckPolicy,
    IncorrectOffsetError,
    MessageTooLargeError,
    NoSuchPartitionError,
    NoSuchStreamError,
    PartitionBy,
    StartPosition,
    StopPosition,
)


async def read_all(client, stream, **kw):
    return [m async for m in client.subscribe(stream, start=StartPosition.EARLIEST, stop=StopPosition.LATEST, **kw)]


async def test_publish_returns_ack(client, stream):
    ack = await client.publish(
        stream,
        b"hello",
        key=b"k1",
        headers={"trace": b"abc"},
        ack_policy=AckPolicy.ALL,
        correlation_id="my-corr-1",
    )
    assert isinstance(ack, Ack)
    assert ack.stream == stream
    assert ack.partition == 0
    assert ack.offset == 0
    assert ack.correlation_id == "my-corr-1"
    assert ack.ack_policy == AckPolicy.ALL
    assert isinstance(ack.commit_timestamp, datetime)
    assert ack.commit_timestamp_ns > 0
    assert (await client.publish(stream, bytearray(b"second"))).offset == 1
    assert (await client.publish(stream, memoryview(b"third"))).offset == 2
    msgs = await read_all(client, stream)
    assert [m.value for m in msgs] == [b"hello", b"second", b"third"]
    assert msgs[0].key == b"k1"
    assert msgs[0].headers["trace"] == b"abc"


async def test_ack_policy_none(client, stream):
    ack = await client.publish(stream, b"fire and forget", ack_policy=AckPolicy.NONE)
    assert ack.offset == -1
    assert ack.ack_policy == AckPolicy.NONE
    await client.publish(stream, b"acked")  # ordered after the first on the same stream
    assert [m.value for m in await read_all(client, stream)] == [b"fire and forget", b"acked"]


async def test_send_then_await_ack(client, stream):
    futs = [await client.send(stream, f"m{i}".encode()) for i in range(500)]
    assert all(isinstance(f, asyncio.Future) for f in futs)
    acks = await asyncio.gather(*futs)
    assert [a.offset for a in acks] == list(range(500))
    msgs = await read_all(client, stream)
    assert [m.value for m in msgs] == [f"m{i}".encode() for i in range(500)]


async def test_100_concurrent_publishes(client, stream):
    acks = await asyncio.gather(*(client.publish(stream, str(i).encode()) for i in range(100)))
    assert sorted(a.offset for a in acks) == list(range(100))
    values = {m.value for m in await read_all(client, stream)}
    assert values == {str(i).encode() for i in range(100)}


async def test_publish_to_subject(client, stream):
    ack = await client.publish_to_subject(stream, b"via subject", key=b"k", headers={"h": b"v"})
    assert ack is not None and ack.stream == stream and ack.offset == 0
    assert await client.publish_to_subject(stream, b"no ack", ack_policy=AckPolicy.NONE) is None
    msgs = await read_all(client, stream)
    assert msgs[0].value == b"via subject"
    assert msgs[0].subject == stream


async def test_partitioning(client, stream_name):
    await client.create_stream(stream_name, stream_name, partitions=4)
    await client.wait_for_stream(stream_name, 10)
    ack = await client.publish(stream_name, b"p3", partition=3)
    assert ack.partition == 3
    keyed = [await client.publish(stream_name, b"v", key=b"same-key", partition_by=PartitionBy.KEY) for _ in range(5)]
    assert len({a.partition for a in keyed}) == 1
    rr = [await client.publish(stream_name, b"v", partition_by=PartitionBy.ROUND_ROBIN) for _ in range(8)]
    assert {a.partition for a in rr} == {0, 1, 2, 3}
    seen = []

    def last_partition(stream, key, value, partitions):
        seen.append((stream, key, value, partitions))
        return partitions - 1

    ack = await client.publish(stream_name, b"custom", key=b"ck", partition_by=last_partition)
    assert ack.partition == 3
    assert seen == [(stream_name, b"ck", b"custom", 4)]
    with pytest.raises(NoSuchPartitionError):
        await client.publish(stream_name, b"v", partition=9)


async def test_default_partitioner_from_connect(server, stream_name):
    async with await liftbridge.Client.connect([server.addr], partition_by=PartitionBy.ROUND_ROBIN) as c:
        await c.create_stream(stream_name, stream_name, partitions=2)
        await c.wait_for_stream(stream_name, 10)
        parts = {(await c.publish(stream_name, b"x")).partition for _ in range(4)}
        assert parts == {0, 1}


async def test_expected_offset(client, stream_name):
    await client.create_stream(stream_name, stream_name, optimistic_concurrency_control=True)
    await client.wait_for_stream(stream_name, 10)
    assert (await client.publish(stream_name, b"a", expected_offset=0)).offset == 0
    with pytest.raises(IncorrectOffsetError) as e:
        await client.publish(stream_name, b"b", expected_offset=5)
    assert e.value.code == "incorrect_offset"
    fut = await client.send(stream_name, b"c", expected_offset=7)
    with pytest.raises(IncorrectOffsetError):
        await fut


async def test_publish_to_missing_stream(client, stream_name):
    with pytest.raises(NoSuchStreamError):
        await client.publish(stream_name, b"x")
    with pytest.raises(NoSuchStreamError):
        await client.send(stream_name, b"x")


async def test_message_too_large(server, stream):
    async with await liftbridge.Client.connect([server.addr], max_send_message_size=1024) as c:
        with pytest.raises(MessageTooLargeError) as e:
            await c.publish(stream, b"x" * 4096)
        assert e.value.code == "too_large"
        assert (await c.publish(stream, b"small")).offset == 0
