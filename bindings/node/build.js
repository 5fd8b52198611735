#!/usr/bin/env node
// Builds the native addon for this machine: `npm install ./bindings/node` runs it (the `install` script).
//
//   node build.js              # release build with cargo, copied to liftbridge.<platform>.node
//   node build.js --if-missing # only when no addon for this platform is present
//   node build.js --debug      # debug build
//
// It needs only cargo (and this repository's workspace); the napi CLI (`npm run build`) does the same and
// also regenerates native.js / native.d.ts.
'use strict'

const { execFileSync } = require('node:child_process')
const { copyFileSync, existsSync } = require('node:fs')
const { join, resolve } = require('node:path')

const here = __dirname
const args = new Set(process.argv.slice(2))

function platformSuffix() {
  const { platform, arch } = process
  if (platform === 'linux') {
    const report = typeof process.report?.getReport === 'function' ? process.report.getReport() : null
    const glibc = report?.header?.glibcVersionRuntime
    return `linux-${arch}-${glibc ? 'gnu' : 'musl'}`
  }
  if (platform === 'win32') return `win32-${arch}-msvc`
  return `${platform}-${arch}`
}

const target = join(here, `liftbridge.${platformSuffix()}.node`)
if (args.has('--if-missing') && existsSync(target)) process.exit(0)

const profile = args.has('--debug') ? 'debug' : 'release'
const cargoArgs = ['build', '-p', 'liftbridge-node', '--manifest-path', join(here, 'Cargo.toml')]
if (profile === 'release') cargoArgs.push('--release')
console.log(`liftbridge: building the native addon (cargo ${cargoArgs.join(' ')})`)
try {
  execFileSync('cargo', cargoArgs, { stdio: 'inherit', cwd: here })
} catch (err) {
  console.error('liftbridge: building the native addon failed; it needs Rust (https://rustup.rs) and cargo on PATH')
  process.exit(typeof err.status === 'number' ? err.status : 1)
}
const meta = JSON.parse(execFileSync('cargo', ['metadata', '--format-version', '1', '--no-deps', '--manifest-path', join(here, 'Cargo.toml')], { cwd: here }))
const dir = join(resolve(meta.target_directory), profile)
const lib = { win32: 'liftbridge_node.dll', darwin: 'libliftbridge_node.dylib' }[process.platform] ?? 'libliftbridge_node.so'
copyFileSync(join(dir, lib), target)
console.log(`liftbridge: native addon at ${target}`)
