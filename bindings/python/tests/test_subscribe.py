"""Subscriptions: positions, reverse, merged partitions, a 100,000-message read, cancellation, release."""

from __future__ import annotations

import asyncio
import gc
import time
from datetime import datetime, timedelta, timezone

import pytest

from liftbridge import (
    Message,
    NoSuchPartitionError,
    NoSuchStreamError,
    StartPosition,
    StopPosition,
)

from conftest import wait_until


async def publish_n(client, stream, n, **kw):
    futs = [await client.send(stream, str(i).encode(), **kw) for i in range(n)]
    return await asyncio.gather(*futs)


async def test_message_fields(client, stream):
    before = datetime.now(timezone.utc)
    await client.publish(stream, b"v0", key=b"k0", headers={"a": b"1", "b": b"2"})
    sub = client.subscribe(stream, start=StartPosition.EARLIEST, stop=StopPosition.offset(0))
    msgs = [m async for m in sub]
    assert len(msgs) == 1
    m = msgs[0]
    assert isinstance(m, Message)
    assert (m.offset, m.key, m.value, m.partition, m.stream) == (0, b"k0", b"v0", 0, stream)
    assert m.subject == stream
    assert m.headers["a"] == b"1" and m.headers["b"] == b"2"
    assert isinstance(m.value, bytes)
    assert isinstance(m.timestamp, datetime) and m.timestamp.tzinfo is not None
    assert before - timedelta(seconds=5) <= m.timestamp <= datetime.now(timezone.utc) + timedelta(seconds=5)
    assert m.timestamp_ns // 1000 == int(m.timestamp.timestamp() * 1_000_000) or abs(
        m.timestamp_ns / 1e9 - m.timestamp.timestamp()
    ) < 1e-5
    with pytest.raises(AttributeError):
        m.value = b"changed"  # frozen
    assert "offset=0" in repr(m)


async def test_start_and_stop_positions(client, stream):
    await publish_n(client, stream, 10)

    async def values(**kw):
        return [int(m.value) async for m in client.subscribe(stream, **kw)]

    assert await values(start=StartPosition.EARLIEST, stop=StopPosition.LATEST) == list(range(10))
    assert await values(start=StartPosition.offset(4), stop=StopPosition.offset(6)) == [4, 5, 6]
    assert await values(start=StartPosition.LATEST, stop=StopPosition.LATEST) == [9]
    assert await values(start=StartPosition.time_delta(timedelta(minutes=5)), stop=StopPosition.offset(2)) == [0, 1, 2]
    assert await values(start=StartPosition.timestamp(datetime.now(timezone.utc) - timedelta(minutes=5)), stop=StopPosition.offset(0)) == [0]
    assert await values(start=StartPosition.EARLIEST, stop=StopPosition.timestamp(datetime.now(timezone.utc))) == list(range(10))
    assert await values(reverse=True, start=StartPosition.offset(5)) == [5, 4, 3, 2, 1, 0]


async def test_new_only_sees_later_messages(client, stream):
    await client.publish(stream, b"old")
    async with client.subscribe(stream) as sub:
        nxt = asyncio.ensure_future(sub.__anext__())
        # The subscription opens on the first fetch; publish until the new message arrives.
        async def published_and_seen():
            if nxt.done():
                return True
            await client.publish(stream, b"new")
            await asyncio.sleep(0.05)
            return nxt.done()
        await wait_until(published_and_seen, what="a new message")
        assert (await nxt).value == b"new"
    assert sub.closed


async def test_all_partitions(client, stream_name):
    await client.create_stream(stream_name, stream_name, partitions=3)
    await client.wait_for_stream(stream_name, 10)
    for p in range(3):
        for i in range(5):
            await client.publish(stream_name, f"{p}-{i}".encode(), partition=p)
    got = [m async for m in client.subscribe(stream_name, all_partitions=True, start=StartPosition.EARLIEST, stop=StopPosition.LATEST)]
    assert len(got) == 15
    for p in range(3):
        assert [m.value for m in got if m.partition == p] == [f"{p}-{i}".encode() for i in range(5)]
    with pytest.raises(ValueError):
        client.subscribe(stream_name, all_partitions=True, partition=1)


async def test_subscribe_errors(client, stream):
    with pytest.raises(NoSuchStreamError):
        async for _ in client.subscribe(stream + "-missing"):
            pass
    with pytest.raises(NoSuchPartitionError):
        async for _ in client.subscribe(stream, partition=3):
            pass


async def test_100k_messages_and_loop_not_starved(client, stream):
    n = 100_000
    value = b"x" * 64
    batch = 5000
    for start in range(0, n, batch):
        futs = [await client.send(stream, value) for _ in range(batch)]
        await asyncio.gather(*futs)
    ticks = 0
    stop = asyncio.Event()

    async def ticker():
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    t = asyncio.ensure_future(ticker())
    count = 0
    last = -1
    t0 = time.perf_counter()
    async for m in client.subscribe(stream, start=StartPosition.EARLIEST, stop=StopPosition.offset(n - 1)):
        assert m.offset == last + 1
        last = m.offset
        count += 1
    elapsed = time.perf_counter() - t0
    stop.set()
    await t
    assert count == n
    # The other task ran while the subscription was read at full speed (at least once per batch).
    assert ticks >= 20, ticks
    print(f"subscribe: {n} messages in {elapsed:.2f} s ({n / elapsed:,.0f} msg/s), ticker ran {ticks} times")


async def test_cancelling_the_task_releases_the_fetch(client, stream):
    sub = client.subscribe(stream)  # NEW_ONLY: nothing to read yet
    task = asyncio.ensure_future(sub.__anext__())
    await asyncio.sleep(0.2)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The aborted fetch released the subscription: the next fetch proceeds and sees a new message.
    nxt = asyncio.ensure_future(sub.__anext__())

    async def seen():
        if not nxt.done():
            await client.publish(stream, b"after-cancel")
            await asyncio.sleep(0.05)
        return nxt.done()

    await wait_until(seen, what="the message after cancelling")
    assert (await nxt).value == b"after-cancel"
    sub.close()
    assert sub.closed
    with pytest.raises(StopAsyncIteration):
        await sub.__anext__()


async def test_cancelling_a_consumer_task(client, stream):
    got = []

    async def consume():
        async for m in client.subscribe(stream, start=StartPosition.EARLIEST):
            got.append(m.value)

    task = asyncio.ensure_future(consume())
    await client.publish(stream, b"one")
    await wait_until(lambda: got == [b"one"], what="the consumer to read")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The client keeps working.
    assert (await client.publish(stream, b"two")).offset == 1


async def test_breaking_the_loop_releases_the_subscription(client, stream):
    await publish_n(client, stream, 3)
    import weakref

    refs = []
    async for m in client.subscribe(stream, start=StartPosition.EARLIEST):
        break
    gc.collect()
    sub = client.subscribe(stream, start=StartPosition.EARLIEST)
    refs.append(weakref.ref(sub))
    async for m in sub:
        assert m.offset == 0
        break
    del sub
    gc.collect()
    assert refs[0]() is None


async def test_close_ends_a_waiting_iteration(client, stream):
    sub = client.subscribe(stream)
    nxt = asyncio.ensure_future(sub.__anext__())
    await asyncio.sleep(0.2)
    sub.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(nxt, 5)
