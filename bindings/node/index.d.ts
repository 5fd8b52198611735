// Types of the `liftbridge` package (the public API in index.js). The native addon's own generated types are
// in native.d.ts; this file describes the JavaScript layer users import.

/// <reference types="node" />

/** When the server acknowledges a message. */
export type AckPolicy = 'leader' | 'all' | 'none'

/** How a message's partition is chosen when no `partition` is given. */
export type PartitionBy = 'key' | 'roundRobin'

/** Stable error codes, the same as the Rust client's `ErrorKind::code()`. */
export type ErrorCode =
  | 'stream_exists'
  | 'no_such_stream'
  | 'no_such_partition'
  | 'stream_deleted'
  | 'not_leader'
  | 'unavailable'
  | 'disconnected'
  | 'timeout'
  | 'ack_timeout'
  | 'incorrect_offset'
  | 'too_large'
  | 'readonly'
  | 'end_of_readonly_partition'
  | 'paused'
  | 'permission_denied'
  | 'encryption'
  | 'invalid_argument'
  | 'unimplemented'
  | 'internal'
  | 'closed'
  | 'config'
  | 'tls'
  | 'protocol'
  | 'cancelled'
  | 'unknown'

/** Bytes accepted wherever a payload, key or header value is given. */
export type Bytes = Buffer | Uint8Array | string

export interface TlsOptions {
  /** CA certificates (PEM) to trust. */
  ca?: Bytes
  /** A file of CA certificates (PEM). */
  caFile?: string
  /** Client certificate chain (PEM), for mutual TLS; needs `key`. */
  cert?: Bytes
  /** Client private key (PEM). */
  key?: Bytes
  /** Client certificate file (PEM); needs `keyFile`. */
  certFile?: string
  /** Client private key file (PEM). */
  keyFile?: string
  /** Also trust the operating system's roots. */
  nativeRoots?: boolean
  /** Name to check the server certificate against. */
  serverName?: string
}

export interface ConnectOptions {
  /** Default 5000. */
  connectTimeoutMs?: number
  /** Deadline of each request; default 10000. */
  requestTimeoutMs?: number
  /** How long a publish waits for its ack; default 5000. */
  ackTimeoutMs?: number
  /** Messages awaiting their ack at most (backpressure for send()); default 1024. */
  maxInFlight?: number
  /** Periodic metadata refresh; 0 turns it off; default 30000. */
  metadataRefreshIntervalMs?: number
  /** How long a broken subscription tries to resubscribe; default 30000. */
  resubscribeWindowMs?: number
  /** Messages buffered ahead of a subscriber; default 1024. */
  prefetch?: number
  /** How long close() waits for in-flight acks; default 5000. */
  drainGraceMs?: number
  /** HTTP/2 keepalive interval (0: off); default 30000. */
  keepaliveIntervalMs?: number
  /** Keepalive ping timeout; default 10000. */
  keepaliveTimeoutMs?: number
  /** Retries of safe operations: 10 attempts, 50 ms base, 2 s cap by default. */
  retry?: { maxAttempts?: number; baseDelayMs?: number; maxDelayMs?: number }
  /** Largest message received (default 16 MiB). */
  maxRecvMessageSize?: number
  /** Largest message sent (default 4 MiB). */
  maxSendMessageSize?: number
  /** Default partitioning of published messages (default: partition 0). */
  partitionBy?: PartitionBy
  /** TLS; `true` for TLS with the system's roots. */
  tls?: boolean | TlsOptions
}

export interface StreamOptions {
  /** Fail-free creation: resolve with false when the stream exists. */
  ifNotExists?: boolean
  group?: string
  /** Replicas per partition; -1 for every server. */
  replicationFactor?: number
  /** Default 1. */
  partitions?: number
  retentionMaxBytes?: number
  retentionMaxMessages?: number
  retentionMaxAgeMs?: number
  cleanerIntervalMs?: number
  segmentMaxBytes?: number
  segmentMaxAgeMs?: number
  compactEnabled?: boolean
  compactMaxGoroutines?: number
  autoPauseTimeMs?: number
  autoPauseDisableIfSubscribers?: boolean
  minIsr?: number
  optimisticConcurrencyControl?: boolean
  encryption?: boolean
}

export interface PublishOptions {
  key?: Bytes
  headers?: Record<string, Bytes>
  ackPolicy?: AckPolicy
  /** An explicit partition (default: the client's partitioning, partition 0 unless set). */
  partition?: number
  partitionBy?: PartitionBy
  /** Optimistic concurrency control: the offset the message must get (-1: no check). */
  expectedOffset?: bigint | number
  correlationId?: string
  /** A NATS subject that also receives the ack. */
  ackInbox?: string
}

export type PublishToSubjectOptions = Pick<PublishOptions, 'key' | 'headers' | 'ackPolicy' | 'correlationId' | 'ackInbox'>

/** A point in time: a Date, or nanoseconds since the epoch. */
export type Time = Date | bigint

export type StartPosition =
  | 'newOnly'
  | 'earliest'
  | 'latest'
  | { offset: bigint | number }
  | { timestamp: Time }
  /** Milliseconds back from now. */
  | { timeDelta: number }

export type StopPosition = 'latest' | { offset: bigint | number } | { timestamp: Time }

export interface SubscribeOptions {
  /** Default 0. */
  partition?: number
  /** Every partition, merged (order kept per partition). */
  allPartitions?: boolean
  /** Default 'newOnly'. */
  start?: StartPosition
  /** Reaching it ends the iteration. */
  stop?: StopPosition
  /** Newest to oldest. */
  reverse?: boolean
  readIsrReplica?: boolean
  /** Resume the partition if paused. */
  resume?: boolean
  prefetch?: number
  /** Default true. */
  autoResubscribe?: boolean
  /** Aborting it releases the subscription; the pending iteration rejects with the signal's reason. */
  signal?: AbortSignal
}

export interface Ack {
  stream: string
  partition: number | undefined | null
  /** -1 with ackPolicy 'none'. */
  offset: bigint
  partitionSubject: string
  msgSubject: string
  ackInbox: string
  correlationId: string
  ackPolicy: AckPolicy
  /** ns since the epoch. */
  receptionTimestamp: bigint
  /** ns since the epoch. */
  commitTimestamp: bigint
}

export interface EventTimes {
  first?: bigint | null
  latest?: bigint | null
}

export interface PartitionInfo {
  id: number
  leader: string
  replicas: string[]
  isr: string[]
  highWatermark: bigint
  newestOffset: bigint
  paused: boolean
  readonly: boolean
  messagesReceived: EventTimes
  pausedAt: EventTimes
  readonlyAt: EventTimes
}

export interface StreamInfo {
  name: string
  subject: string
  /** ns since the epoch. */
  creationTime: bigint
  partitions: Record<string, PartitionInfo>
}

export interface BrokerInfo {
  id: string
  host: string
  port: number
  partitionCount: number
  leaderCount: number
}

export interface Metadata {
  brokers: BrokerInfo[]
  streams: Record<string, StreamInfo>
}

/** A message read from a stream. Buffers are views of the batch the message arrived in. */
export declare class Message {
  private constructor()
  readonly offset: bigint
  /** ns since the epoch. */
  readonly timestamp: bigint
  readonly partition: number
  readonly stream: string
  /** Empty when the message has no key. */
  readonly key: Buffer
  readonly value: Buffer
  readonly headers: Readonly<Record<string, Buffer>>
  readonly subject: string
  readonly replySubject: string
  readonly correlationId: string
  /** `timestamp` as a Date. */
  readonly time: Date
  toJSON(): Record<string, unknown>
}

/** An open subscription: iterate it with `for await`; `break` releases it. */
export declare class Subscription implements AsyncIterableIterator<Message> {
  private constructor()
  /** Resolves once the server subscription is established. */
  ready(): Promise<void>
  next(): Promise<IteratorResult<Message, undefined>>
  return(): Promise<IteratorResult<Message, undefined>>
  [Symbol.asyncIterator](): this
  /** Ends the subscription now (idempotent). */
  close(): void
  [Symbol.asyncDispose](): Promise<void>
}

/** A client event; fields beyond `type` are set as the event type has them. */
export interface ClientEvent {
  type:
    | 'connected'
    | 'disconnected'
    | 'publishStreamBroken'
    | 'metadataRefreshed'
    | 'leaderChanged'
    | 'resubscribing'
    | 'resubscribed'
    | 'closed'
    | 'unknown'
  /** host:port (connected, disconnected, publishStreamBroken). */
  addr?: string
  /** Why (disconnected, resubscribing). */
  error?: LiftbridgeError
  /** Publishes that were awaiting their ack (publishStreamBroken). */
  inFlight?: number
  /** Servers and streams known (metadataRefreshed). */
  brokers?: number
  streams?: number
  /** leaderChanged, resubscribing, resubscribed. */
  stream?: string
  partition?: number
  oldLeader?: string
  newLeader?: string
  /** The offset a resubscription resumed at. */
  offset?: bigint
}

/** The client's events as an async iterable; ends after `closed`, on `break`/`close()` or when its signal aborts. */
export declare class EventStream implements AsyncIterableIterator<ClientEvent> {
  private constructor()
  next(): Promise<IteratorResult<ClientEvent, undefined>>
  return(): Promise<IteratorResult<ClientEvent, undefined>>
  [Symbol.asyncIterator](): this
  close(): void
}

export declare class Client {
  private constructor()
  /** Connects through `seeds` ("host:port"); resolves once one answered. */
  static connect(seeds: string | string[], options?: ConnectOptions): Promise<Client>
  readonly closed: boolean
  close(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
  /** Resolves with true, or false when `ifNotExists` found the stream existing. */
  createStream(subject: string, name: string, options?: StreamOptions): Promise<boolean>
  deleteStream(name: string): Promise<void>
  pauseStream(name: string, options?: { partitions?: number[]; resumeAll?: boolean }): Promise<void>
  setStreamReadonly(name: string, options?: { partitions?: number[]; readonly?: boolean }): Promise<void>
  fetchMetadata(): Promise<Metadata>
  fetchStreamMetadata(name: string): Promise<StreamInfo>
  fetchPartitionMetadata(stream: string, partition?: number): Promise<PartitionInfo>
  /** Waits until the stream exists and every partition has a leader (default 10 s); rejects with RequestTimeoutError. */
  waitForStream(name: string, timeoutMs?: number): Promise<StreamInfo>
  /** Client events from now on. */
  events(options?: { signal?: AbortSignal }): EventStream
  /** Publishes and waits for the ack. */
  publish(stream: string, value: Bytes, options?: PublishOptions): Promise<Ack>
  /** Pipelined publish: queued in call order, the Promise resolves with the ack. */
  send(stream: string, value: Bytes, options?: PublishOptions): Promise<Ack>
  /** Resolves with the first ack, or null with ackPolicy 'none'. */
  publishToSubject(subject: string, value: Bytes, options?: PublishToSubjectOptions): Promise<Ack | null>
  subscribe(stream: string, options?: SubscribeOptions): Subscription
}

export declare class LiftbridgeError extends Error {
  constructor(message: string, code?: ErrorCode, options?: ErrorOptions)
  readonly code: ErrorCode
  /** Whether trying again later can succeed. */
  readonly retryable: boolean
}

type CodedError<C extends ErrorCode> = {
  new (message: string, options?: ErrorOptions): LiftbridgeError & { readonly code: C }
  readonly code: C
}

export declare const StreamExistsError: CodedError<'stream_exists'>
export declare const NoSuchStreamError: CodedError<'no_such_stream'>
export declare const NoSuchPartitionError: CodedError<'no_such_partition'>
export declare const StreamDeletedError: CodedError<'stream_deleted'>
export declare const NotLeaderError: CodedError<'not_leader'>
export declare const UnavailableError: CodedError<'unavailable'>
export declare const DisconnectedError: CodedError<'disconnected'>
export declare const RequestTimeoutError: CodedError<'timeout'>
export declare const AckTimeoutError: CodedError<'ack_timeout'>
export declare const IncorrectOffsetError: CodedError<'incorrect_offset'>
export declare const MessageTooLargeError: CodedError<'too_large'>
export declare const ReadonlyPartitionError: CodedError<'readonly'>
export declare const EndOfReadonlyPartitionError: CodedError<'end_of_readonly_partition'>
export declare const PartitionPausedError: CodedError<'paused'>
export declare const PermissionDeniedError: CodedError<'permission_denied'>
export declare const EncryptionError: CodedError<'encryption'>
export declare const InvalidArgumentError: CodedError<'invalid_argument'>
export declare const UnimplementedError: CodedError<'unimplemented'>
export declare const InternalServerError: CodedError<'internal'>
export declare const ClientClosedError: CodedError<'closed'>
export declare const ConfigError: CodedError<'config'>
export declare const TlsError: CodedError<'tls'>
export declare const ProtocolError: CodedError<'protocol'>
export declare const RequestCancelledError: CodedError<'cancelled'>
export declare const UnknownError: CodedError<'unknown'>

/** Error code → class. */
export declare const ERROR_CLASSES: Readonly<Record<ErrorCode, CodedError<ErrorCode>>>
