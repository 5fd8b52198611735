// Pipelined publishing: many messages in flight on one stream, acks awaited together, with the client's
// in-flight window applying backpressure.
//
//   node publish_async.mjs 127.0.0.1:9292 bulk 100000
import { Client } from 'liftbridge'

const [addr = '127.0.0.1:9292', stream = 'bulk', countArg = '10000'] = process.argv.slice(2)
const count = Number(countArg)
const client = await Client.connect([addr])
try {
  await client.createStream(`${stream}.events`, stream, { ifNotExists: true })
  const payload = Buffer.alloc(128, 'x')
  const started = performance.now()
  // send() queues the message and returns the promise of its ack at once: no round trip per message.
  // Waiting every 10,000 messages keeps memory flat.
  let last
  for (let i = 0; i < count; i += 10_000) {
    const acks = []
    for (let j = i; j < Math.min(count, i + 10_000); j++) acks.push(client.send(stream, payload))
    last = (await Promise.all(acks)).at(-1)
  }
  const seconds = (performance.now() - started) / 1000
  console.log(`published ${count} messages in ${seconds.toFixed(2)} s (${Math.round(count / seconds)} msg/s); last offset ${last?.offset}`)
} finally {
  await client.close()
}
