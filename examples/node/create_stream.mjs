// Creates a stream with a few options (unless it exists) and prints its metadata.
//
//   node create_stream.mjs 127.0.0.1:9292 orders
import { Client } from 'liftbridge'

const [addr = '127.0.0.1:9292', name = 'orders'] = process.argv.slice(2)
const client = await Client.connect([addr])
try {
  const created = await client.createStream(`${name}.events`, name, {
    ifNotExists: true,
    partitions: 3,
    retentionMaxAgeMs: 24 * 3600 * 1000,
    retentionMaxMessages: 1_000_000,
    compactEnabled: false,
  })
  console.log(created ? `created stream ${JSON.stringify(name)}` : `stream ${JSON.stringify(name)} already exists`)
  const info = await client.fetchStreamMetadata(name)
  console.log(`subject ${info.subject}`)
  for (const p of Object.values(info.partitions)) {
    console.log(`partition ${p.id}: leader ${p.leader}, replicas ${p.replicas.join(',')}, isr ${p.isr.join(',')}`)
  }
} finally {
  await client.close()
}
