// A real liftbridge server for the tests: the workspace binary, started standalone (embedded NATS broker) on
// free loopback ports with a fresh data directory, stopped by pid.
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, existsSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../..')

/** The liftbridge binary: $LIFTBRIDGE_BIN, else <target dir>/debug/liftbridge. */
export function serverBinary() {
  if (process.env.LIFTBRIDGE_BIN) return process.env.LIFTBRIDGE_BIN
  const target = process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(repo, 'target')
  return join(target, 'debug', 'liftbridge')
}

/** A free TCP port on 127.0.0.1 (bound to port 0, read back, released). */
export function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer()
    s.once('error', fail)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => ok(port))
    })
  })
}

/** Starts a server; resolves with { addr, natsPort, stop() } once it logged "liftbridge is ready". */
export async function startServer({ timeoutMs = 30_000 } = {}) {
  const bin = serverBinary()
  if (!existsSync(bin)) throw new Error(`liftbridge binary not found at ${bin}: cargo build -p liftbridge-server --bin liftbridge`)
  const dir = mkdtempSync(join(tmpdir(), 'liftbridge-node-'))
  const port = await freePort()
  const natsPort = await freePort()
  const child = spawn(bin, ['--host', '127.0.0.1', '-p', String(port), '-d', join(dir, 'data')], {
    env: {
      ...process.env,
      LIFTBRIDGE_NATS_EMBEDDED_PORT: String(natsPort),
      LIFTBRIDGE_NATS_EMBEDDED_HOST: '127.0.0.1',
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let log = ''
  await new Promise((ok, fail) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      fail(new Error(`liftbridge did not get ready in ${timeoutMs} ms:\n${log}`))
    }, timeoutMs)
    child.stderr.on('data', (chunk) => {
      log += chunk
      if (log.includes('liftbridge is ready')) {
        clearTimeout(timer)
        ok()
      }
    })
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      fail(new Error(`liftbridge exited (${code ?? signal}) before it was ready:\n${log}`))
    })
  })
  child.stderr.resume()
  const exited = new Promise((ok) => child.once('exit', ok))
  return {
    addr: `127.0.0.1:${port}`,
    natsPort,
    pid: child.pid,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        process.kill(child.pid, 'SIGTERM')
        const killer = setTimeout(() => child.exitCode === null && process.kill(child.pid, 'SIGKILL'), 10_000)
        await exited
        clearTimeout(killer)
      }
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

let counter = 0
/** A stream name unique within the run. */
export function uniqueName(prefix = 's') {
  counter += 1
  return `${prefix}-${process.pid}-${counter}-${Math.random().toString(36).slice(2, 8)}`
}
