// The examples in examples/node run end to end against a real server.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdirSync, symlinkSync, existsSync } from 'node:fs'
import { join, resolve, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

import { startServer, uniqueName } from './server.mjs'

const run = promisify(execFile)
const examples = resolve(dirname(fileURLToPath(import.meta.url)), '../../../examples/node')

let server

before(async () => {
  // The examples import 'liftbridge' as an installed package would be: link this package in.
  const link = join(examples, 'node_modules', 'liftbridge')
  if (!existsSync(link)) {
    mkdirSync(join(examples, 'node_modules'), { recursive: true })
    symlinkSync('../../../bindings/node', link, 'dir')
  }
  server = await startServer()
})

after(async () => {
  await server?.stop()
})

async function example(file, ...args) {
  const { stdout } = await run(process.execPath, [join(examples, file), server.addr, ...args], { timeout: 60_000 })
  return stdout
}

test('quickstart.mjs publishes five messages and reads them back', async () => {
  const out = await example('quickstart.mjs')
  assert.match(out, /published hello #4 -> offset 4/)
  assert.match(out, /read 5 messages back; done/)
})

test('create_stream.mjs creates a 3-partition stream and prints it', async () => {
  const name = uniqueName('ex')
  const out = await example('create_stream.mjs', name)
  assert.match(out, /created stream/)
  assert.equal(out.match(/^partition \d: leader/gm).length, 3)
  assert.match(await example('create_stream.mjs', name), /already exists/)
})

test('publish.mjs and subscribe.mjs: keyed messages with headers, read back per partition', async () => {
  const name = uniqueName('ex')
  const out = await example('publish.mjs', name)
  const lines = out.trim().split('\n')
  assert.equal(lines.length, 10)
  const partitionOf = new Map()
  for (const [i, line] of lines.entries()) {
    const m = /^order #(\d+) -> partition (\d+) offset (\d+)$/.exec(line)
    assert.ok(m, line)
    const customer = i % 4
    if (partitionOf.has(customer)) assert.equal(partitionOf.get(customer), m[2])
    partitionOf.set(customer, m[2])
  }
  let total = 0
  for (const p of ['0', '1', '2']) {
    const read = await example('subscribe.mjs', name, p)
    assert.match(read, /reached the stop position/)
    total += (read.match(/ key customer-/g) ?? []).length
  }
  assert.equal(total, 10)
})

test('publish_async.mjs pipelines 20,000 messages', async () => {
  const out = await example('publish_async.mjs', uniqueName('ex'), '20000')
  assert.match(out, /published 20000 messages .* last offset 19999/)
})

test('subscribe_all_partitions.mjs reads a round-robin stream through one subscription', async () => {
  const out = await example('subscribe_all_partitions.mjs', uniqueName('ex'))
  assert.match(out, /over partitions 0, 1, 2/)
  assert.equal(out.match(/^partition \d offset \d+: message \d$/gm).length, 9)
})
