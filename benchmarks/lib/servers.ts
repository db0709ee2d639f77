// Starts each benchmark server as a child process and makes sure none outlives the driver.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { createWriteStream, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import type { MemReport } from '../servers/common.js'

export const SERVER_NAMES = ['fastify-bare', 'fastify-sdk-min', 'node-bare', 'fastify-mcp-sse', 'sdk-express', 'mcp-framework', 'cross-instance'] as const
export type ServerName = typeof SERVER_NAMES[number]
/** Servers of the connection-scale scenario (cross-instance is a load-only pair). */
export const SCALE_SERVER_NAMES: readonly ServerName[] = SERVER_NAMES.filter(n => n !== 'cross-instance')

export const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const SERVERS_DIR = join(ROOT, 'benchmarks', 'servers')

export interface ServerHandle {
  readonly name: ServerName
  /** Where streams are opened (and sessions initialized). */
  readonly port: number
  /** Where the load POSTs go: another instance than `port` for cross-instance. */
  readonly postPort: number
  readonly pid: number
  /** Set once the process has exited (a crash, when it happens during a run). */
  readonly exited: string | undefined
  readonly logPath: string
  /** `process.memoryUsage()` of the server process, after a full GC, and its session count. */
  mem (): Promise<MemReport>
  stop (): Promise<void>
}

const live = new Set<ChildProcess>()

/** Kills every server still running (synchronous: also safe in an 'exit' handler). */
export function killAllServers (): void {
  for (const child of live) {
    try { child.kill('SIGKILL') } catch {}
  }
  live.clear()
}

/**
 * Starts a server. `cross-instance` is two fastify-mcp-sse processes sharing sessions
 * through Redis: streams open on the first, POSTs go to the second, so every message
 * crosses Redis pub/sub.
 */
export async function startServer (name: ServerName, logDir: string, timeoutMs = 60_000): Promise<ServerHandle> {
  if (name === 'cross-instance') {
    const env = { BENCH_REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', BENCH_KEY_PREFIX: `mcp-bench:${process.pid}:${Date.now()}:` }
    const a = await startProcess('fastify-mcp-sse', 'cross-instance-a', logDir, timeoutMs, env)
    const b = await startProcess('fastify-mcp-sse', 'cross-instance-b', logDir, timeoutMs, env).catch(async (err: unknown) => { await a.stop(); throw err })
    return {
      name,
      port: a.port,
      postPort: b.port,
      pid: a.pid,
      get exited () { return a.exited ?? b.exited },
      logPath: a.logPath,
      mem: () => a.mem(),
      async stop () { await Promise.all([a.stop(), b.stop()]) }
    }
  }
  return await startProcess(name, name, logDir, timeoutMs, {})
}

async function startProcess (file: string, label: string, logDir: string, timeoutMs: number, env: Record<string, string>): Promise<ServerHandle> {
  const name = label as ServerName
  mkdirSync(logDir, { recursive: true })
  const logPath = join(logDir, `${label}.log`)
  const log = createWriteStream(logPath, { flags: 'a' })
  await new Promise(resolve => log.once('open', resolve))
  log.write(`\n--- ${new Date().toISOString()} start ${name}\n`)
  const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', join(SERVERS_DIR, `${file}.ts`)], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    // stdout: the ready line, then the log; stderr: the log; ipc: the server exits when we go.
    stdio: ['ignore', 'pipe', 'pipe', 'ipc']
  })
  live.add(child)
  child.stderr?.pipe(log, { end: false })
  let exited: string | undefined
  const exit = new Promise<void>(resolve => {
    child.once('exit', (code, signal) => {
      exited = signal !== null ? `killed by ${signal}` : `exited with code ${code ?? '?'}`
      live.delete(child)
      log.write(`--- ${name} ${exited}\n`)
      resolve()
    })
  })

  const ready = await new Promise<{ port: number, memPort?: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start within ${timeoutMs} ms (see ${logPath})`)), timeoutMs)
    const lines = createInterface({ input: child.stdout! })
    let done = false
    lines.on('line', line => {
      if (!done && line.startsWith('{"ready":true')) {
        done = true
        clearTimeout(timer)
        resolve(JSON.parse(line) as { port: number, memPort?: number })
      } else {
        log.write(line + '\n')
      }
    })
    void exit.then(() => {
      clearTimeout(timer)
      if (!done) reject(new Error(`${name} ${exited ?? 'exited'} before it was ready (see ${logPath})`))
    })
  }).catch(async (err: unknown) => {
    child.kill('SIGKILL')
    await exit
    throw err
  })

  const memUrl = `http://127.0.0.1:${ready.memPort ?? ready.port}/__mem`
  return {
    name,
    port: ready.port,
    postPort: ready.port,
    pid: child.pid ?? -1,
    get exited () { return exited },
    logPath,
    async mem () {
      const res = await fetch(memUrl, { signal: AbortSignal.timeout(60_000) })
      if (!res.ok) throw new Error(`${name}: GET /__mem answered ${res.status}`)
      return await res.json() as MemReport
    },
    async stop () {
      if (exited === undefined) {
        child.kill('SIGTERM')
        const timer = setTimeout(() => child.kill('SIGKILL'), 3000)
        await exit
        clearTimeout(timer)
      }
      log.end()
    }
  }
}

/** The soft limit on open files of processes started from here (`ulimit -n`). */
export function fileLimit (): number {
  try {
    const out = execFileSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim()
    return out === 'unlimited' ? Infinity : Number(out)
  } catch {
    return NaN
  }
}
