"""Stream administration and metadata against a real server."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

import liftbridge
from liftbridge import (
    AckPolicy,
    NoSuchPartitionError,
    NoSuchStreamError,
    PartitionPausedError,
    ReadonlyPartitionError,
    RequestTimeoutError,
    StartPosition,
    StopPosition,
    StreamExistsError,
)


async def test_create_stream_with_options_and_metadata(client, stream_name, server):
    created = await client.create_stream(
        stream_name + ".subj",
        stream_name,
        partitions=3,
        retention_max_age=timedelta(hours=1),
        retention_max_messages=1000,
        retention_max_bytes=1 << 20,
        segment_max_bytes=1 << 20,
        segment_max_age=timedelta(minutes=5),
        cleaner_interval=30,
        compact_enabled=False,
        auto_pause_time=timedelta(0),
        min_isr=1,
        replication_factor=1,
        optimistic_concurrency_control=False,
    )
    assert created is True
    info = await client.wait_for_stream(stream_name, timedelta(seconds=10))
    assert info.name == stream_name
    assert info.subject == stream_name + ".subj"
    assert sorted(info.partitions) == [0, 1, 2]
    assert info.is_ready
    assert isinstance(info.creation_time, datetime)
    assert info.creation_time.tzinfo is not None
    assert abs(info.creation_time - datetime.now(timezone.utc)) < timedelta(minutes=5)

    md = await client.fetch_metadata()
    assert md.has_stream(stream_name)
    assert md.partition_count(stream_name) == 3
    assert md.stream(stream_name).name == stream_name
    assert stream_name in md.streams
    assert len(md.brokers) == 1
    broker = md.brokers[0]
    assert broker.addr == server.addr
    assert md.leader(stream_name, 0).id == broker.id
    assert client.metadata().has_stream(stream_name)
    assert await client.partition_count(stream_name) == 3

    sinfo = await client.fetch_stream_metadata(stream_name)
    assert sinfo.partition(2).id == 2

    await client.publish(stream_name, b"x", partition=1)
    p = await client.fetch_partition_metadata(stream_name, 1)
    assert p.id == 1
    assert p.newest_offset == 0
    assert p.high_watermark == 0
    assert p.leader == broker.id
    assert p.replicas == [broker.id]
    assert p.isr == [broker.id]
    assert not p.paused and not p.readonly
    assert p.messages_received.latest is not None
    assert "PartitionInfo" in repr(p)


async def test_create_existing_stream_raises_and_if_not_exists(client, stream):
    with pytest.raises(StreamExistsError) as e:
        await client.create_stream(stream, stream)
    assert e.value.code == "stream_exists"
    assert e.value.retryable is False
    assert e.value.grpc_code == "AlreadyExists"
    assert await client.create_stream(stream, stream, if_not_exists=True) is False


async def test_delete_stream(client, stream):
    await client.delete_stream(stream)
    with pytest.raises(NoSuchStreamError):
        await client.fetch_stream_metadata(stream)
    with pytest.raises(NoSuchStreamError) as e:
        await client.delete_stream(stream)
    assert e.value.code == "no_such_stream"


async def test_partition_metadata_of_missing_partition(client, stream):
    with pytest.raises(NoSuchPartitionError) as e:
        await client.fetch_partition_metadata(stream, 7)
    assert e.value.code == "no_such_partition"


async def test_pause_stream(client, stream):
    await client.publish(stream, b"before")
    await client.pause_stream(stream, [0], resume_all=False)
    p = await client.fetch_partition_metadata(stream, 0)
    assert p.paused
    with pytest.raises(PartitionPausedError) as e:
        async for _ in client.subscribe(stream, start=StartPosition.EARLIEST):
            pass
    assert e.value.code == "paused"
    # resume=True resumes it.
    got = [m.value async for m in client.subscribe(stream, start=StartPosition.EARLIEST, stop=StopPosition.LATEST, resume=True)]
    assert got == [b"before"]
    # Publishing resumes too.
    await client.pause_stream(stream)
    ack = await client.publish(stream, b"after")
    assert ack.offset == 1
    assert not (await client.fetch_partition_metadata(stream, 0)).paused


async def test_readonly_stream(client, stream):
    await client.publish(stream, b"one")
    await client.set_stream_readonly(stream)
    assert (await client.fetch_partition_metadata(stream, 0)).readonly
    with pytest.raises(ReadonlyPartitionError) as e:
        await client.publish(stream, b"two")
    assert e.value.code == "readonly"
    with pytest.raises(liftbridge.EndOfReadonlyPartitionError) as e2:
        async for m in client.subscribe(stream, start=StartPosition.EARLIEST):
            assert m.value == b"one"
    assert e2.value.code == "end_of_readonly_partition"
    await client.set_stream_readonly(stream, [0], readonly=False)
    ack = await client.publish(stream, b"two", ack_policy=AckPolicy.ALL)
    assert ack.offset == 1


async def test_wait_for_missing_stream_times_out(client, stream_name):
    with pytest.raises(RequestTimeoutError) as e:
        await client.wait_for_stream(stream_name, 0.3)
    assert e.value.code == "timeout"
    assert e.value.retryable is True


async def test_events_and_leader_of(server, stream_name):
    async with await liftbridge.Client.connect([server.addr]) as c:
        events = c.events()
        await c.create_stream(stream_name, stream_name)
        await c.wait_for_stream(stream_name, 10)
        leader = await c.leader_of(stream_name, 0)
        assert leader.addr == server.addr
        await c.fetch_metadata()  # refreshes the cache: a metadata_refreshed event
        seen = []
        async for e in events:
            seen.append(e.kind)
            if e.kind == "metadata_refreshed":
                brokers, streams = e.counts
                assert brokers == 1 and streams >= 1
                assert e.addr is None and e.stream is None
                break
        assert "metadata_refreshed" in seen
        closed_events = c.events()
    async def until_closed():
        async for e in closed_events:
            if e.kind == "closed":
                return True
        return False

    assert await asyncio.wait_for(until_closed(), 10)
