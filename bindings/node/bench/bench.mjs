// Node throughput benchmark: liftbridge (this package, against our server) vs the `nats` npm client with
// JetStream (against nats-server -js), same machine, same run, same workload, medians of several rounds.
//
//   node bench/bench.mjs [--messages 100000] [--size 128] [--window 1024] [--rounds 3]
//
// Workloads (both systems): pipelined publish of N messages of SIZE bytes with WINDOW in flight (acks
// awaited; liftbridge ack policy leader, JetStream file store R1), then a subscription reading the N messages
// back from the start. The liftbridge server binary is $LIFTBRIDGE_BIN or <target>/release/liftbridge
// (falls back to debug); nats-server comes from PATH.
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, existsSync } from 'node:fs'
import { tmpdir, cpus } from 'node:os'
import { join, resolve, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { connect as natsConnect } from 'nats'

import { Client } from '../index.js'
import { freePort } from '../test/server.mjs'

const args = process.argv.slice(2)
function opt(name, dflt) {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? Number(args[i + 1]) : dflt
}
const N = opt('messages', 100_000)
const SIZE = opt('size', 128)
const WINDOW = opt('window', 1024)
const ROUNDS = opt('rounds', 3)

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../..')
const targetDir = process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(repo, 'target')

function liftbridgeBinary() {
  if (process.env.LIFTBRIDGE_BIN) return process.env.LIFTBRIDGE_BIN
  for (const p of ['release', 'debug']) {
    const bin = join(targetDir, p, 'liftbridge')
    if (existsSync(bin)) return bin
  }
  throw new Error('no liftbridge binary: cargo build --release -p liftbridge-server --bin liftbridge')
}

/** Spawns a server, resolves once `ready(stderr+stdout so far)` is true. */
async function startProcess(bin, argv, env, ready) {
  const child = spawn(bin, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let log = ''
  await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`${bin} not ready in 30 s:\n${log}`)), 30_000)
    const onData = (c) => {
      log += c
      if (ready(log)) {
        clearTimeout(timer)
        ok()
      }
    }
    child.stdout.on('data', onData)
    child.stderr.on('data', onData)
    child.once('exit', (code) => fail(new Error(`${bin} exited (${code}):\n${log}`)))
  })
  const exited = new Promise((ok) => child.once('exit', ok))
  return {
    async stop() {
      process.kill(child.pid, 'SIGTERM')
      await exited
    },
  }
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

async function windowed(n, window, sendOne) {
  const started = performance.now()
  let inflight = []
  for (let i = 0; i < n; i++) {
    inflight.push(sendOne(i))
    if (inflight.length >= window) {
      await Promise.all(inflight)
      inflight = []
    }
  }
  await Promise.all(inflight)
  return n / ((performance.now() - started) / 1000)
}

async function benchLiftbridge(round) {
  const dir = mkdtempSync(join(tmpdir(), 'lb-bench-'))
  const port = await freePort()
  const natsPort = await freePort()
  const server = await startProcess(
    liftbridgeBinary(),
    ['--host', '127.0.0.1', '-p', String(port), '-d', join(dir, 'data')],
    { LIFTBRIDGE_NATS_EMBEDDED_PORT: String(natsPort), LIFTBRIDGE_NATS_EMBEDDED_HOST: '127.0.0.1' },
    (log) => log.includes('liftbridge is ready'),
  )
  try {
    const client = await Client.connect([`127.0.0.1:${port}`], { maxInFlight: Math.max(WINDOW, 1024) })
    const stream = `bench-${round}`
    await client.createStream(stream, stream)
    const payload = Buffer.alloc(SIZE, 'x')
    const pub = await windowed(N, WINDOW, () => client.send(stream, payload))
    const started = performance.now()
    let n = 0
    for await (const m of client.subscribe(stream, { start: 'earliest' })) {
      void m
      if (++n === N) break
    }
    const sub = N / ((performance.now() - started) / 1000)
    await client.close()
    return { pub, sub }
  } finally {
    await server.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}

async function benchJetStream(round) {
  const dir = mkdtempSync(join(tmpdir(), 'js-bench-'))
  const port = await freePort()
  const server = await startProcess(
    'nats-server',
    ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', dir],
    {},
    (log) => log.includes('Server is ready'),
  )
  try {
    const nc = await natsConnect({ servers: `127.0.0.1:${port}` })
    const jsm = await nc.jetstreamManager()
    const stream = `bench${round}`
    await jsm.streams.add({ name: stream, subjects: [`${stream}.x`], storage: 'file', num_replicas: 1 })
    const js = nc.jetstream()
    const payload = Buffer.alloc(SIZE, 'x')
    const pub = await windowed(N, WINDOW, () => js.publish(`${stream}.x`, payload))
    const consumer = await js.consumers.get(stream) // ordered consumer from the start
    const started = performance.now()
    const messages = await consumer.consume({ max_messages: 4096 })
    let n = 0
    for await (const m of messages) {
      void m.data
      if (++n === N) break
    }
    const sub = N / ((performance.now() - started) / 1000)
    await nc.close()
    return { pub, sub }
  } finally {
    await server.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}

const results = { liftbridge: [], jetstream: [] }
for (let r = 0; r < ROUNDS; r++) {
  // Alternate which system goes first so warm-up and background load do not favour one.
  const order = r % 2 === 0 ? ['liftbridge', 'jetstream'] : ['jetstream', 'liftbridge']
  for (const system of order) {
    const res = system === 'liftbridge' ? await benchLiftbridge(r) : await benchJetStream(r)
    results[system].push(res)
    console.log(`round ${r + 1} ${system.padEnd(10)} publish ${Math.round(res.pub).toString().padStart(8)} msg/s   subscribe ${Math.round(res.sub).toString().padStart(8)} msg/s`)
  }
}

const fmt = (x) => Math.round(x).toLocaleString('en-US')
console.log(`\nmedians of ${ROUNDS} rounds: ${N} messages of ${SIZE} B, window ${WINDOW}; node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'})`)
console.log('| workload | liftbridge (Node) | JetStream (nats.js) | ratio |')
console.log('|---|---|---|---|')
for (const [label, key] of [
  ['pipelined publish', 'pub'],
  ['subscribe', 'sub'],
]) {
  const lb = median(results.liftbridge.map((x) => x[key]))
  const js = median(results.jetstream.map((x) => x[key]))
  console.log(`| ${label} | ${fmt(lb)} msg/s | ${fmt(js)} msg/s | ${(lb / js).toFixed(2)}× |`)
}
