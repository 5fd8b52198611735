// Publishes a few keyed messages with headers and waits for each ack.
//
//   node publish.mjs 127.0.0.1:9292 orders
import { Client } from 'liftbridge'

const [addr = '127.0.0.1:9292', stream = 'orders'] = process.argv.slice(2)
// Keyed messages go to the partition go-liftbridge would pick: CRC-32 of the key.
const client = await Client.connect([addr], { partitionBy: 'key' })
try {
  await client.createStream(`${stream}.events`, stream, { ifNotExists: true, partitions: 3 })
  for (let i = 0; i < 10; i++) {
    const ack = await client.publish(stream, `order #${i}`, {
      key: `customer-${i % 4}`,
      headers: { source: 'example' },
    })
    console.log(`order #${i} -> partition ${ack.partition} offset ${ack.offset}`)
  }
} finally {
  await client.close()
}
