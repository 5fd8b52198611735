// Quick start: create a stream, publish five messages with acks, read them back.
//
//   node quickstart.mjs 127.0.0.1:9292
import { Client } from 'liftbridge'

const addr = process.argv[2] ?? '127.0.0.1:9292'
const client = await Client.connect([addr])
try {
  const created = await client.createStream('quickstart.events', 'quickstart', { ifNotExists: true })
  console.log(created ? 'created stream "quickstart" on subject quickstart.events' : 'stream "quickstart" already exists')

  let first
  for (let i = 0; i < 5; i++) {
    const ack = await client.publish('quickstart', `hello #${i}`)
    first ??= ack.offset
    console.log(`published hello #${i} -> offset ${ack.offset}`)
  }

  // Read back the five messages just published: start at the first one, stop at the newest.
  let count = 0
  for await (const msg of client.subscribe('quickstart', { start: { offset: first }, stop: 'latest' })) {
    console.log(`offset ${msg.offset}: ${msg.value.toString()}`)
    count += 1
  }
  console.log(`read ${count} messages back; done`)
} finally {
  await client.close()
}
