// Volume: a 100,000-message subscription, and the event loop stays responsive while it runs.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { monitorEventLoopDelay } from 'node:perf_hooks'

import { Client } from '../index.js'
import { startServer, uniqueName } from './server.mjs'

const N = 100_000

let server
let client
let stream

before(async () => {
  server = await startServer()
  client = await Client.connect([server.addr])
  stream = uniqueName('load')
  await client.createStream(stream, stream)
  // Pipelined publishing, in windows so the test's memory stays flat.
  const value = Buffer.alloc(64, 'x')
  for (let done = 0; done < N; ) {
    const acks = []
    for (let i = 0; i < 5000 && done < N; i++, done++) acks.push(client.send(stream, value, { key: `k${done % 16}` }))
    const last = await Promise.all(acks)
    assert.equal(last.at(-1).offset, BigInt(done - 1))
  }
})

after(async () => {
  await client?.close()
  await server?.stop()
})

test('a 100,000-message subscription delivers every offset once, in order', async () => {
  let expected = 0n
  let bytes = 0
  for await (const m of client.subscribe(stream, { start: 'earliest', stop: 'latest' })) {
    assert.equal(m.offset, expected)
    bytes += m.value.length
    expected += 1n
  }
  assert.equal(expected, BigInt(N))
  assert.equal(bytes, N * 64)
})

test('no event-loop stall: a timer keeps firing during a fast subscription', async (t) => {
  const histogram = monitorEventLoopDelay({ resolution: 5 })
  histogram.enable()
  let ticks = 0
  let lastTick = performance.now()
  let worstGap = 0
  const timer = setInterval(() => {
    const now = performance.now()
    worstGap = Math.max(worstGap, now - lastTick)
    lastTick = now
    ticks += 1
  }, 5)
  const started = performance.now()
  let n = 0
  for await (const m of client.subscribe(stream, { start: 'earliest', stop: 'latest' })) {
    void m
    n += 1
  }
  const elapsed = performance.now() - started
  clearInterval(timer)
  histogram.disable()
  assert.equal(n, N)
  const p99 = histogram.percentile(99) / 1e6
  t.diagnostic(`${n} messages in ${elapsed.toFixed(0)} ms; 5 ms timer fired ${ticks} times, worst gap ${worstGap.toFixed(1)} ms; event-loop delay p99 ${p99.toFixed(1)} ms`)
  // The timer must have run throughout the subscription (a loop that drained the subscription without
  // yielding would hold it off for the whole run, seconds here): in at least a tenth of its 5 ms slots and
  // never held off for half a second. The bounds leave room for a CPU shared with other processes (CI boxes
  // run compilers beside the tests, and a descheduled process misses timers through no fault of its own).
  const slots = Math.floor(elapsed / 5)
  assert.ok(ticks >= slots / 10, `timer fired ${ticks} times in ${elapsed.toFixed(0)} ms (${slots} slots)`)
  assert.ok(worstGap < 500, `worst timer gap ${worstGap.toFixed(1)} ms over a ${elapsed.toFixed(0)} ms run`)
  assert.ok(p99 < 250, `event-loop delay p99 ${p99.toFixed(1)} ms`)
})
