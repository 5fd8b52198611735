"""asyncio-native client for Liftbridge: durable, replicated message streams on NATS.

The work is done by the Rust client (``liftbridge`` crate) in the private module ``liftbridge._native``;
this package re-exports it::

    import asyncio
    import liftbridge

    async def main():
        async with await liftbridge.Client.connect(["127.0.0.1:9292"]) as client:
            await client.create_stream("orders", "orders", if_not_exists=True)
            ack = await client.publish("orders", b"hello", key=b"user-1")
            async for msg in client.subscribe("orders", start=liftbridge.StartPosition.EARLIEST):
                print(msg.offset, msg.value)
                break

    asyncio.run(main())

Notes: the client runs on a tokio runtime with its own threads, started on first use; do not ``fork()`` after
using it. Every method that talks to the server must be called from a coroutine (it needs the running loop).
"""

from ._native import (
    Ack,
    AckPolicy,
    AckTimeoutError,
    BrokerInfo,
    Client,
    ClientClosedError,
    ConfigError,
    DisconnectedError,
    EncryptionError,
    EndOfReadonlyPartitionError,
    Event,
    Events,
    EventTimestamps,
    IncorrectOffsetError,
    InternalServerError,
    InvalidArgumentError,
    LiftbridgeError,
    Message,
    MessageTooLargeError,
    Metadata,
    NoSuchPartitionError,
    NoSuchStreamError,
    NotLeaderError,
    PartitionBy,
    PartitionInfo,
    PartitionPausedError,
    PermissionDeniedError,
    ProtocolError,
    ReadonlyPartitionError,
    RequestCancelledError,
    RequestTimeoutError,
    StartPosition,
    StopPosition,
    StreamDeletedError,
    StreamExistsError,
    StreamInfo,
    Subscription,
    TlsError,
    TlsOptions,
    UnavailableError,
    UnimplementedError,
)

__all__ = [
    "Ack",
    "AckPolicy",
    "AckTimeoutError",
    "BrokerInfo",
    "Client",
    "ClientClosedError",
    "ConfigError",
    "DisconnectedError",
    "EncryptionError",
    "EndOfReadonlyPartitionError",
    "Event",
    "Events",
    "EventTimestamps",
    "IncorrectOffsetError",
    "InternalServerError",
    "InvalidArgumentError",
    "LiftbridgeError",
    "Message",
    "MessageTooLargeError",
    "Metadata",
    "NoSuchPartitionError",
    "NoSuchStreamError",
    "NotLeaderError",
    "PartitionBy",
    "PartitionInfo",
    "PartitionPausedError",
    "PermissionDeniedError",
    "ProtocolError",
    "ReadonlyPartitionError",
    "RequestCancelledError",
    "RequestTimeoutError",
    "StartPosition",
    "StopPosition",
    "StreamDeletedError",
    "StreamExistsError",
    "StreamInfo",
    "Subscription",
    "TlsError",
    "TlsOptions",
    "UnavailableError",
    "UnimplementedError",
]
