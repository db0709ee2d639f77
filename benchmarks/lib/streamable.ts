// The Streamable HTTP load scenarios: autocannon POSTing JSON-RPC requests to `/mcp`, and
// every answer read from the POST's own response: a JSON body, or an event stream parsed
// for the JSON-RPC response (and the progress notifications before it). An accepted POST
// (2xx) whose body holds no response to its request id is counted as accepted but not
// answered: broken, not fast, as for HTTP+SSE.
//   streamable-*  2025 revisions: sessions initialized first (initialize, then
//                 notifications/initialized), requests round-robin over them with
//                 Mcp-Session-Id and MCP-Protocol-Version; stateless servers get no session.
//   modern-*      2026-07-28: no initialize, no session; every request carries the
//                 protocol version, client info and capabilities in its `_meta`, and the
//                 MCP-Protocol-Version, Mcp-Method and Mcp-Name headers, as
//                 @modelcontextprotocol/client 2.4 sends them.
import { Agent, request } from 'node:http'
import autocannon from 'autocannon'
import type { RunSample } from './load.js'
import { familyOf, type HttpScenario } from './scenarios.js'
import { pool } from './sse.js'
import { percentile } from './stats.js'

export const MCP_PATH = '/mcp'
export const ACCEPT = 'application/json, text/event-stream'
/** The revision sessions ask for in `initialize` (and stateless requests name in MCP-Protocol-Version). */
export const LEGACY_VERSION = '2025-11-25'
export const MODERN_VERSION = '2026-07-28'
/** Progress notifications the `progress` tool is asked for. */
export const PROGRESS_STEPS = 2

const ECHO_TEXT = 'hello from the benchmark'
const CLIENT_INFO = { name: 'fastify-mcp-sse-bench', version: '1.0.0' }
const MODERN_META = JSON.stringify({
  'io.modelcontextprotocol/protocolVersion': MODERN_VERSION,
  'io.modelcontextprotocol/clientInfo': CLIENT_INFO,
  'io.modelcontextprotocol/clientCapabilities': {}
}).slice(1, -1)

/** A Streamable HTTP session as the driver holds it (id undefined: no session, stateless or 2026). */
export interface StreamableSession {
  id: string | undefined
  /** The negotiated revision, sent as MCP-Protocol-Version. */
  protocolVersion: string
}

export const NO_SESSION: StreamableSession = { id: undefined, protocolVersion: LEGACY_VERSION }

interface JsonRpcMessage {
  id?: unknown
  method?: unknown
  params?: { progressToken?: unknown }
  result?: { content?: Array<{ text?: unknown }>, isError?: unknown, tools?: Array<{ name?: unknown }>, protocolVersion?: unknown }
  error?: unknown
}

interface ScenarioSpec {
  body: (id: number) => string
  headers: Record<string, string>
  progress: number
  check: (msg: JsonRpcMessage) => boolean
}

const okResult = (msg: JsonRpcMessage): boolean => msg.error === undefined && typeof msg.result === 'object' && msg.result !== null && msg.result.isError !== true
const hasTools = (msg: JsonRpcMessage): boolean => {
  const names = Array.isArray(msg.result?.tools) ? msg.result.tools.map(t => t.name) : []
  return names.includes('echo') && names.includes('progress')
}

function spec (scenario: HttpScenario): ScenarioSpec {
  const modern = familyOf(scenario) === 'modern'
  // The 2026 envelope goes into `_meta` (after a progress token, as the v2 client puts it).
  const meta = (progressToken: number | undefined): string => {
    const parts = [progressToken === undefined ? '' : `"progressToken":${progressToken}`, modern ? MODERN_META : ''].filter(p => p !== '')
    return parts.length === 0 ? '' : `,"_meta":{${parts.join(',')}}`
  }
  const headers: Record<string, string> = modern ? { 'mcp-protocol-version': MODERN_VERSION } : {}
  switch (scenario) {
    case 'streamable-echo':
    case 'modern-echo':
      return {
        body: id => `{"jsonrpc":"2.0","id":${id},"method":"tools/call","params":{"name":"echo","arguments":{"text":"${ECHO_TEXT}"}${meta(undefined)}}}`,
        headers: modern ? { ...headers, 'mcp-method': 'tools/call', 'mcp-name': 'echo' } : headers,
        progress: 0,
        check: msg => okResult(msg) && msg.result?.content?.[0]?.text === ECHO_TEXT
      }
    case 'streamable-progress':
    case 'modern-progress':
      return {
        body: id => `{"jsonrpc":"2.0","id":${id},"method":"tools/call","params":{"name":"progress","arguments":{"steps":${PROGRESS_STEPS}}${meta(id)}}}`,
        headers: modern ? { ...headers, 'mcp-method': 'tools/call', 'mcp-name': 'progress' } : headers,
        progress: PROGRESS_STEPS,
        check: msg => okResult(msg) && msg.result?.content?.[0]?.text === `done ${PROGRESS_STEPS}`
      }
    case 'streamable-list':
    case 'modern-list':
      return {
        body: id => modern ? `{"jsonrpc":"2.0","id":${id},"method":"tools/list","params":{${meta(undefined).slice(1)}}}` : `{"jsonrpc":"2.0","id":${id},"method":"tools/list"}`,
        headers: modern ? { ...headers, 'mcp-method': 'tools/list' } : headers,
        progress: 0,
        check: msg => okResult(msg) && hasTools(msg)
      }
  }
}

/** What one POST's response carried for request `id`. */
export interface Answer {
  /** The JSON-RPC response to `id`, if the body had it. */
  response: JsonRpcMessage | undefined
  /** Progress notifications for `id` before it. */
  progress: number
  /** The body was an event stream. */
  sse: boolean
}

/** Reads a POST's response body: JSON (one message or a batch), or an event stream. */
export function readAnswer (contentType: string | undefined, body: string, id: number | string): Answer {
  const answer: Answer = { response: undefined, progress: 0, sse: false }
  const take = (msg: JsonRpcMessage): void => {
    if (typeof msg !== 'object' || msg === null) return
    if (msg.method === 'notifications/progress' && msg.params?.progressToken === id) answer.progress++
    else if (msg.id === id && msg.method === undefined && answer.response === undefined) answer.response = msg
  }
  if (contentType !== undefined && contentType.toLowerCase().startsWith('text/event-stream')) {
    answer.sse = true
    for (const frame of body.split(/\r?\n\r?\n/)) {
      let event = 'message'
      let data = ''
      for (const line of frame.split(/\r?\n/)) {
        if (line.startsWith('event:')) event = line.slice(6).trim()
        else if (line.startsWith('data:')) data += (data === '' ? '' : '\n') + line.slice(line.charCodeAt(5) === 32 ? 6 : 5)
      }
      if (event !== 'message' || data.trim() === '') continue
      try {
        take(JSON.parse(data) as JsonRpcMessage)
      } catch {}
    }
    return answer
  }
  try {
    const parsed = JSON.parse(body) as JsonRpcMessage | JsonRpcMessage[]
    for (const m of Array.isArray(parsed) ? parsed : [parsed]) take(m)
  } catch {}
  return answer
}

let nextSetupId = 1_000_000_000

function requestHeaders (session: StreamableSession, extra: Record<string, string> = {}): Record<string, string> {
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: ACCEPT, 'mcp-protocol-version': session.protocolVersion, ...extra }
  if (session.id !== undefined) headers['mcp-session-id'] = session.id
  return headers
}

// Setup requests (initialize, notifications/initialized, DELETE: 30,000 of them for 10,000
// idle sessions) go through node:http with keep-alive rather than fetch, which costs the
// driver (sharing the cores with the server) several times more CPU per request.
const agent = new Agent({ keepAlive: true, maxSockets: 256 })

interface Reply { status: number, contentType: string | undefined, sessionId: string | undefined, text: string }

function send (port: number, method: 'POST' | 'DELETE', headers: Record<string, string>, body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1',
      port,
      path: MCP_PATH,
      method,
      agent,
      timeout: 15_000,
      headers: body === undefined ? headers : { ...headers, 'content-length': String(Buffer.byteLength(body)) }
    }, res => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { text += chunk })
      res.on('error', reject)
      res.on('end', () => {
        const sessionId = res.headers['mcp-session-id']
        resolve({ status: res.statusCode ?? 0, contentType: res.headers['content-type'], sessionId: typeof sessionId === 'string' ? sessionId : undefined, text })
      })
    })
    req.on('timeout', () => req.destroy(new Error(`${method} ${MCP_PATH}: no answer within 15 s`)))
    req.on('error', reject)
    req.end(body)
  })
}

const post = (port: number, headers: Record<string, string>, body: string): Promise<Reply> => send(port, 'POST', headers, body)

/**
 * Initializes a Streamable HTTP session on the server at `port`: `initialize`, then
 * `notifications/initialized`, as a client does. `sessionful`: the answer must carry an
 * Mcp-Session-Id.
 */
export async function initializeSession (port: number, sessionful: boolean): Promise<StreamableSession> {
  const id = nextSetupId++
  const init = await post(port, { 'content-type': 'application/json', accept: ACCEPT }, JSON.stringify({
    jsonrpc: '2.0', id, method: 'initialize', params: { protocolVersion: LEGACY_VERSION, capabilities: {}, clientInfo: CLIENT_INFO }
  }))
  if (init.status < 200 || init.status > 299) throw new Error(`initialize answered HTTP ${init.status}: ${init.text.slice(0, 200)}`)
  const answer = readAnswer(init.contentType, init.text, id)
  const version = answer.response?.result?.protocolVersion
  if (typeof version !== 'string') throw new Error(`initialize failed: ${init.text.slice(0, 300)}`)
  const sessionId = init.sessionId
  if (sessionful && sessionId === undefined) throw new Error('initialize answered without an Mcp-Session-Id')
  const session: StreamableSession = { id: sessionId, protocolVersion: version }
  const done = await post(port, requestHeaders(session), '{"jsonrpc":"2.0","method":"notifications/initialized"}')
  if (done.status < 200 || done.status > 299) throw new Error(`notifications/initialized answered HTTP ${done.status}: ${done.text.slice(0, 200)}`)
  return session
}

/** Ends a session (DELETE with its Mcp-Session-Id); the status, or 0 when the request failed. */
export async function deleteSession (port: number, session: StreamableSession): Promise<number> {
  if (session.id === undefined) return 0
  try {
    // No Content-Type: there is no body (Fastify answers 400 to an empty JSON body).
    const { 'content-type': _, ...headers } = requestHeaders(session)
    return (await send(port, 'DELETE', headers)).status
  } catch {
    return 0
  }
}

/** Opens and initializes `count` sessions into `sessions` (what was opened is there even on failure). */
export async function openStreamableSessions (port: number, count: number, sessions: StreamableSession[], concurrency = 20): Promise<void> {
  await pool(count, concurrency, async () => { sessions.push(await initializeSession(port, true)) })
}

export async function closeStreamableSessions (port: number, sessions: StreamableSession[], concurrency = 20): Promise<void> {
  const all = sessions.splice(0)
  await pool(all.length, concurrency, async i => { await deleteSession(port, all[i]!) })
}

/** What a scenario POSTs: one target per session (path and headers), and the body for an id. */
export function requestTemplate (sessions: StreamableSession[], scenario: HttpScenario): { targets: Array<{ path: string, headers: Record<string, string> }>, body: (id: number) => string } {
  const s = spec(scenario)
  return {
    targets: (sessions.length === 0 ? [NO_SESSION] : sessions).map(session => ({ path: MCP_PATH, headers: requestHeaders(session, s.headers) })),
    body: s.body
  }
}

interface RequestContext { id: number, t0: number }

function headerValue (headers: Record<string, unknown> | undefined, name: string): string | undefined {
  if (headers === undefined) return undefined
  for (const key of Object.keys(headers)) {
    if (key.toLowerCase() === name) {
      const v = headers[key]
      return Array.isArray(v) ? String(v[0]) : typeof v === 'string' ? v : undefined
    }
  }
  return undefined
}

/**
 * One autocannon run of `durationSec` against `port`, POSTing `scenario`'s request
 * round-robin over `sessions` (one entry with no id for stateless servers and 2026-07-28).
 */
export async function streamableRun (port: number, sessions: StreamableSession[], scenario: HttpScenario, durationSec: number, connections: number): Promise<RunSample> {
  const s = spec(scenario)
  let accepted = 0
  let answered = 0
  let bad = 0
  let sseReplies = 0
  let progressExpected = 0
  let progressSeen = 0
  let progressMissingOnStreams = 0
  const latencies: number[] = []
  let nextId = 1
  const requests: autocannon.Request[] = (sessions.length === 0 ? [NO_SESSION] : sessions).map(session => ({
    method: 'POST',
    path: MCP_PATH,
    headers: requestHeaders(session, s.headers),
    setupRequest: (req: autocannon.Request, context: object) => {
      const ctx = context as RequestContext
      ctx.id = nextId++
      ctx.t0 = performance.now()
      req.body = s.body(ctx.id)
      return req
    },
    onResponse: (status: number, body: string, context: object, headers?: Record<string, unknown>) => {
      const ctx = context as RequestContext
      if (status < 200 || status > 299) return
      latencies.push(performance.now() - ctx.t0)
      accepted++
      const answer = readAnswer(headerValue(headers, 'content-type'), body, ctx.id)
      if (answer.sse) sseReplies++
      if (answer.response === undefined) return
      answered++
      if (!s.check(answer.response)) bad++
      if (s.progress > 0) {
        const seen = Math.min(answer.progress, s.progress)
        progressExpected += s.progress
        progressSeen += seen
        if (answer.sse) progressMissingOnStreams += s.progress - seen
      }
    }
  }))
  const result = await autocannon({ url: `http://127.0.0.1:${port}`, connections, duration: durationSec, requests })
  latencies.sort((a, b) => a - b)
  const p50 = percentile(latencies, 50)
  const p99 = percentile(latencies, 99)
  return {
    reqPerSec: (result['2xx'] + result.non2xx) / result.duration,
    accepted,
    answered,
    bad,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    postP50: p50,
    postP99: p99,
    e2eP50: p50,
    e2eP99: p99,
    streamsLost: 0,
    durationSec: result.duration,
    drainMs: 0,
    sseReplies,
    progressExpected,
    progressSeen,
    progressMissingOnStreams
  }
}
