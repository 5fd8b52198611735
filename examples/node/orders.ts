// The TypeScript example: typed options, acks and messages, errors told apart with instanceof, and the
// client disposed by `await using`. Type-checked by the Node test suite (`tsc --noEmit`); run it with any
// TypeScript runner (tsx, ts-node, or Node >= 22 with type stripping):
//
//   npx tsx orders.ts 127.0.0.1:9292 orders
import {
  Client,
  LiftbridgeError,
  StreamExistsError,
  type Ack,
  type Message,
  type PublishOptions,
} from 'liftbridge'

interface Order {
  id: number
  customer: string
  total: number
}

async function main(addr: string, stream: string): Promise<void> {
  await using client = await Client.connect([addr], { partitionBy: 'key', ackTimeoutMs: 5_000 })

  try {
    await client.createStream(`${stream}.events`, stream, { partitions: 3 })
  } catch (err) {
    if (!(err instanceof StreamExistsError)) throw err
  }

  const orders: Order[] = Array.from({ length: 6 }, (_, id) => ({ id, customer: `c${id % 2}`, total: 10 * id }))
  const acks: Ack[] = await Promise.all(
    orders.map((o) => {
      const opts: PublishOptions = { key: o.customer, headers: { 'content-type': 'application/json' } }
      return client.send(stream, JSON.stringify(o), opts)
    }),
  )
  const newest = new Map<number, bigint>()
  for (const ack of acks) {
    const p = ack.partition ?? 0
    if ((newest.get(p) ?? -1n) < ack.offset) newest.set(p, ack.offset)
  }

  for (const [partition, last] of newest) {
    const signal = AbortSignal.timeout(10_000)
    const sub = client.subscribe(stream, { partition, start: 'earliest', stop: { offset: last }, signal })
    for await (const msg of sub) {
      const m: Message = msg
      const order = JSON.parse(m.value.toString('utf8')) as Order
      console.log(`partition ${m.partition} offset ${m.offset}: order ${order.id} of ${order.customer}`)
    }
  }
}

const [addr = '127.0.0.1:9292', stream = 'orders-ts'] = process.argv.slice(2)
main(addr, stream).catch((err: unknown) => {
  if (err instanceof LiftbridgeError) console.error(`liftbridge error ${err.code}: ${err.message}`)
  else console.error(err)
  process.exitCode = 1
})
