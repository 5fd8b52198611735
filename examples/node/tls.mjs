// Connects with TLS (optionally mutual TLS) and prints the cluster's brokers.
//
//   node tls.mjs 127.0.0.1:9292 ca.pem [client.pem client.key] [server-name]
//
// Without a CA file the system roots are trusted. The server name defaults to the host dialled; give one
// when connecting by IP address to a server whose certificate names a host.
import { Client } from 'liftbridge'

const [addr = '127.0.0.1:9292', caFile, certFile, keyFile, serverName] = process.argv.slice(2)
const tls = caFile ? { caFile } : { nativeRoots: true }
if (certFile && keyFile) Object.assign(tls, { certFile, keyFile })
if (serverName) tls.serverName = serverName
const client = await Client.connect([addr], { tls })
try {
  const md = await client.fetchMetadata()
  for (const b of md.brokers) console.log(`broker ${b.id} at ${b.host}:${b.port}`)
} finally {
  await client.close()
}
