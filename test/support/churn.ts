// Session churn: open and close SSE sessions with the client leaving at every point, then
// check that nothing is left behind: no session, no keep-alive timer, no listener on the
// responses, no MCP server still reachable, heap back near its start, no unhandled
// rejection, and every in-flight tool call of a closed session cancelled.
//
// `npm run churn` runs 10,000 cycles (CHURN_CYCLES) and prints a report; test/churn.test.ts
// runs 1,000 in CI and asserts on the same report.
import http from 'node:http'
import net, { type AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance } from 'fastify'
import { z } from 'zod'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js'
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import mcpSse from '../../src/index.js'
import { buildExampleServer } from '../../example/mcp-server.js'
import { exposeGc, sleep, type SseEvent } from './fuzz.js'
import { parseSseEvents } from './helpers.js'

/** Where the client leaves (or the server ends the session). */
export const KINDS = [
  'destroy-after-connect', // the request is written and the socket destroyed at once
  'destroy-before-headers', // destroyed a moment later, while the server may be opening the session
  'destroy-after-headers', // destroyed as soon as the response head arrives
  'destroy-after-endpoint', // destroyed after the endpoint event; a POST afterwards must answer 404
  'destroy-mid-progress', // destroyed while countdown streams progress
  'destroy-mid-frame', // destroyed in the middle of a large message frame
  'destroy-during-slow-call', // destroyed while a tool waits on extra.signal
  'server-close-during-slow-call', // app.mcpSessions.close(id) while a tool waits on extra.signal
  'close-race-during-slow-call', // the client leaves and the server closes the session in the same tick
  'sdk-client' // the SDK's own client connects, calls echo, and closes
] as const
export type Kind = typeof KINDS[number]

export interface ChurnOptions {
  cycles: number
  /** Cycles in flight at once. */
  concurrency?: number
  /** Keep-alive interval of the app: short, so pings go out during the churn. */
  keepAliveInterval?: number
  /** Stop starting cycles after this long (the report says how many ran). */
  timeLimitMs?: number
  /** Cycles run (and not counted) before the heap is measured. */
  warmup?: number
  /** Take a heap sample (after gc) every this many cycles. */
  heapEvery?: number
  log?: (line: string) => void
}

export interface ChurnReport {
  cycles: number
  ms: number
  byKind: Record<string, number>
  errors: string[]
  sessionsCreated: number
  serversClosed: number
  sessionsAtEnd: number
  keepAliveTimers: { created: number, cleared: number }
  /** process.getActiveResourcesInfo(): what keeps the loop alive, before and after. */
  activeResources: { before: Record<string, number>, after: Record<string, number> }
  slowCalls: { cycles: number, started: number, aborted: number }
  postsAfterClose: { sent: number, notFound: number }
  /** Listener counts on the SSE responses once their sessions ended. */
  responseListeners: { checked: number, withDrain: number, maxClose: number, baselineClose: number }
  /** After gc: how many of the churned MCP servers / SSE responses are still reachable. */
  reachable: { servers: number, responses: number, of: number }
  /** Heap used after gc: after the warm-up, every `heapEvery` cycles (sessions in flight included), and at the end. */
  heap: { startBytes: number, endBytes: number, samples: Array<{ cycles: number, bytes: number }> }
  unhandledRejections: string[]
  warnings: string[]
  /** Server connections that carried a request and are still open once idle ones are closed. */
  connectionsAtEnd: number
  /** Connections a client opened and never used (the SDK client's fetch pool does). */
  spareConnectionsAtEnd: number
}

interface State {
  sessionsCreated: number
  serversClosed: number
  slowStarted: number
  slowAborted: number
  servers: Array<WeakRef<McpServer>>
  responses: Array<WeakRef<http.ServerResponse>>
}

/** The example server plus `slow`: waits on extra.signal, telling the client (progress) once it has started. */
function churnServer (state: State): McpServer {
  const server = buildExampleServer()
  server.registerTool('slow', { inputSchema: { ms: z.number().int().min(0).max(60_000) } }, async ({ ms }, extra) => {
    state.slowStarted++
    const token = extra._meta?.progressToken
    if (token !== undefined) await extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress: 0 } })
    await new Promise<void>(resolve => {
      if (extra.signal.aborted) { state.slowAborted++; resolve(); return }
      const timer = setTimeout(resolve, ms)
      extra.signal.addEventListener('abort', () => { clearTimeout(timer); state.slowAborted++; resolve() }, { once: true })
    })
    return { content: [{ type: 'text', text: 'slept' }] }
  })
  state.sessionsCreated++
  server.server.onclose = () => { state.serversClosed++ }
  state.servers.push(new WeakRef(server))
  return server
}

function countResources (): Record<string, number> {
  const out: Record<string, number> = {}
  for (const r of process.getActiveResourcesInfo()) out[r] = (out[r] ?? 0) + 1
  return out
}

/** A raw SSE stream: events as they come, with a bounded wait for one that matches. */
export class Stream {
  events: SseEvent[] = []
  bytes = 0
  ended = false
  #waiters: Array<() => void> = []
  #buffer = ''

  constructor (readonly req: http.ClientRequest, readonly res: http.IncomingMessage) {
    res.setEncoding('utf8')
    res.on('data', (chunk: string) => {
      this.bytes += chunk.length
      this.#buffer = parseSseEvents(this.#buffer + chunk, this.events)
      this.#wake()
    })
    res.on('error', () => {})
    res.on('close', () => { this.ended = true; this.#wake() })
  }

  #wake (): void {
    const w = this.#waiters
    this.#waiters = []
    for (const fn of w) fn()
  }

  static open (port: number, timeoutMs: number): Promise<Stream> {
    return new Promise((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/sse', agent: false, headers: { accept: 'text/event-stream' } })
      const timer = setTimeout(() => { req.destroy(); reject(new Error('no response head')) }, timeoutMs)
      req.on('error', err => { clearTimeout(timer); reject(err) })
      req.on('response', res => { clearTimeout(timer); resolve(new Stream(req, res)) })
    })
  }

  /** Waits (bounded) until `test` holds. */
  async until (test: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!test()) {
      if (this.ended) throw new Error(`stream ended while waiting for ${what}`)
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for ${what}`)
      await new Promise<void>(resolve => {
        const timer = setTimeout(resolve, left)
        this.#waiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
  }

  async endpoint (timeoutMs: number): Promise<string> {
    await this.until(() => this.events.some(e => e.event === 'endpoint'), timeoutMs, 'the endpoint event')
    return (this.events.find(e => e.event === 'endpoint') as SseEvent).data
  }

  destroy (): void { this.req.destroy() }
}

export function postJson (port: number, agent: http.Agent, path: string, body: unknown, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const payload = Buffer.from(JSON.stringify(body))
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path, agent, headers: { 'content-type': 'application/json', 'content-length': String(payload.length) } })
    const timer = setTimeout(() => { req.destroy(new Error(`POST ${path} timed out`)) }, timeoutMs)
    req.on('error', err => { clearTimeout(timer); reject(err) })
    req.on('response', res => {
      res.resume()
      res.on('end', () => { clearTimeout(timer); resolve(res.statusCode ?? 0) })
    })
    req.end(payload)
  })
}

const TIMEOUT = 10_000

async function cycle (kind: Kind, ctx: { app: FastifyInstance, port: number, agent: http.Agent, state: State, report: ChurnReport }): Promise<void> {
  const { app, port, agent, report } = ctx
  switch (kind) {
    case 'destroy-after-connect':
    case 'destroy-before-headers': {
      await new Promise<void>((resolve, reject) => {
        const socket = net.connect(port, '127.0.0.1')
        socket.on('error', () => {})
        socket.on('connect', () => {
          socket.write('GET /sse HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n')
          if (kind === 'destroy-after-connect') { socket.destroy(); resolve(); return }
          setTimeout(() => { socket.destroy(); resolve() }, Math.random() * 2)
        })
        setTimeout(() => { socket.destroy(); reject(new Error('could not connect')) }, TIMEOUT).unref()
      })
      return
    }
    case 'destroy-after-headers': {
      const s = await Stream.open(port, TIMEOUT)
      s.destroy()
      return
    }
    case 'sdk-client': {
      const client = new Client({ name: 'churn', version: '1.0.0' })
      await client.connect(new SSEClientTransport(new URL(`http://127.0.0.1:${port}/sse`)))
      const result = await client.callTool({ name: 'echo', arguments: { text: 'churn' } }, undefined, { timeout: TIMEOUT })
      const first = (result.content as Array<{ type: string, text?: string }>)[0]
      if (first?.text !== 'churn') throw new Error(`echo came back as ${JSON.stringify(result)}`)
      await client.close()
      return
    }
    default: break
  }

  const s = await Stream.open(port, TIMEOUT)
  try {
    const path = await s.endpoint(TIMEOUT)
    const sessionId = new URL(path, 'http://x').searchParams.get('sessionId') as string
    const session = app.mcpSessions.get(sessionId)
    if (kind === 'destroy-after-endpoint') {
      s.destroy()
      const deadline = Date.now() + TIMEOUT
      while (app.mcpSessions.has(sessionId) && Date.now() < deadline) await sleep(2)
      report.postsAfterClose.sent++
      const status = await postJson(port, agent, path, { jsonrpc: '2.0', id: 1, method: 'ping' }, TIMEOUT)
      if (status === 404) report.postsAfterClose.notFound++
      else throw new Error(`a POST to a closed session answered ${status}`)
      return
    }
    if (kind === 'destroy-mid-progress') {
      await postJson(port, agent, path, { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'countdown', arguments: { from: 50, intervalMs: 2 }, _meta: { progressToken: 'p' } } }, TIMEOUT)
      await s.until(() => s.events.filter(e => e.event === 'message').length >= 2, TIMEOUT, 'progress')
      s.destroy()
      return
    }
    if (kind === 'destroy-mid-frame') {
      // A reply of ~1 MB: the client leaves after its first bytes, mid-frame.
      const before = s.bytes
      await postJson(port, agent, path, { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: { text: 'x'.repeat(1024 * 1024) } } }, TIMEOUT)
      await s.until(() => s.bytes > before + 1, TIMEOUT, 'the first bytes of the reply')
      s.destroy()
      return
    }
    // A slow call: wait for the tool to say it has started, then end the session.
    report.slowCalls.cycles++
    await postJson(port, agent, path, { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'slow', arguments: { ms: 60_000 }, _meta: { progressToken: 's' } } }, TIMEOUT)
    await s.until(() => s.events.some(e => e.event === 'message' && e.data.includes('notifications/progress')), TIMEOUT, 'the slow call to start')
    if (kind === 'destroy-during-slow-call') {
      s.destroy()
    } else if (kind === 'close-race-during-slow-call') {
      s.destroy()
      await app.mcpSessions.close(sessionId)
    } else {
      if (session === undefined || !(await app.mcpSessions.close(sessionId))) throw new Error('the session to close was not in the store')
      await s.until(() => s.ended, TIMEOUT, 'the server to end the stream').catch(err => {
        if (!s.ended) throw err
      })
    }
  } finally {
    s.destroy()
  }
}

/** In a function of its own: a dereferenced response must not linger in runChurn's frame. */
function checkListeners (state: State, report: ChurnReport): void {
  for (const ref of state.responses) {
    const res = ref.deref()
    if (res === undefined) continue
    report.responseListeners.checked++
    if (res.listenerCount('drain') > 0) report.responseListeners.withDrain++
    report.responseListeners.maxClose = Math.max(report.responseListeners.maxClose, res.listenerCount('close'))
  }
}

async function waitFor (test: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (!test()) {
    if (Date.now() > deadline) return false
    await sleep(10)
  }
  return true
}

export async function runChurn (opts: ChurnOptions): Promise<ChurnReport> {
  const concurrency = opts.concurrency ?? 8
  const keepAliveInterval = opts.keepAliveInterval ?? 257
  const timeLimitMs = opts.timeLimitMs ?? 30 * 60_000
  const warmup = opts.warmup ?? 100
  const heapEvery = opts.heapEvery ?? 2500
  const log = opts.log ?? (() => {})
  const gc = exposeGc()

  const report: ChurnReport = {
    cycles: 0,
    ms: 0,
    byKind: {},
    errors: [],
    sessionsCreated: 0,
    serversClosed: 0,
    sessionsAtEnd: -1,
    keepAliveTimers: { created: 0, cleared: 0 },
    activeResources: { before: {}, after: {} },
    slowCalls: { cycles: 0, started: 0, aborted: 0 },
    postsAfterClose: { sent: 0, notFound: 0 },
    responseListeners: { checked: 0, withDrain: 0, maxClose: 0, baselineClose: 0 },
    reachable: { servers: 0, responses: 0, of: 0 },
    heap: { startBytes: 0, endBytes: 0, samples: [] },
    unhandledRejections: [],
    warnings: [],
    connectionsAtEnd: -1,
    spareConnectionsAtEnd: -1
  }
  const onRejection = (reason: unknown): void => { report.unhandledRejections.push(String((reason as Error)?.stack ?? reason)) }
  const onWarning = (w: Error): void => { report.warnings.push(`${w.name}: ${w.message}`) }
  process.on('unhandledRejection', onRejection)
  process.on('warning', onWarning)

  // Count the keep-alive intervals the transport creates and clears (it calls the globals),
  // without holding the timers (they would keep their transports alive).
  const ours = new WeakSet<object>()
  const originalSet = globalThis.setInterval
  const originalClear = globalThis.clearInterval
  globalThis.setInterval = ((fn: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) => {
    const timer = originalSet(fn, ms, ...args)
    if (ms === keepAliveInterval) { ours.add(timer); report.keepAliveTimers.created++ }
    return timer
  }) as typeof setInterval
  globalThis.clearInterval = ((timer: Parameters<typeof clearInterval>[0]) => {
    if (typeof timer === 'object' && timer !== null && ours.has(timer)) { ours.delete(timer); report.keepAliveTimers.cleared++ }
    originalClear(timer)
  }) as typeof clearInterval

  const state: State = { sessionsCreated: 0, serversClosed: 0, slowStarted: 0, slowAborted: 0, servers: [], responses: [] }
  const app = Fastify({ forceCloseConnections: true })
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency * 2 })
  try {
    await app.register(mcpSse, { server: () => churnServer(state), keepAliveInterval, maxSessions: 100_000 })
    await app.listen({ port: 0, host: '127.0.0.1' })
    const port = (app.server.address() as AddressInfo).port
    const sockets = new Set<net.Socket>()
    app.server.on('connection', (so: net.Socket) => { sockets.add(so); so.once('close', () => sockets.delete(so)) })
    // The SSE responses, weakly: their listeners are checked once their sessions end.
    app.server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      if (req.method === 'GET' && req.url?.startsWith('/sse') === true) state.responses.push(new WeakRef(res))
    })
    // What a response that never streamed carries: the baseline for 'close' listeners.
    const plain = await new Promise<http.ServerResponse>(resolve => {
      app.server.once('request', (_req: http.IncomingMessage, res: http.ServerResponse) => { res.once('finish', () => setImmediate(() => resolve(res))) })
      http.get({ host: '127.0.0.1', port, path: '/nope', agent: false }, r => r.resume())
    })
    report.responseListeners.baselineClose = plain.listenerCount('close')

    const ctx = { app, port, agent, state, report }
    let next = 0
    let warm = false
    const started = Date.now()
    let lastLog = started
    const total = opts.cycles + warmup
    const worker = async (): Promise<void> => {
      while (next < total && Date.now() - started < timeLimitMs) {
        const i = next++
        const kind = KINDS[i % KINDS.length] as Kind
        try {
          await cycle(kind, ctx)
        } catch (err) {
          report.errors.push(`${kind}: ${String((err as Error).message ?? err)}`)
        }
        if (i >= warmup) {
          report.cycles++
          report.byKind[kind] = (report.byKind[kind] ?? 0) + 1
          if (report.cycles % heapEvery === 0) {
            gc()
            report.heap.samples.push({ cycles: report.cycles, bytes: process.memoryUsage().heapUsed })
          }
        }
        if (Date.now() - lastLog > 5000) {
          lastLog = Date.now()
          log(`  ${report.cycles} cycles, ${app.mcpSessions.size} sessions open, heap ${(process.memoryUsage().heapUsed / 1048576).toFixed(0)} MB, rss ${(process.memoryUsage().rss / 1048576).toFixed(0)} MB`)
        }
      }
    }
    // Warm-up first (caches, JIT, pools), then measure the heap and the loop's resources.
    const warmWorkers = Array.from({ length: concurrency }, async () => {
      while (next < warmup) {
        const i = next++
        try { await cycle(KINDS[i % KINDS.length] as Kind, ctx) } catch (err) { report.errors.push(`warm-up: ${String((err as Error).message ?? err)}`) }
      }
    })
    await Promise.all(warmWorkers)
    await waitFor(() => app.mcpSessions.size === 0 && state.slowAborted === state.slowStarted, TIMEOUT)
    warm = true
    gc()
    await sleep(50)
    gc()
    report.heap.startBytes = process.memoryUsage().heapUsed
    report.activeResources.before = countResources()
    const workStarted = Date.now()
    await Promise.all(Array.from({ length: concurrency }, worker))
    report.ms = Date.now() - workStarted

    // Everything the churn opened must end by itself.
    await waitFor(() => app.mcpSessions.size === 0, TIMEOUT)
    await waitFor(() => state.slowAborted === state.slowStarted && state.serversClosed === state.sessionsCreated, TIMEOUT)
    report.sessionsAtEnd = app.mcpSessions.size
    report.sessionsCreated = state.sessionsCreated
    report.serversClosed = state.serversClosed
    report.slowCalls.started = state.slowStarted
    report.slowCalls.aborted = state.slowAborted
    agent.destroy()
    // The SDK clients' fetch pool keeps idle keep-alive connections (undici honours the
    // server's 72 s keep-alive hint) and may open spares that never send a request: close
    // the idle ones, and count only connections that carried bytes.
    const connDeadline = Date.now() + TIMEOUT
    const busy = (): net.Socket[] => [...sockets].filter(so => so.bytesRead > 0)
    do {
      app.server.closeIdleConnections()
      await sleep(10)
    } while (busy().length > 0 && Date.now() < connDeadline)
    report.connectionsAtEnd = busy().length
    report.spareConnectionsAtEnd = sockets.size - report.connectionsAtEnd
    await sleep(50)
    report.activeResources.after = countResources()

    checkListeners(state, report)
    gc()
    await sleep(100)
    gc()
    report.heap.endBytes = process.memoryUsage().heapUsed
    report.reachable.of = state.servers.length
    report.reachable.servers = state.servers.filter(r => r.deref() !== undefined).length
    report.reachable.responses = state.responses.filter(r => r.deref() !== undefined).length
    if (!warm) report.errors.push('the warm-up did not finish')
  } finally {
    globalThis.setInterval = originalSet
    globalThis.clearInterval = originalClear
    agent.destroy()
    await app.close()
    process.off('unhandledRejection', onRejection)
    process.off('warning', onWarning)
  }
  return report
}

/** What must hold after a churn; an empty list when all is well. */
export function churnProblems (r: ChurnReport, opts: { maxHeapGrowthBytes: number }): string[] {
  const p: string[] = []
  if (r.errors.length > 0) p.push(`${r.errors.length} cycles failed: ${[...new Set(r.errors)].slice(0, 5).join('; ')}`)
  if (r.sessionsAtEnd !== 0) p.push(`${r.sessionsAtEnd} sessions left open`)
  if (r.serversClosed !== r.sessionsCreated) p.push(`${r.sessionsCreated} MCP servers made, ${r.serversClosed} closed`)
  if (r.keepAliveTimers.created !== r.keepAliveTimers.cleared) p.push(`${r.keepAliveTimers.created} keep-alive timers created, ${r.keepAliveTimers.cleared} cleared`)
  if (r.slowCalls.started !== r.slowCalls.cycles) p.push(`${r.slowCalls.cycles} slow-call cycles, ${r.slowCalls.started} calls started`)
  if (r.slowCalls.aborted !== r.slowCalls.started) p.push(`${r.slowCalls.started} slow calls started, ${r.slowCalls.aborted} aborted when their session closed`)
  if (r.postsAfterClose.notFound !== r.postsAfterClose.sent) p.push('a POST to a closed session did not answer 404')
  if (r.responseListeners.withDrain > 0) p.push(`${r.responseListeners.withDrain} ended responses still have 'drain' listeners`)
  if (r.responseListeners.maxClose > r.responseListeners.baselineClose) p.push(`ended responses have up to ${r.responseListeners.maxClose} 'close' listeners (a plain response has ${r.responseListeners.baselineClose})`)
  if (r.reachable.servers > 0) p.push(`${r.reachable.servers} of ${r.reachable.of} MCP servers still reachable after gc`)
  if (r.reachable.responses > 0) p.push(`${r.reachable.responses} SSE responses still reachable after gc`)
  for (const kind of ['Timeout', 'TCPServerWrap']) {
    if ((r.activeResources.after[kind] ?? 0) > (r.activeResources.before[kind] ?? 0)) p.push(`${kind}: ${r.activeResources.before[kind] ?? 0} active before, ${r.activeResources.after[kind] ?? 0} after`)
  }
  if (r.connectionsAtEnd !== 0) p.push(`${r.connectionsAtEnd} server connections left`)
  if (r.heap.endBytes - r.heap.startBytes > opts.maxHeapGrowthBytes) p.push(`heap grew by ${((r.heap.endBytes - r.heap.startBytes) / 1048576).toFixed(1)} MB`)
  if (r.unhandledRejections.length > 0) p.push(`unhandled rejections: ${r.unhandledRejections.slice(0, 3).join('; ')}`)
  if (r.warnings.length > 0) p.push(`process warnings: ${[...new Set(r.warnings)].slice(0, 3).join('; ')}`)
  return p
}

/** The command-line run (`npm run churn`): a report on stdout, exit code 1 on any problem. */
export async function main (): Promise<void> {
  const cycles = Number(process.env.CHURN_CYCLES ?? 10_000)
  const concurrency = Number(process.env.CHURN_CONCURRENCY ?? 8)
  const log = (line: string): void => { process.stdout.write(line + '\n') }
  log(`churn: ${cycles} cycles, ${concurrency} at a time, kinds: ${KINDS.join(', ')}`)
  const r = await runChurn({ cycles, concurrency, log })
  const mb = (n: number): string => (n / 1048576).toFixed(1)
  const problems = churnProblems(r, { maxHeapGrowthBytes: 8 * 1024 * 1024 })
  log('')
  log(`cycles:               ${r.cycles} in ${(r.ms / 1000).toFixed(1)} s (${(r.cycles / (r.ms / 1000)).toFixed(0)}/s)`)
  log(`by kind:              ${Object.entries(r.byKind).map(([k, v]) => `${k} ${v}`).join(', ')}`)
  log(`failed cycles:        ${r.errors.length}`)
  log(`sessions:             ${r.sessionsCreated} MCP servers made (warm-up included), ${r.serversClosed} closed, ${r.sessionsAtEnd} open at the end`)
  log(`keep-alive timers:    ${r.keepAliveTimers.created} created, ${r.keepAliveTimers.cleared} cleared`)
  log(`slow calls:           ${r.slowCalls.cycles} cycles, ${r.slowCalls.started} started, ${r.slowCalls.aborted} aborted by the session's end`)
  log(`POST after close:     ${r.postsAfterClose.notFound}/${r.postsAfterClose.sent} answered 404`)
  log(`response listeners:   ${r.responseListeners.checked} ended responses still reachable before gc; with 'drain': ${r.responseListeners.withDrain}; 'close' at most ${r.responseListeners.maxClose} (plain response: ${r.responseListeners.baselineClose})`)
  log(`active resources:     before ${JSON.stringify(r.activeResources.before)}, after ${JSON.stringify(r.activeResources.after)}`)
  log(`reachable after gc:   ${r.reachable.servers}/${r.reachable.of} MCP servers, ${r.reachable.responses} SSE responses`)
  log(`heap used after gc:   ${mb(r.heap.startBytes)} MB after warm-up -> ${mb(r.heap.endBytes)} MB at the end (${((r.heap.endBytes - r.heap.startBytes) / Math.max(1, r.cycles)).toFixed(0)} bytes/cycle, the test's own bookkeeping included)`)
  log(`heap along the way:   ${r.heap.samples.map(x => `${x.cycles}: ${mb(x.bytes)} MB`).join(', ')} (with ${concurrency} cycles in flight)`)
  log(`server connections:   ${r.connectionsAtEnd} busy at the end (${r.spareConnectionsAtEnd} never-used spares of the SDK clients' fetch pool)`)
  log(`unhandled rejections: ${r.unhandledRejections.length}, warnings: ${r.warnings.length}`)
  for (const p of problems) log(`PROBLEM: ${p}`)
  log(problems.length > 0 ? 'churn: FAILED' : 'churn: passed')
  process.exitCode = problems.length > 0 ? 1 : 0
}

