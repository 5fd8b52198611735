"""The exception hierarchy, error chaining, and bad input refused before any network call."""

from __future__ import annotations

import asyncio
import socket
from datetime import timedelta

import pytest

import liftbridge
from liftbridge import (
    AckPolicy,
    ClientClosedError,
    LiftbridgeError,
    StartPosition,
    StopPosition,
    TlsError,
    TlsOptions,
    UnavailableError,
)

KINDS = {
    "StreamExistsError": "stream_exists",
    "NoSuchStreamError": "no_such_stream",
    "NoSuchPartitionError": "no_such_partition",
    "StreamDeletedError": "stream_deleted",
    "NotLeaderError": "not_leader",
    "UnavailableError": "unavailable",
    "DisconnectedError": "disconnected",
    "RequestTimeoutError": "timeout",
    "AckTimeoutError": "ack_timeout",
    "IncorrectOffsetError": "incorrect_offset",
    "MessageTooLargeError": "too_large",
    "ReadonlyPartitionError": "readonly",
    "EndOfReadonlyPartitionError": "end_of_readonly_partition",
    "PartitionPausedError": "paused",
    "PermissionDeniedError": "permission_denied",
    "EncryptionError": "encryption",
    "InvalidArgumentError": "invalid_argument",
    "UnimplementedError": "unimplemented",
    "InternalServerError": "internal",
    "ClientClosedError": "closed",
    "ConfigError": "config",
    "TlsError": "tls",
    "ProtocolError": "protocol",
    "RequestCancelledError": "cancelled",
}


def test_every_error_kind_has_a_class_with_its_code():
    assert LiftbridgeError.code == "unknown"
    assert issubclass(LiftbridgeError, Exception)
    for name, code in KINDS.items():
        cls = getattr(liftbridge, name)
        assert issubclass(cls, LiftbridgeError), name
        assert cls.code == code, name
        assert cls.__module__ == "liftbridge"
        assert name in liftbridge.__all__
    assert liftbridge.UnavailableError.retryable and liftbridge.AckTimeoutError.retryable
    assert not liftbridge.StreamExistsError.retryable


def dead_port() -> tuple[socket.socket, str]:
    """A bound but not listening socket: connecting to it is refused, and no one else can take the port."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s, f"127.0.0.1:{s.getsockname()[1]}"


async def test_unreachable_server_is_unavailable_with_a_cause():
    s, addr = dead_port()
    try:
        with pytest.raises(UnavailableError) as e:
            await liftbridge.Client.connect([addr], connect_timeout=timedelta(milliseconds=300))
        err = e.value
        assert err.code == "unavailable"
        assert err.retryable
        assert addr.split(":")[1] in str(err) or "connect" in str(err).lower()
    finally:
        s.close()


async def test_closed_client_raises(server, stream_name):
    client = await liftbridge.Client.connect([server.addr])
    await client.close()
    assert client.closed
    with pytest.raises(ClientClosedError) as e:
        await client.publish(stream_name, b"x")
    assert e.value.code == "closed"
    await client.close()  # idempotent


async def test_bad_tls_material_raises_tls_error(server):
    with pytest.raises(TlsError) as e:
        await liftbridge.Client.connect([server.addr], tls=TlsOptions(ca_pem="not a certificate"), connect_timeout=1)
    assert e.value.code == "tls"


async def test_error_is_chained_to_its_cause(client, stream_name):
    with pytest.raises(liftbridge.NoSuchStreamError) as e:
        await client.delete_stream(stream_name)
    # The gRPC status is the cause.
    assert e.value.__cause__ is not None
    assert "NotFound" in str(e.value.__cause__) or "not found" in str(e.value.__cause__).lower()
    assert e.value.grpc_code == "NotFound"


async def test_wrong_types_fail_before_the_network(client, stream):
    calls = [
        (TypeError, "bytes", lambda: client.publish(stream, "text")),
        (TypeError, "key", lambda: client.publish(stream, b"v", key="k")),
        (TypeError, "header", lambda: client.publish(stream, b"v", headers={"h": "text"})),
        (TypeError, "headers", lambda: client.publish(stream, b"v", headers=[("h", b"v")])),
        (TypeError, "header names", lambda: client.publish(stream, b"v", headers={1: b"v"})),
        (ValueError, "negative", lambda: client.publish(stream, b"v", partition=-1)),
        (TypeError, "partition", lambda: client.publish(stream, b"v", partition="0")),
        (TypeError, "partition", lambda: client.publish(stream, b"v", partition=True)),
        (TypeError, "ack_policy", lambda: client.publish(stream, b"v", ack_policy="all")),
        (TypeError, "ack_policy", lambda: client.publish(stream, b"v", ack_policy=1)),
        (TypeError, "partition_by", lambda: client.publish(stream, b"v", partition_by="key")),
        (ValueError, "either", lambda: client.publish(stream, b"v", partition=1, partition_by=liftbridge.PartitionBy.KEY)),
        (ValueError, "expected_offset", lambda: client.publish(stream, b"v", expected_offset=-5)),
        (TypeError, "stream", lambda: client.publish(b"name", b"v")),
        (ValueError, "empty", lambda: client.publish("", b"v")),
        (TypeError, "bytes", lambda: client.send(stream, 42)),
        (TypeError, "bytes", lambda: client.publish_to_subject(stream, "text")),
        (ValueError, "partitions", lambda: client.create_stream("s", "s", partitions=0)),
        (TypeError, "partitions", lambda: client.create_stream("s", "s", partitions=1.5)),
        (TypeError, "timedelta", lambda: client.create_stream("s", "s", retention_max_age="1h")),
        (ValueError, "negative", lambda: client.create_stream("s", "s", retention_max_age=timedelta(seconds=-1))),
        (ValueError, "non-negative", lambda: client.create_stream("s", "s", retention_max_age=-3.0)),
        (TypeError, "bool", lambda: client.create_stream("s", "s", compact_enabled=1)),
        (ValueError, "replication_factor", lambda: client.create_stream("s", "s", replication_factor=0)),
        (ValueError, "negative", lambda: client.fetch_partition_metadata(stream, -1)),
        (ValueError, "negative", lambda: client.pause_stream(stream, [0, -2])),
        (TypeError, "partitions", lambda: client.set_stream_readonly(stream, "0")),
        (TypeError, "StartPosition", lambda: client.subscribe(stream, start="earliest")),
        (TypeError, "StopPosition", lambda: client.subscribe(stream, stop=5)),
        (ValueError, "negative", lambda: client.subscribe(stream, partition=-1)),
        (ValueError, "negative", lambda: StartPosition.offset(-1)),
        (ValueError, "negative", lambda: StopPosition.offset(-1)),
        (TypeError, "int", lambda: StartPosition.offset("3")),
        (TypeError, "datetime", lambda: StartPosition.timestamp(12345)),
        (TypeError, "timedelta", lambda: StartPosition.time_delta("1m")),
        (TypeError, "seeds", lambda: liftbridge.Client.connect("127.0.0.1:9292")),
        (ValueError, "seeds", lambda: liftbridge.Client.connect([])),
        (TypeError, "tls", lambda: liftbridge.Client.connect(["127.0.0.1:1"], tls="yes")),
        (ValueError, "max_in_flight", lambda: liftbridge.Client.connect(["127.0.0.1:1"], max_in_flight=0)),
        (ValueError, "both", lambda: TlsOptions(client_cert_pem="x")),
    ]
    for exc, words, call in calls:
        with pytest.raises(exc) as e:
            call()
        assert words.lower() in str(e.value).lower(), (words, str(e.value))
    with pytest.raises(TypeError):
        liftbridge.AckPolicy("ALL")  # not an open enum
    # Nothing above reached the server: the stream is still empty.
    assert (await client.fetch_partition_metadata(stream, 0)).newest_offset == -1


def test_network_calls_need_a_running_loop():
    with pytest.raises(RuntimeError):
        liftbridge.Client.connect(["127.0.0.1:9292"])


async def test_ack_timeout(server, stream):
    async with await liftbridge.Client.connect([server.addr], ack_timeout=timedelta(microseconds=1)) as c:
        with pytest.raises(liftbridge.AckTimeoutError) as e:
            for _ in range(50):  # an ack may still beat a 1 µs deadline now and then
                await c.publish(stream, b"x")
        assert e.value.code == "ack_timeout" and e.value.retryable


async def test_stream_deleted_while_subscribed(client, stream):
    await client.publish(stream, b"x")
    sub = client.subscribe(stream, start=StartPosition.EARLIEST)
    assert (await sub.__anext__()).value == b"x"
    await client.delete_stream(stream)

    async def drain():
        async for _ in sub:
            pass

    with pytest.raises(liftbridge.StreamDeletedError) as e:
        await asyncio.wait_for(drain(), 15)
    assert e.value.code == "stream_deleted"
