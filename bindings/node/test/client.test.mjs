// Every API call of the Node package against a real liftbridge server started by the test.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'

import {
  Client,
  LiftbridgeError,
  StreamExistsError,
  NoSuchStreamError,
  NoSuchPartitionError,
  IncorrectOffsetError,
  ReadonlyPartitionError,
  EndOfReadonlyPartitionError,
  ClientClosedError,
  UnavailableError,
  InvalidArgumentError,
  ConfigError,
  RequestTimeoutError,
  PartitionPausedError,
  ERROR_CLASSES,
} from '../index.js'
import { startServer, freePort, uniqueName } from './server.mjs'

let server
let client

before(async () => {
  server = await startServer()
  client = await Client.connect([server.addr], { requestTimeoutMs: 10_000 })
})

after(async () => {
  await client?.close()
  await server?.stop()
})

/** Reads until `n` messages arrived (or the subscription ended). */
async function take(sub, n) {
  const out = []
  if (n === 0) return out
  for await (const m of sub) {
    out.push(m)
    if (out.length >= n) break
  }
  return out
}

async function newStream(options = {}) {
  const name = uniqueName()
  assert.equal(await client.createStream(name, name, options), true)
  return name
}

test('connect: resolves with a Client; metadata lists the server', async () => {
  assert.ok(client instanceof Client)
  assert.equal(client.closed, false)
  const md = await client.fetchMetadata()
  assert.equal(md.brokers.length, 1)
  assert.equal(`${md.brokers[0].host}:${md.brokers[0].port}`, server.addr)
})

test('createStream, stream_exists, ifNotExists, fetchStreamMetadata, deleteStream', async () => {
  const name = uniqueName()
  assert.equal(await client.createStream(`${name}.subj`, name, { partitions: 3 }), true)
  const err = await client.createStream(`${name}.subj`, name).then(
    () => assert.fail('created twice'),
    (e) => e,
  )
  assert.ok(err instanceof StreamExistsError)
  assert.ok(err instanceof LiftbridgeError)
  assert.ok(err instanceof Error)
  assert.equal(err.code, 'stream_exists')
  assert.equal(err.retryable, false)
  assert.match(err.message, new RegExp(name))
  assert.equal(await client.createStream(`${name}.subj`, name, { ifNotExists: true }), false)

  const info = await client.fetchStreamMetadata(name)
  assert.equal(info.name, name)
  assert.equal(info.subject, `${name}.subj`)
  assert.deepEqual(Object.keys(info.partitions).sort(), ['0', '1', '2'])
  assert.equal(typeof info.creationTime, 'bigint')
  const md = await client.fetchMetadata()
  assert.ok(md.streams[name])

  await client.deleteStream(name)
  await assert.rejects(client.deleteStream(name), (e) => e instanceof NoSuchStreamError && e.code === 'no_such_stream')
  await assert.rejects(client.fetchStreamMetadata(name), NoSuchStreamError)
})

test('publish: ack with bigint offsets; key, headers, string and Buffer values read back', async () => {
  const name = await newStream()
  const a0 = await client.publish(name, 'hello', { key: 'k1', headers: { h: 'v', b: Buffer.from([0, 1, 2]) } })
  assert.equal(a0.stream, name)
  assert.equal(a0.offset, 0n)
  assert.equal(a0.partition, 0)
  assert.equal(typeof a0.receptionTimestamp, 'bigint')
  assert.equal(typeof a0.commitTimestamp, 'bigint')
  assert.equal(a0.ackPolicy, 'leader')
  const a1 = await client.publish(name, Buffer.from([0xff, 0x00]), { ackPolicy: 'all', correlationId: 'c-1' })
  assert.equal(a1.offset, 1n)
  assert.equal(a1.correlationId, 'c-1')
  const a2 = await client.publish(name, new Uint8Array([7, 8, 9]), { ackPolicy: 'none' })
  assert.equal(a2.offset, -1n)

  const sub = client.subscribe(name, { start: 'earliest' })
  const got = await take(sub, 3)
  assert.deepEqual(
    got.map((m) => m.offset),
    [0n, 1n, 2n],
  )
  assert.ok(Buffer.isBuffer(got[0].value))
  assert.equal(got[0].value.toString(), 'hello')
  assert.equal(got[0].key.toString(), 'k1')
  assert.equal(got[0].headers.h.toString(), 'v')
  assert.deepEqual([...got[0].headers.b], [0, 1, 2])
  assert.equal(got[0].stream, name)
  assert.equal(got[0].partition, 0)
  assert.equal(got[0].subject, name)
  assert.equal(typeof got[0].timestamp, 'bigint')
  assert.ok(got[0].time instanceof Date)
  assert.deepEqual([...got[1].value], [0xff, 0x00])
  assert.equal(got[1].key.length, 0)
  assert.equal(got[1].headers.h, undefined)
  assert.deepEqual([...got[2].value], [7, 8, 9])
})

test('publish: explicit partition, key and round-robin partitioning; no_such_partition', async () => {
  const name = await newStream({ partitions: 3 })
  assert.equal((await client.publish(name, 'p2', { partition: 2 })).partition, 2)
  const byKey = await Promise.all(['a', 'a', 'a'].map((k) => client.publish(name, 'x', { key: k, partitionBy: 'key' })))
  assert.equal(new Set(byKey.map((a) => a.partition)).size, 1)
  const rr = []
  for (let i = 0; i < 3; i++) rr.push((await client.publish(name, 'r', { partitionBy: 'roundRobin' })).partition)
  assert.deepEqual([...rr].sort(), [0, 1, 2])
  await assert.rejects(client.publish(name, 'x', { partition: 7 }), (e) => e instanceof NoSuchPartitionError && e.code === 'no_such_partition')
  await assert.rejects(client.fetchPartitionMetadata(name, 9), NoSuchPartitionError)
})

test('publish to a missing stream rejects with no_such_stream', async () => {
  await assert.rejects(client.publish(uniqueName('missing'), 'x'), (e) => e instanceof NoSuchStreamError && e.code === 'no_such_stream')
})

test('expectedOffset: optimistic concurrency control, incorrect_offset', async () => {
  const name = await newStream({ optimisticConcurrencyControl: true })
  assert.equal((await client.publish(name, 'a', { expectedOffset: 0n })).offset, 0n)
  assert.equal((await client.publish(name, 'b', { expectedOffset: 1 })).offset, 1n)
  const err = await client.publish(name, 'c', { expectedOffset: 5n }).catch((e) => e)
  assert.ok(err instanceof IncorrectOffsetError, String(err))
  assert.equal(err.code, 'incorrect_offset')
})

test('send: pipelined, acks in call order, mixed streams', async () => {
  const a = await newStream()
  const b = await newStream()
  const acks = []
  for (let i = 0; i < 1000; i++) acks.push(client.send(i % 2 ? a : b, `m${i}`))
  const done = await Promise.all(acks)
  const offsetsA = done.filter((_, i) => i % 2).map((x) => x.offset)
  const offsetsB = done.filter((_, i) => i % 2 === 0).map((x) => x.offset)
  assert.deepEqual(offsetsA, Array.from({ length: 500 }, (_, i) => BigInt(i)))
  assert.deepEqual(offsetsB, Array.from({ length: 500 }, (_, i) => BigInt(i)))
  const got = await take(client.subscribe(a, { start: 'earliest', stop: 'latest' }), 500)
  assert.deepEqual(
    got.map((m) => m.value.toString()),
    Array.from({ length: 500 }, (_, i) => `m${2 * i + 1}`),
  )
  // An error for one message rejects only its promise.
  const results = await Promise.allSettled([client.send(a, 'ok'), client.send(a, 'bad', { partition: 4 }), client.send(a, 'ok2')])
  assert.deepEqual(
    results.map((r) => r.status),
    ['fulfilled', 'rejected', 'fulfilled'],
  )
  assert.ok(results[1].reason instanceof NoSuchPartitionError)
})

test('100 concurrent publishes all succeed with distinct offsets', async () => {
  const name = await newStream()
  const acks = await Promise.all(Array.from({ length: 100 }, (_, i) => client.publish(name, `c${i}`)))
  const offsets = acks.map((x) => x.offset).sort((x, y) => (x < y ? -1 : x > y ? 1 : 0))
  assert.deepEqual(offsets, Array.from({ length: 100 }, (_, i) => BigInt(i)))
  const hw = (await client.fetchPartitionMetadata(name, 0)).newestOffset
  assert.equal(hw, 99n)
})

test('publishToSubject: stored by the stream on that subject; null with ackPolicy none', async () => {
  const name = uniqueName()
  await client.createStream(`${name}.sub`, name)
  const ack = await client.publishToSubject(`${name}.sub`, 'via subject', { key: 'k', headers: { x: 'y' } })
  assert.equal(ack.stream, name)
  assert.equal(ack.offset, 0n)
  assert.equal(await client.publishToSubject(`${name}.sub`, 'no ack', { ackPolicy: 'none' }), null)
  const got = await take(client.subscribe(name, { start: 'earliest' }), 1)
  assert.equal(got[0].value.toString(), 'via subject')
  assert.equal(got[0].headers.x.toString(), 'y')
})

test('fetchPartitionMetadata: high watermark and newest offset as bigint', async () => {
  const name = await newStream()
  for (let i = 0; i < 5; i++) await client.publish(name, `v${i}`)
  const p = await client.fetchPartitionMetadata(name, 0)
  assert.equal(p.id, 0)
  assert.equal(p.newestOffset, 4n)
  assert.equal(p.highWatermark, 4n)
  assert.equal(p.paused, false)
  assert.equal(p.readonly, false)
  assert.ok(p.isr.length >= 1)
  assert.equal(typeof p.messagesReceived.latest, 'bigint')
})

test('subscribe: start offset, stop offset, timestamps, reverse, partition, allPartitions', async () => {
  const name = await newStream({ partitions: 2 })
  for (let i = 0; i < 10; i++) await client.publish(name, `v${i}`)
  await client.publish(name, 'other', { partition: 1 })

  const fromOffset = await take(client.subscribe(name, { start: { offset: 7n } }), 3)
  assert.deepEqual(
    fromOffset.map((m) => m.offset),
    [7n, 8n, 9n],
  )

  const bounded = []
  for await (const m of client.subscribe(name, { start: { offset: 2 }, stop: { offset: 4n } })) bounded.push(m.offset)
  assert.deepEqual(bounded, [2n, 3n, 4n])

  const toLatest = []
  for await (const m of client.subscribe(name, { start: 'earliest', stop: 'latest' })) toLatest.push(m.offset)
  assert.equal(toLatest.length, 10)

  const reversed = []
  for await (const m of client.subscribe(name, { start: 'latest', reverse: true, stop: { offset: 6n } })) reversed.push(m.offset)
  assert.deepEqual(reversed, [9n, 8n, 7n, 6n])

  const byTime = await take(client.subscribe(name, { start: { timestamp: new Date(Date.now() - 3_600_000) } }), 1)
  assert.equal(byTime[0].offset, 0n)
  const byDelta = await take(client.subscribe(name, { start: { timeDelta: 3_600_000 } }), 1)
  assert.equal(byDelta[0].offset, 0n)
  const stopAtTime = []
  for await (const m of client.subscribe(name, { start: 'earliest', stop: { timestamp: BigInt(Date.now() + 1000) * 1_000_000n - 1_000_000_000n } })) stopAtTime.push(m)
  assert.equal(stopAtTime.length, 10)
  // A stop time before the first message is refused by the server: invalid_argument.
  await assert.rejects(
    client.subscribe(name, { start: 'earliest', stop: { timestamp: new Date(Date.now() - 3_600_000) } }).next(),
    (e) => e instanceof InvalidArgumentError && e.code === 'invalid_argument',
  )

  const p1 = await take(client.subscribe(name, { partition: 1, start: 'earliest' }), 1)
  assert.equal(p1[0].partition, 1)
  assert.equal(p1[0].value.toString(), 'other')

  const all = []
  for await (const m of client.subscribe(name, { allPartitions: true, start: 'earliest', stop: 'latest' })) all.push(m)
  assert.equal(all.length, 11)
  assert.deepEqual(new Set(all.map((m) => m.partition)), new Set([0, 1]))
})

test('subscribe newOnly: sees messages published after ready()', async () => {
  const name = await newStream()
  await client.publish(name, 'before')
  const sub = client.subscribe(name)
  await sub.ready()
  await client.publish(name, 'after')
  const [m] = await take(sub, 1)
  assert.equal(m.value.toString(), 'after')
  assert.equal(m.offset, 1n)
})

test('subscribe errors: no_such_stream on iteration, no_such_partition', async () => {
  const sub = client.subscribe(uniqueName('missing'), { start: 'earliest' })
  await assert.rejects(sub.next(), NoSuchStreamError)
  const name = await newStream()
  await assert.rejects(client.subscribe(name, { partition: 3 }).next(), NoSuchPartitionError)
})

test('break releases the subscription; later iterations end', async () => {
  const name = await newStream()
  for (let i = 0; i < 20; i++) await client.publish(name, `v${i}`)
  const sub = client.subscribe(name, { start: 'earliest' })
  let n = 0
  for await (const m of sub) {
    assert.equal(m.offset, BigInt(n))
    n += 1
    if (n === 5) break
  }
  assert.equal(n, 5)
  assert.deepEqual(await sub.next(), { value: undefined, done: true })
})

test('AbortSignal: aborting releases a waiting subscription and rejects with the reason', async () => {
  const name = await newStream()
  const ac = new AbortController()
  const sub = client.subscribe(name, { signal: ac.signal })
  await sub.ready()
  const pending = (async () => {
    for await (const m of sub) void m
  })()
  setTimeout(() => ac.abort(), 50)
  await assert.rejects(pending, (e) => e.name === 'AbortError')
  // An already aborted signal: the first iteration rejects.
  const sub2 = client.subscribe(name, { signal: AbortSignal.abort(new Error('stop now')) })
  await assert.rejects(sub2.next(), /stop now/)
  // AbortSignal.timeout works too.
  await assert.rejects(
    (async () => {
      for await (const m of client.subscribe(name, { signal: AbortSignal.timeout(100) })) void m
    })(),
    (e) => e.name === 'TimeoutError',
  )
})

test('pauseStream: partitions report paused, publishing resumes them', async () => {
  const name = await newStream({ partitions: 2 })
  await client.publish(name, 'x')
  await client.pauseStream(name, { partitions: [0] })
  const md = await client.fetchStreamMetadata(name)
  assert.equal(md.partitions['0'].paused, true)
  await client.pauseStream(name)
  assert.equal((await client.publish(name, 'resumes')).offset, 1n)
})

test('setStreamReadonly: publish rejects with readonly; a subscription ends with end_of_readonly_partition', async () => {
  const name = await newStream()
  await client.publish(name, 'one')
  await client.setStreamReadonly(name)
  const err = await client.publish(name, 'two').catch((e) => e)
  assert.ok(err instanceof ReadonlyPartitionError, String(err))
  assert.equal(err.code, 'readonly')
  const seen = []
  await assert.rejects(
    (async () => {
      for await (const m of client.subscribe(name, { start: 'earliest' })) seen.push(m.offset)
    })(),
    EndOfReadonlyPartitionError,
  )
  assert.deepEqual(seen, [0n])
  await client.setStreamReadonly(name, { readonly: false })
  assert.equal((await client.publish(name, 'three')).offset, 1n)
})

test('bad input: TypeError / RangeError before any network call', async () => {
  await assert.rejects(client.publish(42, 'x'), { name: 'TypeError', message: 'stream must be a string, got number 42' })
  await assert.rejects(client.publish('s', 'x', { partition: -1 }), { name: 'RangeError', message: 'partition must not be negative, got -1' })
  await assert.rejects(client.publish('s', 'x', { ackPolicy: 'sometimes' }), {
    name: 'RangeError',
    message: 'ackPolicy must be one of "leader", "all", "none", got "sometimes"',
  })
  await assert.rejects(client.publish('', 'x'), RangeError)
  await assert.rejects(client.publish('s', 42), TypeError)
  await assert.rejects(client.publish('s', 'x', { partition: -1 }), RangeError)
  await assert.rejects(client.publish('s', 'x', { partition: 1.5 }), TypeError)
  await assert.rejects(client.publish('s', 'x', { ackPolicy: 'sometimes' }), RangeError)
  await assert.rejects(client.publish('s', 'x', { ackPolicy: 1 }), TypeError)
  await assert.rejects(client.publish('s', 'x', { partitionBy: 'hash' }), RangeError)
  await assert.rejects(client.publish('s', 'x', { expectedOffset: -2n }), RangeError)
  await assert.rejects(client.publish('s', 'x', { expectedOffset: 'x' }), TypeError)
  await assert.rejects(client.publish('s', 'x', { headers: { a: 1 } }), TypeError)
  await assert.rejects(client.publish('s', 'x', 'opts'), TypeError)
  await assert.rejects(client.send('s', null), TypeError)
  await assert.rejects(client.publishToSubject('subj', 'x', { partition: 1 }), TypeError)
  await assert.rejects(client.createStream('subj', 'n', { partitions: 0 }), RangeError)
  await assert.rejects(client.createStream('subj', 'n', { partitions: -1 }), RangeError)
  await assert.rejects(client.createStream('subj', 7), TypeError)
  await assert.rejects(client.fetchPartitionMetadata('s', -1), RangeError)
  await assert.rejects(client.pauseStream('s', { partitions: [-1] }), RangeError)
  await assert.rejects(client.pauseStream('s', { partitions: 1 }), TypeError)
  assert.throws(() => client.subscribe('s', { partition: -3 }), RangeError)
  assert.throws(() => client.subscribe('s', { start: 'oldest' }), RangeError)
  assert.throws(() => client.subscribe('s', { start: { offset: -1n } }), RangeError)
  assert.throws(() => client.subscribe('s', { start: { offset: 1.5 } }), TypeError)
  assert.throws(() => client.subscribe('s', { stop: 'never' }), RangeError)
  assert.throws(() => client.subscribe('s', { start: { timestamp: 'yesterday' } }), TypeError)
  assert.throws(() => client.subscribe('s', { signal: {} }), TypeError)
  assert.throws(() => client.subscribe('s', { reverse: 'yes' }), TypeError)
  await assert.rejects(Client.connect('bad address/'), (e) => e instanceof ConfigError && e.code === 'config')
  await assert.rejects(Client.connect([]), RangeError)
  await assert.rejects(Client.connect([1]), TypeError)
  await assert.rejects(Client.connect([server.addr], { requestTimeoutMs: -5 }), RangeError)
  await assert.rejects(Client.connect([server.addr], { partitionBy: 'hash' }), RangeError)
  await assert.rejects(Client.connect([server.addr], { maxInFlight: 0 }), RangeError)
  assert.throws(() => new Client({}), TypeError)
})

test('connect to a dead port rejects with unavailable', async () => {
  const port = await freePort()
  const err = await Client.connect([`127.0.0.1:${port}`], { connectTimeoutMs: 500 }).catch((e) => e)
  assert.ok(err instanceof LiftbridgeError, String(err))
  assert.ok(['unavailable', 'timeout'].includes(err.code), err.code)
  assert.equal(err.retryable, true)
  assert.ok(err instanceof UnavailableError || err.code === 'timeout')
})

test('error classes: one per Rust error kind, instanceof and code agree', () => {
  for (const [code, cls] of Object.entries(ERROR_CLASSES)) {
    const e = new cls('m')
    assert.ok(e instanceof LiftbridgeError && e instanceof Error)
    assert.equal(e.code, code)
    assert.equal(cls.code, code)
  }
  assert.equal(Object.keys(ERROR_CLASSES).length, 25)
  // The same names as the Python package's exceptions.
  assert.equal(new ERROR_CLASSES.timeout('m').name, 'RequestTimeoutError')
  assert.equal(new ERROR_CLASSES.closed('m').name, 'ClientClosedError')
  assert.equal(new ERROR_CLASSES.paused('m').name, 'PartitionPausedError')
})

test('close: later calls reject with closed; Symbol.asyncDispose closes', async () => {
  const c = await Client.connect([server.addr])
  const name = uniqueName()
  await c.createStream(name, name)
  const sub = c.subscribe(name)
  await sub.ready()
  const iterating = sub.next()
  await c.close()
  assert.equal(c.closed, true)
  await assert.rejects(iterating, ClientClosedError)
  await assert.rejects(c.publish(name, 'x'), (e) => e instanceof ClientClosedError && e.code === 'closed')
  await assert.rejects(c.send(name, 'x'), ClientClosedError)
  await assert.rejects(c.fetchMetadata(), ClientClosedError)
  await c.close() // idempotent

  const d = await Client.connect([server.addr])
  assert.equal(d.closed, false)
  await d[Symbol.asyncDispose]()
  assert.equal(d.closed, true)
})

test('waitForStream: resolves for an existing stream, times out with timeout for a missing one', async () => {
  const name = await newStream({ partitions: 2 })
  const info = await client.waitForStream(name, 5_000)
  assert.deepEqual(Object.keys(info.partitions).sort(), ['0', '1'])
  await assert.rejects(client.waitForStream(uniqueName('never'), 300), (e) => e instanceof RequestTimeoutError && e.code === 'timeout' && e.retryable)
  await assert.rejects(client.waitForStream(name, -1), RangeError)
})

test('events: metadata refreshes and close are reported; break and signal end the iteration', async () => {
  const c = await Client.connect([server.addr])
  const events = c.events()
  const seen = []
  const reading = (async () => {
    for await (const e of events) seen.push(e.type)
  })()
  await c.fetchMetadata()
  await c.close()
  await reading
  assert.ok(seen.includes('metadataRefreshed'), seen.join(','))
  assert.equal(seen.at(-1), 'closed')

  const ac = new AbortController()
  const pending = client.events({ signal: ac.signal }).next()
  ac.abort()
  await assert.rejects(pending, (e) => e.name === 'AbortError')
  assert.throws(() => client.events({ signal: 'x' }), TypeError)
})

test('subscribe to a paused partition: paused error, or resume: true resumes it', async () => {
  const name = await newStream()
  await client.publish(name, 'kept')
  await client.pauseStream(name)
  const err = await client
    .subscribe(name, { start: 'earliest' })
    .next()
    .then(
      () => null,
      (e) => e,
    )
  assert.ok(err instanceof PartitionPausedError, String(err))
  assert.equal(err.code, 'paused')
  const [m] = await take(client.subscribe(name, { start: 'earliest', resume: true, prefetch: 1 }), 1)
  assert.equal(m.value.toString(), 'kept')
  assert.equal((await client.fetchStreamMetadata(name)).partitions['0'].paused, false)
})
