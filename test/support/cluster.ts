// Cluster test helpers: plugin instances sharing sessions through a real Redis, a plain
// round-robin HTTP proxy in front of them (no stickiness), and a private redis-server for
// the fault tests (so the shared one is never stopped).
import { spawn, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import mcpSse, { type McpSseOptions } from '../../src/index.js'
import { exampleServer, freePort, tsNodeArgs } from './helpers.js'

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'

type Teardown = { teardown: (fn: () => unknown) => void }

export interface Instance {
  app: FastifyInstance
  base: string
}

/** A key prefix of its own per test, so tests never see each other's sessions. */
export function testPrefix (): string {
  return `mcp-test:${randomUUID().slice(0, 8)}:`
}

export async function startInstance (
  t: Teardown,
  opts: Partial<McpSseOptions> & { redis: NonNullable<McpSseOptions['redis']> },
  fastify: FastifyServerOptions = { forceCloseConnections: true }
): Promise<Instance> {
  const app = Fastify(fastify)
  await app.register(mcpSse, { server: () => exampleServer(), ...opts })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  return { app, base: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}` }
}

export interface Proxy {
  base: string
  /** Which upstream each request went to, in order. */
  log: Array<{ method: string, url: string, upstream: number }>
  close: () => Promise<void>
}

/**
 * A plain round-robin reverse proxy: request i goes to upstream i mod n, whatever its
 * session. Streams are piped through as they come.
 */
export async function startProxy (t: Teardown, upstreams: string[]): Promise<Proxy> {
  let next = 0
  const log: Proxy['log'] = []
  const server = http.createServer((req, res) => {
    const index = next++ % upstreams.length
    log.push({ method: req.method ?? '', url: req.url ?? '', upstream: index })
    const target = new URL(req.url ?? '/', upstreams[index])
    const upstream = http.request(target, { method: req.method, headers: { ...req.headers, host: target.host } }, up => {
      res.writeHead(up.statusCode ?? 502, up.headers)
      up.pipe(res)
    })
    upstream.on('error', () => { if (!res.headersSent) res.writeHead(502); res.end() })
    res.on('close', () => upstream.destroy())
    req.pipe(upstream)
  })
  // Longer than a client's own idle timeout (undici keeps sockets 4 s), so that the client
  // always drops an idle socket first: a proxy that closes it as the client reuses it fails
  // that request ("fetch failed"). Teardown closes every connection anyway.
  server.keepAliveTimeout = 30_000
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const close = async (): Promise<void> => {
    server.closeAllConnections()
    await new Promise<void>(resolve => server.close(() => resolve()))
  }
  t.teardown(close)
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, log, close }
}


/** A redis-server of the test's own, on its own port, that the test may stop and restart. */
export class PrivateRedis {
  readonly port: number
  #proc: ChildProcess | undefined

  private constructor (port: number) {
    this.port = port
  }

  static async start (t: Teardown): Promise<PrivateRedis> {
    const redis = new PrivateRedis(await freePort())
    await redis.up()
    t.teardown(() => redis.down())
    return redis
  }

  get url (): string {
    return `redis://127.0.0.1:${this.port}`
  }

  async up (): Promise<void> {
    const proc = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'inherit'] })
    this.#proc = proc
    await new Promise<void>((resolve, reject) => {
      let out = ''
      proc.stdout?.on('data', (chunk: Buffer) => {
        out += chunk.toString()
        if (out.includes('Ready to accept connections')) resolve()
      })
      proc.once('exit', code => reject(new Error(`redis-server exited (${code}): ${out.slice(-500)}`)))
    })
    proc.stdout?.resume()
  }

  async down (): Promise<void> {
    const proc = this.#proc
    if (proc === undefined || proc.exitCode !== null) return
    this.#proc = undefined
    const exited = new Promise<void>(resolve => proc.once('exit', () => resolve()))
    proc.kill('SIGKILL')
    await exited
  }
}

/** An instance in a process of its own (test/support/instance.ts), for the tests that kill one. */
export interface InstanceProcess {
  base: string
  /** SIGKILL, resolved once the process has exited. */
  kill: () => Promise<void>
  signal: (signal: NodeJS.Signals) => void
}

/** Starts test/support/instance.ts on a free port, sharing sessions through Redis under `keyPrefix`; killed when the test ends. */
export async function spawnInstance (t: Teardown, keyPrefix: string, opts: { redisUrl?: string, sessionTtl?: number } = {}): Promise<InstanceProcess> {
  const proc = spawn(process.execPath, [...tsNodeArgs(), 'test/support/instance.ts'], {
    env: { ...process.env, REDIS_URL: opts.redisUrl ?? REDIS_URL, KEY_PREFIX: keyPrefix, ...(opts.sessionTtl === undefined ? {} : { SESSION_TTL: String(opts.sessionTtl) }) },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  t.teardown(() => { proc.kill('SIGKILL') })
  const port = await new Promise<number>((resolve, reject) => {
    proc.stdout?.once('data', (d: Buffer) => resolve(Number(String(d).trim())))
    proc.once('exit', code => reject(new Error(`instance exited ${code}`)))
  })
  const kill = async (): Promise<void> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return
    const exited = new Promise(resolve => proc.once('exit', resolve))
    proc.kill('SIGKILL')
    await exited
  }
  return { base: `http://127.0.0.1:${port}`, kill, signal: sig => { proc.kill(sig) } }
}
