// Starts each benchmark server as a child process and makes sure none outlives the driver.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { createWriteStream, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import type { MemReport } from '../servers/common.js'

/** Every benchmark server: HTTP+SSE first, then Streamable HTTP, then 2026-07-28 only. */
export const SERVER_NAMES = [
  // HTTP+SSE (2024-11-05)
  'fastify-bare', 'fastify-sdk-min', 'node-bare', 'fastify-mcp-sse', 'sdk-express', 'mcp-framework', 'cross-instance',
  // Streamable HTTP (2025 revisions; some serve 2026-07-28 too)
  'fastify-bare-streamable', 'fastify-sdk-min-streamable',
  'fastify-mcp-sse-json', 'fastify-mcp-sse-json-quiet', 'fastify-mcp-sse-stream', 'fastify-mcp-sse-stateless', 'fastify-mcp-sse-stateless-reuse', 'cross-instance-streamable',
  'sdk-express-streamable', 'sdk-express-stateless', 'sdk2-fastify', 'sdk2-fastify-stateless', 'sdk2-handler',
  'mcp-framework-streamable', 'fastify-mcp',
  // 2026-07-28 only
  'fastify-mcp-sse-2026', 'fastify-mcp-sse-2026-reuse'
] as const
export type ServerName = typeof SERVER_NAMES[number]

export interface ServerSpec {
  /** benchmarks/servers/<file>.ts */
  file: string
  /** Extra environment of the process. */
  env?: Record<string, string>
  /** The transport it serves: HTTP+SSE, or Streamable HTTP at /mcp. */
  transport: 'sse' | 'streamable'
  /** Streamable HTTP without sessions (measured once, not per session count). */
  stateless?: boolean
  /** Serves 2025 Streamable HTTP requests (default: every Streamable HTTP server). */
  legacy?: boolean
  /** Serves 2026-07-28 requests (the `modern-*` scenarios). */
  modern?: boolean
  /** Two plugin processes sharing sessions through Redis: sessions opened on one, load sent to the other. */
  pair?: boolean
  /** In the idle-session (scale) scenario of its transport by default. */
  scale?: boolean
  /** What it is, for the chart's colours: this plugin, the official SDK, a ceiling, another package. */
  kind: 'plugin' | 'sdk' | 'ceiling' | 'other'
  /** One line for the tables' legend. */
  title: string
}

export const SERVERS: Record<ServerName, ServerSpec> = {
  'fastify-bare': { file: 'fastify-bare', transport: 'sse', scale: true, kind: 'ceiling', title: 'a bare Fastify route, hand-made reply, no MCP work (the ceiling)' },
  'fastify-sdk-min': { file: 'fastify-sdk-min', transport: 'sse', scale: true, kind: 'ceiling', title: 'Fastify + the SDK\'s McpServer through a transport with no checks (the SDK-path ceiling)' },
  'node-bare': { file: 'node-bare', transport: 'sse', scale: true, kind: 'ceiling', title: 'fastify-bare on node:http alone' },
  'fastify-mcp-sse': { file: 'fastify-mcp-sse', transport: 'sse', scale: true, kind: 'plugin', title: 'this plugin, every feature on' },
  'sdk-express': { file: 'sdk-express', transport: 'sse', scale: true, kind: 'sdk', title: 'the SDK\'s SSEServerTransport with express' },
  'mcp-framework': { file: 'mcp-framework', transport: 'sse', scale: true, kind: 'other', title: 'mcp-framework, its SSE transport' },
  'cross-instance': { file: 'fastify-mcp-sse', transport: 'sse', pair: true, kind: 'plugin', title: 'two fastify-mcp-sse instances over Redis, every POST to the one without the stream' },
  'fastify-bare-streamable': { file: 'fastify-bare-streamable', transport: 'streamable', modern: true, scale: true, kind: 'ceiling', title: 'a bare Fastify route, hand-made answer, no MCP work (the ceiling)' },
  'fastify-sdk-min-streamable': { file: 'fastify-sdk-min-streamable', transport: 'streamable', scale: true, kind: 'ceiling', title: 'Fastify + the SDK\'s McpServer through a transport with no checks (the SDK-path ceiling)' },
  'fastify-mcp-sse-json': { file: 'fastify-mcp-sse-streamable', env: { BENCH_MODE: 'json' }, transport: 'streamable', scale: true, kind: 'plugin', title: 'this plugin, responseMode json, every feature on' },
  'fastify-mcp-sse-json-quiet': { file: 'fastify-mcp-sse-streamable', env: { BENCH_MODE: 'json', BENCH_TELEMETRY: 'off' }, transport: 'streamable', kind: 'plugin', title: 'fastify-mcp-sse-json with metrics and tracing off (what telemetry costs)' },
  'fastify-mcp-sse-stream': { file: 'fastify-mcp-sse-streamable', env: { BENCH_MODE: 'sse' }, transport: 'streamable', kind: 'plugin', title: 'this plugin, responseMode sse, every feature on' },
  'fastify-mcp-sse-stateless': { file: 'fastify-mcp-sse-streamable', env: { BENCH_MODE: 'stateless' }, transport: 'streamable', stateless: true, kind: 'plugin', title: 'this plugin, stateless: true' },
  'fastify-mcp-sse-stateless-reuse': { file: 'fastify-mcp-sse-streamable', env: { BENCH_MODE: 'stateless', BENCH_REUSE: '4' }, transport: 'streamable', stateless: true, kind: 'plugin', title: 'this plugin, stateless: { reuseServers: 4 } (idle servers kept per principal and lent to later POSTs)' },
  'cross-instance-streamable': { file: 'fastify-mcp-sse-streamable', env: { BENCH_MODE: 'json' }, transport: 'streamable', pair: true, kind: 'plugin', title: 'two fastify-mcp-sse-json instances over Redis, sessions opened on one, every POST to the other' },
  'sdk-express-streamable': { file: 'sdk-express-streamable', transport: 'streamable', scale: true, kind: 'sdk', title: 'SDK v1 StreamableHTTPServerTransport with express, sessionful (the SDK path)' },
  'sdk-express-stateless': { file: 'sdk-express-stateless', transport: 'streamable', stateless: true, kind: 'sdk', title: 'SDK v1 StreamableHTTPServerTransport with express, a server per request (the stateless SDK path)' },
  'sdk2-fastify': { file: 'sdk2-fastify', transport: 'streamable', scale: true, kind: 'sdk', title: 'SDK v2 @modelcontextprotocol/fastify + node transport, sessionful' },
  'sdk2-fastify-stateless': { file: 'sdk2-fastify-stateless', transport: 'streamable', stateless: true, kind: 'sdk', title: 'SDK v2 @modelcontextprotocol/fastify + node transport, a server per request' },
  'sdk2-handler': { file: 'sdk2-handler', transport: 'streamable', stateless: true, modern: true, kind: 'sdk', title: 'SDK v2 createMcpHandler on Fastify (2026-07-28, and its stateless legacy fallback)' },
  // Not in the idle-session scenario by default: every reply of its shared server is sent to
  // every session's transport (and each failed send logged), so N sessions cost O(N²).
  'mcp-framework-streamable': { file: 'mcp-framework-streamable', transport: 'streamable', kind: 'other', title: 'mcp-framework, its HTTP stream transport' },
  'fastify-mcp': { file: 'fastify-mcp', transport: 'streamable', scale: true, kind: 'other', title: 'the fastify-mcp package, Streamable HTTP, stateful' },
  'fastify-mcp-sse-2026': { file: 'fastify-mcp-sse-2026', transport: 'streamable', legacy: false, modern: true, stateless: true, kind: 'plugin', title: 'this plugin\'s 2026-07-28 path, SDK v2 servers, a new one per request (modern.reuseServers 0)' },
  'fastify-mcp-sse-2026-reuse': { file: 'fastify-mcp-sse-2026', env: { BENCH_REUSE: '4' }, transport: 'streamable', legacy: false, modern: true, stateless: true, kind: 'plugin', title: 'the same, keeping up to 4 idle servers per caller (modern.reuseServers 4)' }
}

/** Servers of the HTTP+SSE connection-scale scenario. */
export const SCALE_SERVER_NAMES: readonly ServerName[] = SERVER_NAMES.filter(n => SERVERS[n].transport === 'sse' && SERVERS[n].scale === true)
/** Servers of the Streamable HTTP idle-session scenario. */
export const STREAMABLE_SCALE_SERVER_NAMES: readonly ServerName[] = SERVER_NAMES.filter(n => SERVERS[n].transport === 'streamable' && SERVERS[n].scale === true)
/** Sessionful Streamable HTTP servers (those the idle-session scenario can take). */
export const SESSIONFUL_STREAMABLE_NAMES: readonly ServerName[] = SERVER_NAMES.filter(n => SERVERS[n].transport === 'streamable' && SERVERS[n].stateless !== true && SERVERS[n].pair !== true)

/**
 * What each row is compared with: the SDK's own path on the same transport (`sdk`), and the
 * bare route with no MCP work (`ceiling`). Stateless Streamable HTTP rows are compared with
 * the SDK's stateless path; 2026-07-28 rows with createMcpHandler, the SDK's only 2026 path.
 */
export const REFERENCES = {
  sse: { sdk: 'sdk-express', ceiling: 'fastify-bare' },
  streamable: { sdk: 'sdk-express-streamable', ceiling: 'fastify-bare-streamable' },
  'streamable-stateless': { sdk: 'sdk-express-stateless', ceiling: 'fastify-bare-streamable' },
  modern: { sdk: 'sdk2-handler', ceiling: 'fastify-bare-streamable' }
} as const satisfies Record<string, { sdk: ServerName, ceiling: ServerName }>

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
 * Starts a server. A `pair` (cross-instance, cross-instance-streamable) is two plugin
 * processes sharing sessions through Redis: streams and sessions open on the first, POSTs
 * go to the second, so every message crosses Redis.
 */
export async function startServer (name: ServerName, logDir: string, timeoutMs = 60_000): Promise<ServerHandle> {
  const spec = SERVERS[name]
  if (spec.pair === true) {
    const env = { ...spec.env, BENCH_REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', BENCH_KEY_PREFIX: `mcp-bench:${process.pid}:${Date.now()}:` }
    const a = await startProcess(spec.file, `${name}-a`, logDir, timeoutMs, env)
    const b = await startProcess(spec.file, `${name}-b`, logDir, timeoutMs, env).catch(async (err: unknown) => { await a.stop(); throw err })
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
  return await startProcess(spec.file, name, logDir, timeoutMs, spec.env ?? {})
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
