// Publishes round-robin over a 3-partition stream, then reads every partition through one merged
// subscription (order is kept within each partition).
//
//   node subscribe_all_partitions.mjs 127.0.0.1:9292 spread
import { Client } from 'liftbridge'

const [addr = '127.0.0.1:9292', stream = 'spread'] = process.argv.slice(2)
const client = await Client.connect([addr], { partitionBy: 'roundRobin' })
try {
  await client.createStream(`${stream}.events`, stream, { ifNotExists: true, partitions: 3 })
  const acks = await Promise.all(Array.from({ length: 9 }, (_, i) => client.send(stream, `message ${i}`)))
  console.log(`published ${acks.length} messages over partitions ${[...new Set(acks.map((a) => a.partition))].sort().join(', ')}`)
  for await (const msg of client.subscribe(stream, { allPartitions: true, start: 'earliest', stop: 'latest' })) {
    console.log(`partition ${msg.partition} offset ${msg.offset}: ${msg.value.toString()}`)
  }
} finally {
  await client.close()
}
