// Reads a stream partition from the beginning. By default it stops at the newest message present when it
// subscribed; pass `follow` to keep reading new messages (Ctrl-C to stop).
//
//   node subscribe.mjs 127.0.0.1:9292 orders 0 follow
import { Client } from 'liftbridge'

const [addr = '127.0.0.1:9292', stream = 'orders', partition = '0', mode] = process.argv.slice(2)
const client = await Client.connect([addr])
const controller = new AbortController()
process.once('SIGINT', () => controller.abort())
try {
  const follow = mode === 'follow'
  const sub = client.subscribe(stream, {
    partition: Number(partition),
    start: 'earliest',
    stop: follow ? undefined : 'latest',
    signal: controller.signal,
  })
  for await (const msg of sub) {
    const key = msg.key.length ? msg.key.toString() : '-'
    console.log(`${msg.stream}/${msg.partition} offset ${msg.offset} key ${key}: ${msg.value.toString()}`)
  }
  console.log('reached the stop position')
} catch (err) {
  if (err.name !== 'AbortError') throw err
  console.log('stopped')
} finally {
  await client.close()
}
