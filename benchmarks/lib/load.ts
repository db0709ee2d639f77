// The HTTP+SSE load scenarios (echo, ping): S initialized sessions per server, autocannon
// POSTing JSON-RPC requests round-robin to their message URLs, SSE readers matching the
// responses on the streams. (Streamable HTTP: streamable.ts.)
import autocannon from 'autocannon'
import { LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js'
import type { SseScenario as Scenario } from './scenarios.js'
import { openSse, pool, type SseConnection } from './sse.js'
import { percentile } from './stats.js'

const ECHO_TEXT = 'hello from the benchmark'
/** The request body of each HTTP+SSE scenario, for request `id`. */
export const BODIES: Record<Scenario, (id: number) => string> = {
  echo: id => `{"jsonrpc":"2.0","id":${id},"method":"tools/call","params":{"name":"echo","arguments":{"text":"${ECHO_TEXT}"}}}`,
  ping: id => `{"jsonrpc":"2.0","id":${id},"method":"ping"}`
}

interface JsonRpcReply { id?: unknown, result?: { content?: Array<{ text?: unknown }>, isError?: unknown }, error?: unknown }

function isGoodReply (scenario: Scenario, msg: JsonRpcReply): boolean {
  if (msg.error !== undefined || typeof msg.result !== 'object' || msg.result === null) return false
  if (scenario === 'ping') return true
  return msg.result.isError !== true && msg.result.content?.[0]?.text === ECHO_TEXT
}

/** One timed run against one server. */
export interface RunSample {
  /** Completed POSTs (any status) per second. */
  reqPerSec: number
  /** POSTs answered 2xx. */
  accepted: number
  /** Accepted POSTs whose JSON-RPC response arrived on the session's stream. */
  answered: number
  /** Responses that arrived but were errors or not the expected result. */
  bad: number
  non2xx: number
  /** Socket errors and timeouts, as autocannon counts them. */
  errors: number
  timeouts: number
  /** POST round trip (request built to 202), ms. Streamable HTTP: the same as e2e. */
  postP50: number
  postP99: number
  /** POST sent to its JSON-RPC response read from the stream (Streamable HTTP: from the POST's response), ms. */
  e2eP50: number
  e2eP99: number
  /** Streams that ended during the run (a server that drops sessions). */
  streamsLost: number
  durationSec: number
  /** ms waited after the load for the last responses. */
  drainMs: number
  /** Streamable HTTP: answers that came as an event stream (the rest came as JSON). */
  sseReplies: number
  /** Progress scenarios: notifications the answered requests asked for, and those that came. */
  progressExpected: number
  progressSeen: number
  /** Progress notifications missing from answers that came as event streams (which could carry them). */
  progressMissingOnStreams: number
}

/**
 * Accounting of one run. A POST's 202 and its response on the stream can come in either
 * order (a bare server writes the reply before answering 202), so ids wait in `awaiting`
 * (accepted, not yet answered) or `early` (answered, 202 not yet seen).
 */
class Tracker {
  readonly sentAt = new Map<number, number>()
  readonly awaiting = new Set<number>()
  readonly early = new Set<number>()
  accepted = 0
  answered = 0
  received = 0
  bad = 0
  postLatencies: number[] = []
  e2eLatencies: number[] = []

  constructor (readonly scenario: Scenario) {}

  response (status: number, id: number, t0: number): void {
    if (status < 200 || status > 299) return
    this.postLatencies.push(performance.now() - t0)
    this.accepted++
    if (this.early.delete(id)) this.answered++
    else this.awaiting.add(id)
  }

  reply (id: number, msg: JsonRpcReply): void {
    const t0 = this.sentAt.get(id)
    if (t0 === undefined) return
    this.sentAt.delete(id)
    this.e2eLatencies.push(performance.now() - t0)
    this.received++
    if (!isGoodReply(this.scenario, msg)) this.bad++
    if (this.awaiting.delete(id)) this.answered++
    else this.early.add(id)
  }

  /** Waits until every accepted POST is answered, or nothing arrives for `stallMs`. */
  async drain (stallMs = 1000, maxMs = 10_000): Promise<number> {
    const start = performance.now()
    let last = this.received
    let lastChange = start
    while (this.awaiting.size > 0) {
      await new Promise(resolve => setTimeout(resolve, 20))
      const now = performance.now()
      if (this.received !== last) {
        last = this.received
        lastChange = now
      }
      if (now - lastChange > stallMs || now - start > maxMs) break
    }
    return performance.now() - start
  }
}

/** Routes what the streams carry: replies to setup requests, or to the current run. */
class Responses {
  #nextId = 1
  #waiters = new Map<number, (msg: JsonRpcReply) => void>()
  current: Tracker | undefined
  unparsable = 0

  nextId (): number {
    return this.#nextId++
  }

  onData = (data: string): void => {
    let msg: JsonRpcReply
    try {
      msg = JSON.parse(data) as JsonRpcReply
    } catch {
      this.unparsable++
      return
    }
    if (typeof msg.id !== 'number') return
    const waiter = this.#waiters.get(msg.id)
    if (waiter !== undefined) {
      this.#waiters.delete(msg.id)
      waiter(msg)
      return
    }
    this.current?.reply(msg.id, msg)
  }

  waitFor (id: number, timeoutMs: number): Promise<JsonRpcReply> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(id)
        reject(new Error(`no response to request ${id} within ${timeoutMs} ms`))
      }, timeoutMs)
      this.#waiters.set(id, msg => {
        clearTimeout(timer)
        resolve(msg)
      })
    })
  }
}

export const responses = new Responses()

async function post (port: number, path: string, body: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    signal: AbortSignal.timeout(15_000)
  })
  await res.arrayBuffer()
  return res.status
}

/** A session the load runs use: its stream, and whether it ended under us. */
export interface LoadSession {
  conn: SseConnection
  lostAt: number | undefined
}

/**
 * Opens `count` sessions into `sessions` and initializes each (initialize, then
 * notifications/initialized). On failure, what was opened is in `sessions` to be closed.
 */
export async function openSessions (port: number, count: number, sessions: LoadSession[], concurrency = 20): Promise<void> {
  await pool(count, concurrency, async () => {
    const session: LoadSession = { conn: undefined as unknown as SseConnection, lostAt: undefined }
    session.conn = await openSse(port, '/sse', responses.onData, () => { session.lostAt ??= Date.now() })
    sessions.push(session)
    const id = responses.nextId()
    const reply = responses.waitFor(id, 15_000)
    reply.catch(() => {}) // awaited below, unless the POST fails first
    const status = await post(port, session.conn.messagePath, JSON.stringify({
      jsonrpc: '2.0',
      id,
      method: 'initialize',
      params: { protocolVersion: LATEST_PROTOCOL_VERSION, capabilities: {}, clientInfo: { name: 'fastify-mcp-sse-bench', version: '1.0.0' } }
    }))
    if (status < 200 || status > 299) throw new Error(`initialize answered HTTP ${status}`)
    const msg = await reply
    if (msg.result === undefined) throw new Error(`initialize failed: ${JSON.stringify(msg)}`)
    const status2 = await post(port, session.conn.messagePath, '{"jsonrpc":"2.0","method":"notifications/initialized"}')
    if (status2 < 200 || status2 > 299) throw new Error(`notifications/initialized answered HTTP ${status2}`)
  })
}

export function closeSessions (sessions: LoadSession[]): void {
  for (const s of sessions) s.conn.close()
}

interface RequestContext { id: number, t0: number }

/** One autocannon run of `durationSec` against `port`, spread round-robin over `sessions`. */
export async function loadRun (port: number, sessions: LoadSession[], scenario: Scenario, durationSec: number, connections: number): Promise<RunSample> {
  const tracker = new Tracker(scenario)
  const body = BODIES[scenario]
  const lostBefore = sessions.filter(s => s.lostAt !== undefined).length
  responses.current = tracker
  try {
    const requests: autocannon.Request[] = sessions.map(s => ({
      method: 'POST',
      path: s.conn.messagePath,
      headers: { 'content-type': 'application/json' },
      setupRequest: (req: autocannon.Request, context: object) => {
        const ctx = context as RequestContext
        ctx.id = responses.nextId()
        ctx.t0 = performance.now()
        tracker.sentAt.set(ctx.id, ctx.t0)
        req.body = body(ctx.id)
        return req
      },
      onResponse: (status: number, _body: string, context: object) => {
        const ctx = context as RequestContext
        tracker.response(status, ctx.id, ctx.t0)
      }
    }))
    const result = await autocannon({
      url: `http://127.0.0.1:${port}`,
      connections,
      duration: durationSec,
      requests
    })
    const drainMs = await tracker.drain()
    const post = tracker.postLatencies.sort((a, b) => a - b)
    const e2e = tracker.e2eLatencies.sort((a, b) => a - b)
    return {
      reqPerSec: (result['2xx'] + result.non2xx) / result.duration,
      accepted: tracker.accepted,
      answered: tracker.answered,
      bad: tracker.bad,
      non2xx: result.non2xx,
      errors: result.errors,
      timeouts: result.timeouts,
      postP50: percentile(post, 50),
      postP99: percentile(post, 99),
      e2eP50: percentile(e2e, 50),
      e2eP99: percentile(e2e, 99),
      streamsLost: sessions.filter(s => s.lostAt !== undefined).length - lostBefore,
      durationSec: result.duration,
      drainMs,
      sseReplies: 0,
      progressExpected: 0,
      progressSeen: 0,
      progressMissingOnStreams: 0
    }
  } finally {
    responses.current = undefined
  }
}
