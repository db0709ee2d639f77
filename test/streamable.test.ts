// Streamable HTTP at `{mcpEndpoint}` (2025-03-26 .. 2025-11-25), read from a real socket:
// every row of the "Streamable HTTP answers" table, the standalone GET stream, one URL for
// HTTP+SSE clients too, stateless mode, idle sessions, the shared session cap, the SDK
// clients of both lines (and the v1 fallback pattern), auth, CORS and shutdown.
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { Client as ClientV2, StreamableHTTPClientTransport as StreamableV2 } from '@modelcontextprotocol/client'
import mcpSse, { ApiKeyAuthProvider, defaults, errors, type McpSseOptions } from '../src/index.js'
import { buildExampleServer } from '../example/mcp-server.js'
import { assertError, parseSseEvents, RawStream, startApp, until, type SseEvent } from './support/helpers.js'

/** A subtest, as tap passes it to a test function. */
type Test = Parameters<Parameters<typeof t.test>[0]>[0]

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const ACCEPT = 'application/json, text/event-stream'
const ALICE = 'alice-key-0123456789'
const BOB = 'bob-key-9876543210'
// The app listens on 127.0.0.1: the DNS-rebinding default lets in pages from loopback origins.
const PAGE = 'http://localhost:5173'

const keys = (): ApiKeyAuthProvider => new ApiKeyAuthProvider({ keys: [{ key: ALICE, principal: 'alice' }, { key: BOB, principal: 'bob' }] })

interface Answer {
  status: number
  headers: http.IncomingHttpHeaders
  contentType: string | undefined
  text: string
  body: any
}

/**
 * One request over node:http, read to its end (any method and header). `agent: false`
 * for requests whose connection must not linger in a pool (the shutdown test).
 */
function send (method: string, url: string, headers: http.OutgoingHttpHeaders = {}, body?: string, agent?: false): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, ...(agent === false ? { agent: false } : {}) }, res => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { text += c })
      res.on('end', () => {
        clearTimeout(timer)
        let parsed: unknown
        try { parsed = text === '' ? undefined : JSON.parse(text) } catch { parsed = undefined }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, contentType: res.headers['content-type'], text, body: parsed })
      })
      res.on('error', err => { clearTimeout(timer); reject(err) })
    })
    // No answer in 2 s is a hang: fail the test instead of waiting for tap's timeout.
    const timer = setTimeout(() => { req.destroy(new Error(`${method} ${url}: no answer within 2 s`)) }, 2000)
    req.on('error', err => { clearTimeout(timer); reject(err) })
    req.end(body)
  })
}

interface PostOptions {
  session?: string
  headers?: http.OutgoingHttpHeaders
  agent?: false
}

/** POST {mcpEndpoint} as a Streamable HTTP client does (JSON, both media types accepted). */
function mcpPost (base: string, message: unknown, { session, headers = {}, agent }: PostOptions = {}): Promise<Answer> {
  return send('POST', `${base}/mcp`, {
    'content-type': 'application/json',
    accept: ACCEPT,
    ...(session === undefined ? {} : { 'mcp-session-id': session }),
    ...headers
  }, typeof message === 'string' ? message : JSON.stringify(message), agent)
}

const initRequest = (id: number | string = 1, protocolVersion = '2025-11-25', capabilities: Record<string, unknown> = {}) => ({
  jsonrpc: '2.0' as const,
  id,
  method: 'initialize',
  params: { protocolVersion, capabilities, clientInfo: { name: 'raw', version: '1' } }
})
const initialized = { jsonrpc: '2.0', method: 'notifications/initialized' }
const request = (id: number | string, method: string, params?: Record<string, unknown>) =>
  ({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) })
const echo = (id: number, text: string) => request(id, 'tools/call', { name: 'echo', arguments: { text } })

/** Initializes a session (and sends `initialized`); returns its id and the initialize answer. */
async function openSession (base: string, opts: { version?: string, headers?: http.OutgoingHttpHeaders, capabilities?: Record<string, unknown>, agent?: false } = {}): Promise<{ sessionId: string, answer: Answer }> {
  const answer = await mcpPost(base, initRequest(1, opts.version, opts.capabilities), { headers: opts.headers ?? {}, ...(opts.agent === false ? { agent: false } : {}) })
  if (answer.status !== 200) throw new Error(`initialize answered ${answer.status}: ${answer.text}`)
  const sessionId = answer.headers['mcp-session-id']
  if (typeof sessionId !== 'string') throw new Error('initialize answered no Mcp-Session-Id')
  const ack = await mcpPost(base, initialized, { session: sessionId, headers: opts.headers ?? {}, ...(opts.agent === false ? { agent: false } : {}) })
  if (ack.status !== 202) throw new Error(`initialized answered ${ack.status}: ${ack.text}`)
  return { sessionId, answer }
}

/** Opens the standalone GET stream of a session and closes it when the test ends. */
async function openStream (t: Test, base: string, sessionId: string, headers: http.OutgoingHttpHeaders = {}): Promise<RawStream> {
  const s = await RawStream.open(`${base}/mcp`, { 'mcp-session-id': sessionId, ...headers })
  t.teardown(() => s.close())
  return s
}

/** The events of a whole event-stream body. */
function eventsOf (text: string): SseEvent[] {
  const out: SseEvent[] = []
  parseSseEvents(text, out)
  return out
}

/**
 * The JSON-RPC messages (`message` events) of a whole event-stream body. An event without
 * data (the priming event that carries only an id and `retry:`) is no message.
 */
function messagesOf (text: string): any[] {
  return eventsOf(text).filter(e => e.event === 'message' && e.data !== '').map(e => JSON.parse(e.data))
}

/** The next JSON-RPC message on a raw stream (skipping pings and the data-less priming event). */
async function nextMessage (stream: RawStream, timeoutMs = 5000): Promise<any> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const ev = await stream.next('message', Math.max(1, deadline - Date.now()))
    if (ev.data !== '') return JSON.parse(ev.data)
  }
}


/** A comma-separated header value as a list of lower-case names. */
const names = (value: string | string[] | undefined): string[] =>
  String(value ?? '').split(',').map(x => x.trim().toLowerCase()).filter(x => x !== '')

/** The v1 example server, counting how many were made and how many closed. */
function countingServers (): { factory: McpSseOptions['server'], made: () => number, closed: () => number } {
  let made = 0
  let closed = 0
  return {
    factory: () => {
      made++
      const server = buildExampleServer()
      server.server.onclose = () => { closed++ }
      return server
    },
    made: () => made,
    closed: () => closed
  }
}

/** A server whose `whoami` tool answers with what it sees in extra.authInfo. */
function whoamiServer (): McpServer {
  const server = new McpServer({ name: 'whoami', version: '1.0.0' })
  server.registerTool('whoami', { inputSchema: {} }, async (_args, extra) => ({
    content: [{ type: 'text', text: JSON.stringify(extra.authInfo ?? null) }]
  }))
  return server
}

const textOf = (result: unknown): string => ((result as { content: Array<{ text: string }> }).content[0] as { text: string }).text

/** A v1 SDK client over Streamable HTTP, closed when the test ends. */
async function connectStreamable (t: Test, url: string, requestInit?: RequestInit): Promise<Client> {
  const client = new Client({ name: 'streamable-test-client', version: '1.0.0' })
  await client.connect(new StreamableHTTPClientTransport(new URL(url), requestInit === undefined ? {} : { requestInit }))
  t.teardown(() => client.close())
  return client
}

// --- request POSTs ------------------------------------------------------------------

t.test('initialize answers 200 as JSON with a visible-ASCII Mcp-Session-Id (a UUID)', async t => {
  const { base, app } = await startApp(t)
  const res = await mcpPost(base, initRequest(1))
  t.equal(res.status, 200)
  t.match(res.contentType, /^application\/json(;|$)/)
  const id = res.headers['mcp-session-id']
  t.type(id, 'string')
  t.match(id, /^[\x21-\x7e]+$/, 'visible ASCII only')
  t.match(id, UUID)
  t.equal(res.body.jsonrpc, '2.0')
  t.equal(res.body.id, 1)
  t.equal(res.body.result.protocolVersion, '2025-11-25')
  t.equal(res.body.result.serverInfo.name, 'fastify-mcp-sse-example')
  t.equal(app.mcpSessions.size, 1)
  t.equal(app.mcpSessions.get(id as string)?.kind, 'streamable')
})

t.test('a request POST on a 2025-03-26 session is answered as one JSON response', async t => {
  const { base } = await startApp(t)
  const { sessionId, answer } = await openSession(base, { version: '2025-03-26' })
  t.equal(answer.body.result.protocolVersion, '2025-03-26')
  const res = await mcpPost(base, request(2, 'tools/list'), { session: sessionId })
  t.equal(res.status, 200)
  t.match(res.contentType, /^application\/json(;|$)/)
  t.equal(res.headers['mcp-session-id'], undefined, 'the session id is minted by initialize only')
  t.same(Object.keys(res.body).sort(), ['id', 'jsonrpc', 'result'])
  t.equal(res.body.id, 2)
  t.same(res.body.result.tools.map((x: { name: string }) => x.name).sort(), ['countdown', 'echo'])
})

t.test('a batch of requests on a 2025-03-26 session is answered as one JSON array', async t => {
  const { base } = await startApp(t)
  const { sessionId } = await openSession(base, { version: '2025-03-26' })
  const res = await mcpPost(base, [echo(7, 'seven'), request(8, 'ping'), { jsonrpc: '2.0', method: 'notifications/x' }], { session: sessionId })
  t.equal(res.status, 200)
  t.match(res.contentType, /^application\/json(;|$)/)
  t.ok(Array.isArray(res.body), 'the body is an array')
  const byId = new Map((res.body as any[]).map(m => [m.id, m]))
  t.equal(res.body.length, 2, 'one response per request, none for the notification')
  t.same(byId.get(7), { jsonrpc: '2.0', id: 7, result: { content: [{ type: 'text', text: 'seven' }] } })
  t.same(byId.get(8), { jsonrpc: '2.0', id: 8, result: {} })
})

t.test('in auto mode a request whose progress precedes its result is answered as an event stream, result last', async t => {
  const { base } = await startApp(t)
  const { sessionId } = await openSession(base)
  const res = await mcpPost(base, request(3, 'tools/call', { name: 'countdown', arguments: { from: 3, intervalMs: 10 }, _meta: { progressToken: 'tok' } }), { session: sessionId })
  t.equal(res.status, 200)
  t.match(res.contentType, /^text\/event-stream(;|$)/)
  t.equal(res.headers['cache-control'], 'no-cache, no-transform')
  const messages = messagesOf(res.text)
  t.equal(messages.length, 4, 'three progress notifications and the result')
  t.same(messages.slice(0, 3).map(m => [m.method, m.params.progressToken, m.params.progress, m.params.total]), [
    ['notifications/progress', 'tok', 0, 3],
    ['notifications/progress', 'tok', 1, 3],
    ['notifications/progress', 'tok', 2, 3]
  ])
  t.same(messages[3], { jsonrpc: '2.0', id: 3, result: { content: [{ type: 'text', text: 'Counted down from 3' }] } })
})

t.test('in auto mode a request without anything before its result is answered as JSON', async t => {
  const { base } = await startApp(t)
  const { sessionId } = await openSession(base)
  const res = await mcpPost(base, request(3, 'tools/call', { name: 'countdown', arguments: { from: 2, intervalMs: 5 } }), { session: sessionId })
  t.equal(res.status, 200)
  t.match(res.contentType, /^application\/json(;|$)/)
  t.same(res.body, { jsonrpc: '2.0', id: 3, result: { content: [{ type: 'text', text: 'Counted down from 2' }] } })
})

t.test('responseMode json never streams: progress is dropped and the result comes as JSON', async t => {
  const { base } = await startApp(t, { responseMode: 'json' })
  const { sessionId } = await openSession(base)
  const res = await mcpPost(base, request(3, 'tools/call', { name: 'countdown', arguments: { from: 3, intervalMs: 10 }, _meta: { progressToken: 'tok' } }), { session: sessionId })
  t.equal(res.status, 200)
  t.match(res.contentType, /^application\/json(;|$)/)
  t.same(res.body, { jsonrpc: '2.0', id: 3, result: { content: [{ type: 'text', text: 'Counted down from 3' }] } }, res.text.slice(0, 300))
  // The session is still usable afterwards.
  const next = await mcpPost(base, request(4, 'ping'), { session: sessionId })
  t.same(next.body, { jsonrpc: '2.0', id: 4, result: {} })
})

t.test('responseMode sse always streams, even a lone result, and initialize mints the session id on it', async t => {
  const { base } = await startApp(t, { responseMode: 'sse' })
  const init = await mcpPost(base, initRequest(1))
  t.equal(init.status, 200)
  t.match(init.contentType, /^text\/event-stream(;|$)/)
  const sessionId = init.headers['mcp-session-id'] as string
  t.match(sessionId, UUID)
  const [initResult] = messagesOf(init.text)
  t.equal(initResult.id, 1)
  t.equal(initResult.result.protocolVersion, '2025-11-25')
  t.equal((await mcpPost(base, initialized, { session: sessionId })).status, 202)

  const res = await mcpPost(base, request(2, 'ping'), { session: sessionId })
  t.equal(res.status, 200)
  t.match(res.contentType, /^text\/event-stream(;|$)/)
  t.same(messagesOf(res.text), [{ jsonrpc: '2.0', id: 2, result: {} }])
})

t.test('a POST of notifications only answers 202 with an empty body', async t => {
  const { base } = await startApp(t)
  const { sessionId } = await openSession(base, { version: '2025-03-26' })
  const one = await mcpPost(base, { jsonrpc: '2.0', method: 'notifications/roots/list_changed' }, { session: sessionId })
  t.equal(one.status, 202)
  t.equal(one.text, '')
  const batch = await mcpPost(base, [{ jsonrpc: '2.0', method: 'notifications/x' }, { jsonrpc: '2.0', method: 'notifications/y' }], { session: sessionId })
  t.equal(batch.status, 202)
  t.equal(batch.text, '')
})

t.test('a POST of a response only (to a server request from the GET stream) answers 202 with an empty body', async t => {
  const { base, app } = await startApp(t)
  const { sessionId } = await openSession(base, { capabilities: { roots: {} } })
  const stream = await openStream(t, base, sessionId)
  const server = app.mcpSessions.get(sessionId)?.server as McpServer
  const roots = server.server.listRoots()
  const ask = await nextMessage(stream)
  t.equal(ask.method, 'roots/list')
  const res = await mcpPost(base, { jsonrpc: '2.0', id: ask.id, result: { roots: [{ uri: 'file:///tmp', name: 'tmp' }] } }, { session: sessionId })
  t.equal(res.status, 202)
  t.equal(res.text, '')
  t.same(await roots, { roots: [{ uri: 'file:///tmp', name: 'tmp' }] }, 'the server got the answer')
})

// --- refused POSTs --------------------------------------------------------------------

t.test('a POST whose Accept lacks application/json or text/event-stream answers 406 not_acceptable', async t => {
  const { base } = await startApp(t)
  const { sessionId } = await openSession(base)
  for (const accept of ['application/json', 'text/event-stream', 'text/html']) {
    const res = await mcpPost(base, request(5, 'ping'), { session: sessionId, headers: { accept } })
    assertError(t, res, { status: 406, code: -32000, type: 'not_acceptable', id: 5, method: 'ping', sessionId, connectionActive: true })
  }
  const none = await send('POST', `${base}/mcp`, { 'content-type': 'application/json' }, JSON.stringify(initRequest(6)))
  assertError(t, none, { status: 406, code: -32000, type: 'not_acceptable', id: 6, method: 'initialize' })
})

t.test('a non-initialize POST without Mcp-Session-Id answers 400 invalid_request', async t => {
  const { base, app } = await startApp(t)
  const res = await mcpPost(base, request(9, 'tools/list'))
  assertError(t, res, { status: 400, code: -32600, type: 'invalid_request', id: 9, method: 'tools/list' })
  t.equal(app.mcpSessions.size, 0)
})

t.test('initialize inside a batch is refused with 400 invalid_request and opens no session', async t => {
  const { base, app } = await startApp(t)
  const res = await mcpPost(base, [initRequest(1), request(2, 'ping')])
  assertError(t, res, { status: 400, code: -32600, type: 'invalid_request' })
  t.equal(app.mcpSessions.size, 0)
})

t.test('a POST to an unknown session answers 404 session_not_found', async t => {
  const { base } = await startApp(t)
  const unknown = '00000000-0000-4000-8000-000000000000'
  const res = await mcpPost(base, request(4, 'ping'), { session: unknown })
  assertError(t, res, { status: 404, code: -32001, type: 'session_not_found', id: 4, method: 'ping', sessionId: unknown })
})

t.test('an HTTP+SSE session id is an unknown session on /mcp', async t => {
  const { base } = await startApp(t)
  const legacy = await RawStream.open(`${base}/sse`)
  t.teardown(() => legacy.close())
  const sessionId = new URL(await legacy.endpoint(base)).searchParams.get('sessionId') as string
  const res = await mcpPost(base, request(4, 'ping'), { session: sessionId })
  assertError(t, res, { status: 404, code: -32001, type: 'session_not_found', id: 4, method: 'ping', sessionId })
})

t.test('DELETE of a known session answers 204, ends it, and a POST with its id then answers 404', async t => {
  const servers = countingServers()
  const { base, app } = await startApp(t, { server: servers.factory })
  const { sessionId } = await openSession(base)
  const stream = await openStream(t, base, sessionId)
  t.equal(app.mcpSessions.size, 1)
  const res = await send('DELETE', `${base}/mcp`, { 'mcp-session-id': sessionId })
  t.equal(res.status, 204)
  t.equal(res.text, '')
  t.equal(app.mcpSessions.size, 0, 'the session is gone')
  t.equal(servers.closed(), 1, 'its server is closed')
  await stream.waitEnd(2000)
  const after = await mcpPost(base, request(5, 'ping'), { session: sessionId })
  assertError(t, after, { status: 404, code: -32001, type: 'session_not_found', id: 5, method: 'ping', sessionId })
  const again = await send('DELETE', `${base}/mcp`, { 'mcp-session-id': sessionId })
  assertError(t, again, { status: 404, code: -32001, type: 'session_not_found', sessionId })
})

t.test('a request still pending when its session is deleted gets an error body consistent with the error table', async t => {
  const { base } = await startApp(t)
  const { sessionId } = await openSession(base)
  // No progress token: nothing comes before the result, so the answer would be JSON.
  const pending = mcpPost(base, request(3, 'tools/call', { name: 'countdown', arguments: { from: 50, intervalMs: 20 } }), { session: sessionId })
  await new Promise(resolve => setTimeout(resolve, 100))
  t.equal((await send('DELETE', `${base}/mcp`, { 'mcp-session-id': sessionId })).status, 204)
  const res = await pending
  t.match(res.contentType, /^application\/json(;|$)/)
  const type = res.body?.error?.data?.type as keyof typeof errors.ERROR_TABLE
  t.equal(type, 'session_not_found', res.text)
  t.equal(res.status, errors.ERROR_TABLE[type]?.status, 'the status of that type in the error table')
  t.equal(res.body?.error?.code, errors.ERROR_TABLE[type]?.code, 'the code of that type in the error table')
  t.equal(res.body?.error?.data?.connectionActive, false)
})

t.test('a streamed request still pending when its session is deleted has its stream ended', async t => {
  const { base } = await startApp(t)
  const { sessionId } = await openSession(base)
  const pending = mcpPost(base, request(3, 'tools/call', { name: 'countdown', arguments: { from: 50, intervalMs: 20 }, _meta: { progressToken: 1 } }), { session: sessionId })
  await new Promise(resolve => setTimeout(resolve, 100))
  t.equal((await send('DELETE', `${base}/mcp`, { 'mcp-session-id': sessionId })).status, 204)
  const res = await pending
  t.equal(res.status, 200)
  t.match(res.contentType, /^text\/event-stream(;|$)/)
  const messages = messagesOf(res.text)
  t.ok(messages.length > 0, 'progress came first')
  t.ok(messages.every(m => m.method === 'notifications/progress'), 'the stream ended without a result')
})

t.test('DELETE without Mcp-Session-Id answers 400 invalid_request', async t => {
  const { base } = await startApp(t)
  const res = await send('DELETE', `${base}/mcp`)
  assertError(t, res, { status: 400, code: -32600, type: 'invalid_request' })
})

t.test('another principal\'s session answers 404 exactly like an unknown one, and stays alive', async t => {
  const { base, app } = await startApp(t, { auth: { provider: keys() } })
  const { sessionId } = await openSession(base, { headers: { 'x-api-key': ALICE } })
  const unknown = '00000000-0000-4000-8000-000000000000'
  const asBob = { 'x-api-key': BOB }

  const hijack = await mcpPost(base, request(4, 'tools/list'), { session: sessionId, headers: asBob })
  const stranger = await mcpPost(base, request(4, 'tools/list'), { session: unknown, headers: asBob })
  assertError(t, hijack, { status: 404, code: -32001, type: 'session_not_found', id: 4, method: 'tools/list', sessionId })
  t.equal(hijack.text.replace(sessionId, 'ID'), stranger.text.replace(unknown, 'ID'), 'same body as an unknown session')
  t.equal(hijack.contentType, stranger.contentType)

  const get = await send('GET', `${base}/mcp`, { ...asBob, accept: 'text/event-stream', 'mcp-session-id': sessionId })
  const getUnknown = await send('GET', `${base}/mcp`, { ...asBob, accept: 'text/event-stream', 'mcp-session-id': unknown })
  assertError(t, get, { status: 404, code: -32001, type: 'session_not_found', sessionId })
  t.equal(get.text.replace(sessionId, 'ID'), getUnknown.text.replace(unknown, 'ID'))

  const del = await send('DELETE', `${base}/mcp`, { ...asBob, 'mcp-session-id': sessionId })
  assertError(t, del, { status: 404, code: -32001, type: 'session_not_found', sessionId })

  t.ok(app.mcpSessions.has(sessionId), 'the session is still there')
  const mine = await mcpPost(base, request(5, 'ping'), { session: sessionId, headers: { 'x-api-key': ALICE } })
  t.same(mine.body, { jsonrpc: '2.0', id: 5, result: {} }, 'its owner still uses it')
})

t.test('a batch to another principal\'s session answers 404 exactly like a batch to an unknown one', async t => {
  const { base } = await startApp(t, { auth: { provider: keys() } })
  const { sessionId } = await openSession(base, { headers: { 'x-api-key': ALICE } })
  const unknown = '00000000-0000-4000-8000-000000000000'
  const batch = [request(1, 'ping'), request(2, 'ping')]
  const hijack = await mcpPost(base, batch, { session: sessionId, headers: { 'x-api-key': BOB } })
  const stranger = await mcpPost(base, batch, { session: unknown, headers: { 'x-api-key': BOB } })
  assertError(t, stranger, { status: 404, code: -32001, type: 'session_not_found', sessionId: unknown })
  assertError(t, hijack, { status: 404, code: -32001, type: 'session_not_found', sessionId })
  t.equal(hijack.text.replace(sessionId, 'ID'), stranger.text.replace(unknown, 'ID'), 'the protocol revision of the session does not leak')
})

t.test('an unsupported MCP-Protocol-Version answers 400 invalid_request on POST, GET and DELETE', async t => {
  const { base, app } = await startApp(t)
  const { sessionId } = await openSession(base)
  const bad = { 'mcp-protocol-version': '1999-01-01' }
  const res = await mcpPost(base, request(4, 'ping'), { session: sessionId, headers: bad })
  assertError(t, res, { status: 400, code: -32600, type: 'invalid_request', id: 4, method: 'ping', sessionId, connectionActive: true })
  t.match(res.body.error.message, /1999-01-01/)
  t.match(res.body.error.message, /2025-11-25/, 'the message lists the supported versions')
  const get = await send('GET', `${base}/mcp`, { ...bad, accept: 'text/event-stream', 'mcp-session-id': sessionId })
  assertError(t, get, { status: 400, code: -32600, type: 'invalid_request', sessionId, connectionActive: true })
  const del = await send('DELETE', `${base}/mcp`, { ...bad, 'mcp-session-id': sessionId })
  assertError(t, del, { status: 400, code: -32600, type: 'invalid_request', sessionId, connectionActive: true })
  t.ok(app.mcpSessions.has(sessionId), 'the refused DELETE ended nothing')
  const good = await mcpPost(base, request(5, 'ping'), { session: sessionId, headers: { 'mcp-protocol-version': '2025-11-25' } })
  t.same(good.body, { jsonrpc: '2.0', id: 5, result: {} }, 'a supported version passes')
})

for (const version of ['2025-06-18', '2025-11-25']) {
  t.test(`a batch on a session that negotiated ${version} answers 400 invalid_request and delivers nothing`, async t => {
    const { base } = await startApp(t)
    const { sessionId, answer } = await openSession(base, { version })
    t.equal(answer.body.result.protocolVersion, version)
    const res = await mcpPost(base, [echo(2, 'a'), echo(3, 'b')], { session: sessionId })
    assertError(t, res, { status: 400, code: -32600, type: 'invalid_request', sessionId, connectionActive: true })
    t.match(res.body.error.message, new RegExp(version))
  })
}

t.test('content type, size, JSON and JSON-RPC errors on /mcp answer as on the message endpoint', async t => {
  const { base } = await startApp(t, { maxMessageSize: '1kb' })
  const { sessionId } = await openSession(base)
  const headers = { 'mcp-session-id': sessionId, accept: ACCEPT }
  const on = { sessionId, connectionActive: true }

  const text = await send('POST', `${base}/mcp`, { ...headers, 'content-type': 'text/plain' }, JSON.stringify(request(1, 'ping')))
  assertError(t, text, { status: 415, code: -32000, type: 'unsupported_media_type', ...on })

  const big = await mcpPost(base, request(2, 'ping', { pad: 'x'.repeat(2048) }), { session: sessionId })
  assertError(t, big, { status: 413, code: -32000, type: 'message_too_large', ...on })
  t.match(big.body.error.message, /1KB/)

  const notJson = await mcpPost(base, '{"jsonrpc":"2.0","id":3,"method":', { session: sessionId })
  assertError(t, notJson, { status: 400, code: -32700, type: 'parse_error', ...on })

  const notRpc = await mcpPost(base, { jsonrpc: '1.0', id: 4, method: 'ping' }, { session: sessionId })
  assertError(t, notRpc, { status: 400, code: -32600, type: 'invalid_request', id: 4, method: 'ping', ...on })

  const empty = await mcpPost(base, [], { session: sessionId })
  assertError(t, empty, { status: 400, code: -32600, type: 'invalid_request', ...on })
})

t.test('a page from a foreign origin is refused on /mcp with 403 forbidden_origin', async t => {
  const { base, app } = await startApp(t)
  const res = await mcpPost(base, initRequest(1), { headers: { origin: 'https://evil.example' } })
  assertError(t, res, { status: 403, code: -32000, type: 'forbidden_origin', id: null })
  t.equal(app.mcpSessions.size, 0)
})

// --- the standalone GET stream ----------------------------------------------------------

t.test('the standalone GET stream answers 200 as an event stream and carries server-initiated messages', async t => {
  const { base, app } = await startApp(t)
  const { sessionId } = await openSession(base)
  const stream = await openStream(t, base, sessionId, { 'mcp-protocol-version': '2025-11-25' })
  t.equal(stream.res.statusCode, 200)
  t.match(stream.res.headers['content-type'], /^text\/event-stream(;|$)/)
  t.equal(stream.res.headers['cache-control'], 'no-cache, no-transform')
  const server = app.mcpSessions.get(sessionId)?.server as McpServer
  server.sendToolListChanged()
  t.same(await nextMessage(stream), { jsonrpc: '2.0', method: 'notifications/tools/list_changed' })
})

t.test('a second standalone GET stream for one session answers 409 conflict; the first keeps working', async t => {
  const { base, app } = await startApp(t)
  const { sessionId } = await openSession(base)
  const first = await openStream(t, base, sessionId)
  t.equal(first.res.statusCode, 200)
  const second = await send('GET', `${base}/mcp`, { accept: 'text/event-stream', 'mcp-session-id': sessionId })
  assertError(t, second, { status: 409, code: -32000, type: 'conflict', sessionId, connectionActive: true })
  ;(app.mcpSessions.get(sessionId)?.server as McpServer).sendToolListChanged()
  t.equal((await nextMessage(first)).method, 'notifications/tools/list_changed')
})

t.test('a GET stream can be opened again once the first one closed', async t => {
  const { base, app } = await startApp(t)
  const { sessionId } = await openSession(base)
  const first = await openStream(t, base, sessionId)
  first.close()
  await until(() => !(app.mcpSessions.get(sessionId)?.transport as { hasStream?: boolean } | undefined)?.hasStream, 2000, 'the stream to be released')
  const second = await openStream(t, base, sessionId)
  t.equal(second.res.statusCode, 200)
  t.ok(app.mcpSessions.has(sessionId), 'closing a GET stream does not end the session')
})

t.test('a GET with a session id but without Accept: text/event-stream answers 406 not_acceptable', async t => {
  const { base } = await startApp(t)
  const { sessionId } = await openSession(base)
  const res = await send('GET', `${base}/mcp`, { accept: 'application/json', 'mcp-session-id': sessionId })
  assertError(t, res, { status: 406, code: -32000, type: 'not_acceptable', sessionId, connectionActive: true })
})

t.test('a GET stream for an unknown session answers 404 session_not_found', async t => {
  const { base } = await startApp(t)
  const unknown = '00000000-0000-4000-8000-000000000000'
  const res = await send('GET', `${base}/mcp`, { accept: 'text/event-stream', 'mcp-session-id': unknown })
  assertError(t, res, { status: 404, code: -32001, type: 'session_not_found', sessionId: unknown })
})

// --- one URL for every client -----------------------------------------------------------

t.test('GET /mcp without Mcp-Session-Id opens an HTTP+SSE session announcing the message endpoint', async t => {
  const { base, app } = await startApp(t)
  const s = await RawStream.open(`${base}/mcp`)
  t.teardown(() => s.close())
  t.equal(s.res.statusCode, 200)
  t.match(s.res.headers['content-type'], /^text\/event-stream(;|$)/)
  const first = await s.next()
  t.equal(first.event, 'endpoint')
  const match = /^\/messages\?sessionId=(.+)$/.exec(first.data)
  t.ok(match, `the endpoint event points at /messages: ${first.data}`)
  t.match(match?.[1], UUID)
  t.equal(app.mcpSessions.get(match?.[1] as string)?.kind, 'sse')
})

t.test('the SDK SSEClientTransport pointed at /mcp works end to end', async t => {
  const { base, app } = await startApp(t)
  const client = new Client({ name: 'legacy', version: '1.0.0' })
  await client.connect(new SSEClientTransport(new URL(`${base}/mcp`)))
  t.teardown(() => client.close())
  const { tools } = await client.listTools()
  t.same(tools.map(x => x.name).sort(), ['countdown', 'echo'])
  t.equal(textOf(await client.callTool({ name: 'echo', arguments: { text: 'one url' } })), 'one url')
  t.same([...app.mcpSessions].map(s => s.kind), ['sse'])
})

t.test('GET /mcp without Mcp-Session-Id and without Accept: text/event-stream answers 405', async t => {
  const { base, app } = await startApp(t)
  const res = await send('GET', `${base}/mcp`, { accept: 'application/json' })
  assertError(t, res, { status: 405, code: -32000, type: 'method_not_allowed' })
  t.equal(res.headers.allow, 'POST, OPTIONS')
  t.equal(app.mcpSessions.size, 0)
})

t.test('with endpoint false, GET /mcp without Mcp-Session-Id answers 405 and /sse is gone', async t => {
  const { base, app } = await startApp(t, { endpoint: false })
  const res = await send('GET', `${base}/mcp`, { accept: 'text/event-stream' })
  assertError(t, res, { status: 405, code: -32000, type: 'method_not_allowed' })
  t.equal(res.headers.allow, 'POST, OPTIONS')
  t.equal(app.mcpSessions.size, 0)
  t.equal((await send('GET', `${base}/sse`, { accept: 'text/event-stream' })).status, 404)
  t.equal((await openSession(base)).answer.status, 200, 'Streamable HTTP still works')
})

// --- SDK clients --------------------------------------------------------------------------

/** The fallback the SDK v1 documents: Streamable HTTP first, HTTP+SSE when it fails. */
async function connectWithFallback (t: Test, streamableUrl: string, sseUrl: string): Promise<{ client: Client, used: 'streamable' | 'sse' }> {
  try {
    const client = new Client({ name: 'streamable-http-client', version: '1.0.0' })
    await client.connect(new StreamableHTTPClientTransport(new URL(streamableUrl)))
    t.teardown(() => client.close())
    return { client, used: 'streamable' }
  } catch {
    const client = new Client({ name: 'sse-client', version: '1.0.0' })
    await client.connect(new SSEClientTransport(new URL(sseUrl)))
    t.teardown(() => client.close())
    return { client, used: 'sse' }
  }
}

t.test('the SDK v1 fallback pattern falls back to HTTP+SSE when mcpEndpoint is false', async t => {
  const { base, app } = await startApp(t, { mcpEndpoint: false })
  t.equal((await mcpPost(base, initRequest(1))).status, 404, '/mcp is not served')
  const { client, used } = await connectWithFallback(t, `${base}/mcp`, `${base}/sse`)
  t.equal(used, 'sse')
  t.equal(textOf(await client.callTool({ name: 'echo', arguments: { text: 'fell back' } })), 'fell back')
  t.same([...app.mcpSessions].map(s => s.kind), ['sse'])
})

t.test('the SDK v1 fallback pattern connects with Streamable HTTP to the default app', async t => {
  const { base, app } = await startApp(t)
  const { client, used } = await connectWithFallback(t, `${base}/mcp`, `${base}/sse`)
  t.equal(used, 'streamable')
  t.equal(textOf(await client.callTool({ name: 'echo', arguments: { text: 'streamed' } })), 'streamed')
  // The client opens its GET stream after `initialized`: wait for it before looking.
  const [session] = [...app.mcpSessions]
  await until(() => (session?.transport as { hasStream?: boolean } | undefined)?.hasStream === true, 2000, 'the GET stream')
  t.same([...app.mcpSessions].map(s => s.kind), ['streamable'], 'one session, Streamable HTTP, no stray HTTP+SSE one')
})

t.test('the SDK v1 client ends its session with terminateSession (DELETE)', async t => {
  const { base, app } = await startApp(t)
  const client = new Client({ name: 'c', version: '1.0.0' })
  const transport = new StreamableHTTPClientTransport(new URL(`${base}/mcp`))
  await client.connect(transport)
  t.teardown(() => client.close())
  t.equal(app.mcpSessions.size, 1)
  t.equal(transport.sessionId, [...app.mcpSessions.ids()][0])
  await transport.terminateSession()
  t.equal(app.mcpSessions.size, 0)
})

t.test('20 SDK v1 and 10 SDK v2 Streamable HTTP clients at once each get their own answers, progress first', async t => {
  const { base, app } = await startApp(t)
  interface Driver { name: string, call: (text: string) => Promise<string>, countdown: (onprogress: (n: number) => void) => Promise<string>, close: () => Promise<void> }
  const drivers: Driver[] = await Promise.all([
    ...Array.from({ length: 20 }, async (_x, i): Promise<Driver> => {
      const client = new Client({ name: `v1-${i}`, version: '1.0.0' })
      await client.connect(new StreamableHTTPClientTransport(new URL(`${base}/mcp`)))
      return {
        name: `v1-${i}`,
        call: async text => textOf(await client.callTool({ name: 'echo', arguments: { text } })),
        countdown: async onprogress => textOf(await client.callTool({ name: 'countdown', arguments: { from: 3, intervalMs: 5 } }, undefined, { onprogress: p => { onprogress(p.progress) } })),
        close: () => client.close()
      }
    }),
    ...Array.from({ length: 10 }, async (_x, i): Promise<Driver> => {
      const client = new ClientV2({ name: `v2-${i}`, version: '1.0.0' })
      await client.connect(new StreamableV2(new URL(`${base}/mcp`)))
      return {
        name: `v2-${i}`,
        call: async text => textOf(await client.callTool({ name: 'echo', arguments: { text } })),
        countdown: async onprogress => textOf(await client.callTool({ name: 'countdown', arguments: { from: 3, intervalMs: 5 } }, { onprogress: p => { onprogress(p.progress) } })),
        close: () => client.close()
      }
    })
  ])
  t.teardown(() => Promise.all(drivers.map(d => d.close())))
  t.equal(app.mcpSessions.size, 30)
  t.ok([...app.mcpSessions].every(s => s.kind === 'streamable'), 'every session is Streamable HTTP')

  const mismatches: string[] = []
  const progressProblems: string[] = []
  await Promise.all(drivers.map(async d => {
    const texts = Array.from({ length: 5 }, (_x, k) => `${d.name}/${k}/${Math.random().toString(36).slice(2)}`)
    const [answers] = await Promise.all([
      Promise.all(texts.map(text => d.call(text))),
      (async () => {
        const seen: number[] = []
        const result = await d.countdown(n => { seen.push(n) })
        if (result !== 'Counted down from 3' || seen.join() !== '0,1,2') progressProblems.push(`${d.name}: ${result} after [${seen.join()}]`)
      })()
    ])
    answers.forEach((a, k) => { if (a !== texts[k]) mismatches.push(`${d.name}: sent ${texts[k] as string}, got ${a}`) })
  }))
  t.same(mismatches, [], 'every answer is its own')
  t.same(progressProblems, [], 'all three progress notifications arrive before each result')
})

// --- stateless --------------------------------------------------------------------------

t.test('stateless: raw POSTs work without a session, one server per POST, none kept', async t => {
  const servers = countingServers()
  const { base, app } = await startApp(t, { stateless: true, server: servers.factory })
  const init = await mcpPost(base, initRequest(1))
  t.equal(init.status, 200)
  t.equal(init.headers['mcp-session-id'], undefined, 'no session id is minted')
  t.equal(init.body.result.serverInfo.name, 'fastify-mcp-sse-example')

  const list = await mcpPost(base, request(2, 'tools/list'))
  t.equal(list.status, 200)
  t.match(list.contentType, /^application\/json(;|$)/)
  t.equal(list.headers['mcp-session-id'], undefined)
  t.same(list.body.result.tools.map((x: { name: string }) => x.name).sort(), ['countdown', 'echo'])

  const call = await mcpPost(base, echo(3, 'stateless'))
  t.same(call.body, { jsonrpc: '2.0', id: 3, result: { content: [{ type: 'text', text: 'stateless' }] } })
  t.equal(call.headers['mcp-session-id'], undefined)

  const note = await mcpPost(base, initialized)
  t.equal(note.status, 202)
  t.equal(note.text, '')

  t.equal(servers.made(), 4, 'the factory ran once per POST')
  await until(() => servers.closed() === 4, 1000, 'every server closed')
  t.equal(app.mcpSessions.size, 0)
})

t.test('stateless: a request with progress is streamed and its server closed after the result', async t => {
  const servers = countingServers()
  const { base } = await startApp(t, { stateless: true, server: servers.factory })
  const res = await mcpPost(base, request(3, 'tools/call', { name: 'countdown', arguments: { from: 2, intervalMs: 5 }, _meta: { progressToken: 7 } }))
  t.equal(res.status, 200)
  t.match(res.contentType, /^text\/event-stream(;|$)/)
  const messages = messagesOf(res.text)
  t.same(messages.map(m => m.method ?? `result ${String(m.id)}`), ['notifications/progress', 'notifications/progress', 'result 3'])
  await until(() => servers.closed() === 1, 1000, 'the server closed')
})

t.test('stateless: GET and DELETE with a session id answer 405 with Allow: POST, OPTIONS', async t => {
  const { base } = await startApp(t, { stateless: true })
  const id = '00000000-0000-4000-8000-000000000000'
  const get = await send('GET', `${base}/mcp`, { accept: 'text/event-stream', 'mcp-session-id': id })
  assertError(t, get, { status: 405, code: -32000, type: 'method_not_allowed', sessionId: id })
  t.equal(get.headers.allow, 'POST, OPTIONS')
  const del = await send('DELETE', `${base}/mcp`, { 'mcp-session-id': id })
  assertError(t, del, { status: 405, code: -32000, type: 'method_not_allowed', sessionId: id })
  t.equal(del.headers.allow, 'POST, OPTIONS')
  const bare = await send('DELETE', `${base}/mcp`)
  t.equal(bare.status, 405)
  t.equal(bare.headers.allow, 'POST, OPTIONS')
})

t.test('stateless: the SDK v1 Streamable HTTP client works and leaves no session behind', async t => {
  const servers = countingServers()
  const { base, app } = await startApp(t, { stateless: true, server: servers.factory })
  const client = await connectStreamable(t, `${base}/mcp`)
  const { tools } = await client.listTools()
  t.same(tools.map(x => x.name).sort(), ['countdown', 'echo'])
  t.equal(textOf(await client.callTool({ name: 'echo', arguments: { text: 'no session' } })), 'no session')
  const seen: number[] = []
  t.equal(textOf(await client.callTool({ name: 'countdown', arguments: { from: 2, intervalMs: 5 } }, undefined, { onprogress: p => { seen.push(p.progress) } })), 'Counted down from 2')
  t.same(seen, [0, 1])
  // The client's GET (after `initialized`, with no session id) must not open anything.
  await new Promise(resolve => setTimeout(resolve, 100))
  t.same([...app.mcpSessions].map(s => s.kind), [], 'no session of any kind is held')
  t.equal(servers.made(), 5, 'initialize, initialized, tools/list and two tools/call: one server each')
})

// --- idle sessions ----------------------------------------------------------------------

t.test('sessionIdleTimeout ends a session nobody touches and closes its server', async t => {
  const servers = countingServers()
  const { base, app } = await startApp(t, { sessionIdleTimeout: 200, server: servers.factory })
  const { sessionId } = await openSession(base)
  t.ok(app.mcpSessions.has(sessionId), 'open at first')
  await until(() => app.mcpSessions.size === 0, 2000, 'the idle session to end')
  await until(() => servers.closed() === 1, 1000, 'its server to close')
  const res = await mcpPost(base, request(2, 'ping'), { session: sessionId })
  assertError(t, res, { status: 404, code: -32001, type: 'session_not_found', id: 2, method: 'ping', sessionId })
})

t.test('sessionIdleTimeout does not end a session with an open GET stream, and counts from when it closes', async t => {
  const servers = countingServers()
  const { base, app } = await startApp(t, { sessionIdleTimeout: 200, keepAliveInterval: 0, server: servers.factory })
  const { sessionId } = await openSession(base)
  const stream = await openStream(t, base, sessionId)
  await new Promise(resolve => setTimeout(resolve, 500))
  t.ok(app.mcpSessions.has(sessionId), 'still open after 2.5 idle timeouts')
  t.notOk(stream.ended)
  t.equal(servers.closed(), 0)
  stream.close()
  await until(() => app.mcpSessions.size === 0, 2000, 'the session to end once its stream closed')
  await until(() => servers.closed() === 1, 1000, 'its server to close')
})

t.test('sessionIdleTimeout restarts with every POST', async t => {
  const { base, app } = await startApp(t, { sessionIdleTimeout: 200 })
  const { sessionId } = await openSession(base)
  for (let i = 0; i < 5; i++) {
    await new Promise(resolve => setTimeout(resolve, 120))
    const res = i % 2 === 0
      ? await mcpPost(base, request(10 + i, 'ping'), { session: sessionId })
      : await mcpPost(base, { jsonrpc: '2.0', method: 'notifications/x' }, { session: sessionId })
    t.ok(res.status === 200 || res.status === 202, `POST ${i} answered ${res.status}`)
  }
  t.ok(app.mcpSessions.has(sessionId), 'alive after 600 ms of POSTs 120 ms apart')
  await until(() => app.mcpSessions.size === 0, 2000, 'the session to end once the POSTs stop')
})

t.test('sessionIdleTimeout 0 never ends a session', async t => {
  const { base, app } = await startApp(t, { sessionIdleTimeout: 0 })
  const { sessionId } = await openSession(base)
  await new Promise(resolve => setTimeout(resolve, 300))
  t.ok(app.mcpSessions.has(sessionId))
})

// --- the session cap --------------------------------------------------------------------

t.test('maxSessions counts HTTP+SSE and Streamable HTTP sessions together', async t => {
  const { base, app } = await startApp(t, { maxSessions: 2 })
  const legacy = await RawStream.open(`${base}/sse`)
  t.teardown(() => legacy.close())
  await legacy.endpoint(base)
  await openSession(base)
  t.same([...app.mcpSessions].map(s => s.kind).sort(), ['sse', 'streamable'])

  const init = await mcpPost(base, initRequest(3))
  assertError(t, init, { status: 503, code: -32000, type: 'too_many_sessions', id: 3, method: 'initialize' })
  const sse = await send('GET', `${base}/sse`, { accept: 'text/event-stream' })
  assertError(t, sse, { status: 503, code: -32000, type: 'too_many_sessions' })
  const oneUrl = await send('GET', `${base}/mcp`, { accept: 'text/event-stream' })
  assertError(t, oneUrl, { status: 503, code: -32000, type: 'too_many_sessions' })
  t.equal(app.mcpSessions.size, 2)
})

// --- auth ---------------------------------------------------------------------------------

t.test('with auth, POST, GET and DELETE /mcp without a key answer 401 with WWW-Authenticate', async t => {
  const { base, app } = await startApp(t, { auth: { provider: keys() } })
  const unauthorized = { status: 401, code: -32000, type: 'authentication_error' }
  const p = await mcpPost(base, initRequest(1))
  assertError(t, p, unauthorized)
  t.equal(p.headers['www-authenticate'], 'Bearer realm="mcp"')
  const g = await send('GET', `${base}/mcp`, { accept: 'text/event-stream' })
  assertError(t, g, unauthorized)
  t.equal(g.headers['www-authenticate'], 'Bearer realm="mcp"')
  const d = await send('DELETE', `${base}/mcp`, { 'mcp-session-id': '00000000-0000-4000-8000-000000000000' })
  assertError(t, d, { ...unauthorized, sessionId: '00000000-0000-4000-8000-000000000000' })
  t.equal(d.headers['www-authenticate'], 'Bearer realm="mcp"')
  const wrong = await mcpPost(base, initRequest(1), { headers: { 'x-api-key': 'nope' } })
  t.equal(wrong.status, 401)
  t.equal(app.mcpSessions.size, 0)
})

t.test('with auth, an OPTIONS preflight of /mcp needs no key', async t => {
  const { base } = await startApp(t, { auth: { provider: keys() } })
  const res = await send('OPTIONS', `${base}/mcp`, { origin: PAGE, 'access-control-request-method': 'POST' })
  t.equal(res.status, 204)
  t.equal(res.text, '')
  t.equal(res.headers['www-authenticate'], undefined)
})

t.test('with auth, a tool called over /mcp sees extra.authInfo', async t => {
  const { base } = await startApp(t, { auth: { provider: keys() }, server: whoamiServer })
  const asAlice = { 'x-api-key': ALICE }
  const { sessionId } = await openSession(base, { headers: asAlice })
  const res = await mcpPost(base, request(2, 'tools/call', { name: 'whoami', arguments: {} }), { session: sessionId, headers: asAlice })
  t.equal(res.status, 200)
  t.same(JSON.parse(textOf(res.body.result)), { token: ALICE, clientId: 'alice', scopes: [], extra: { authType: 'apiKey', principal: 'alice' } })
})

t.test('with auth, the SDK v1 Streamable HTTP client connects with its key in headers', async t => {
  const { base, app } = await startApp(t, { auth: { provider: keys() }, server: whoamiServer })
  const client = await connectStreamable(t, `${base}/mcp`, { headers: { 'x-api-key': BOB } })
  const seen = JSON.parse(textOf(await client.callTool({ name: 'whoami', arguments: {} })))
  t.equal(seen.extra.principal, 'bob')
  t.equal([...app.mcpSessions][0]?.principal, 'bob')
})

t.test('auth.endpoints.mcp false turns auth off for /mcp only', async t => {
  const { base } = await startApp(t, { auth: { provider: keys(), endpoints: { mcp: false } } })
  const { sessionId } = await openSession(base)
  const res = await mcpPost(base, request(2, 'ping'), { session: sessionId })
  t.same(res.body, { jsonrpc: '2.0', id: 2, result: {} })
  const sse = await send('GET', `${base}/sse`, { accept: 'text/event-stream' })
  assertError(t, sse, { status: 401, code: -32000, type: 'authentication_error' })
  const messages = await send('POST', `${base}/messages?sessionId=x`, { 'content-type': 'application/json' }, JSON.stringify(request(3, 'ping')))
  t.equal(messages.status, 401)
})

// --- CORS -----------------------------------------------------------------------------------

t.test('a preflight of /mcp allows the Streamable HTTP headers and DELETE', async t => {
  const { base } = await startApp(t)
  const res = await send('OPTIONS', `${base}/mcp`, {
    origin: PAGE,
    'access-control-request-method': 'DELETE',
    'access-control-request-headers': 'mcp-session-id, mcp-protocol-version'
  })
  t.equal(res.status, 204)
  t.equal(res.headers['access-control-allow-origin'], '*')
  const allowHeaders = names(res.headers['access-control-allow-headers'])
  for (const h of ['Content-Type', 'Authorization', 'x-api-key', 'Mcp-Session-Id', 'MCP-Protocol-Version', 'Last-Event-ID', 'Mcp-Method', 'Mcp-Name']) {
    t.ok(allowHeaders.includes(h.toLowerCase()), `allows ${h}`)
  }
  const methods = names(res.headers['access-control-allow-methods'])
  for (const m of ['get', 'post', 'delete', 'options']) t.ok(methods.includes(m), `allows ${m}`)
  t.equal(res.headers['access-control-max-age'], '86400')
})

t.test('a POST to /mcp from a page exposes Mcp-Session-Id', async t => {
  const { base } = await startApp(t)
  const res = await mcpPost(base, initRequest(1), { headers: { origin: PAGE } })
  t.equal(res.status, 200)
  t.match(res.headers['mcp-session-id'], UUID)
  t.equal(res.headers['access-control-allow-origin'], '*')
  t.ok(names(res.headers['access-control-expose-headers']).includes('mcp-session-id'), String(res.headers['access-control-expose-headers']))
})

t.test('the legacy /sse and /messages preflights keep their exact default values', async t => {
  const { base } = await startApp(t)
  for (const path of ['/sse', '/messages']) {
    const res = await send('OPTIONS', `${base}${path}`, { origin: PAGE, 'access-control-request-method': 'POST' })
    t.equal(res.status, 204, path)
    t.equal(res.headers['access-control-allow-origin'], '*', path)
    t.equal(res.headers['access-control-allow-methods'], defaults.cors.allowMethods, path)
    t.equal(res.headers['access-control-allow-headers'], defaults.cors.allowHeaders, path)
    t.equal(res.headers['access-control-expose-headers'], defaults.cors.exposeHeaders, path)
    t.equal(res.headers['access-control-max-age'], defaults.cors.maxAge, path)
  }
})

// --- shutdown and the host app ------------------------------------------------------------

t.test('app.close() ends Streamable sessions too: GET streams end and servers close', async t => {
  const servers = countingServers()
  const app = Fastify() // default forceCloseConnections: streams must end by themselves
  await app.register(mcpSse, { keepAliveInterval: 50, server: servers.factory })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  const a = await openSession(base, { agent: false })
  const b = await openSession(base, { agent: false })
  const stream = await RawStream.open(`${base}/mcp`, { 'mcp-session-id': a.sessionId })
  const legacy = await RawStream.open(`${base}/sse`)
  await legacy.endpoint(base)
  t.equal(app.mcpSessions.size, 3)
  t.ok(app.mcpSessions.has(b.sessionId))

  const started = Date.now()
  await app.close()
  t.ok(Date.now() - started < 2000, `closed in ${Date.now() - started} ms`)
  await stream.waitEnd()
  await legacy.waitEnd()
  t.ok(stream.res.complete, 'the GET stream ended cleanly (not reset)')
  t.equal(app.mcpSessions.size, 0)
  t.equal(servers.closed(), 3)
})

t.test('a host route registered beside the plugin is untouched by the /mcp hooks', async t => {
  const host = (app: FastifyInstance): void => {
    app.get('/health', async () => ({ ok: true }))
    app.post('/host', async req => ({ echoed: req.body }))
  }
  const { base } = await startApp(t, { auth: { provider: keys() } }, { before: host })
  const get = await send('GET', `${base}/health`, { origin: 'https://evil.example' })
  t.equal(get.status, 200)
  t.same(get.body, { ok: true })
  t.same(Object.keys(get.headers).filter(h => h.startsWith('access-control-')), [])
  const res = await send('POST', `${base}/host`, { 'content-type': 'application/json', accept: 'text/html', 'mcp-session-id': 'whatever' }, '{"a":1}')
  t.equal(res.status, 200, 'no key, no Accept check, no session check')
  t.same(res.body, { echoed: { a: 1 } })
  t.equal(res.headers['www-authenticate'], undefined)
})

t.test('an HTTP+SSE client on the one URL meets the HTTP+SSE auth, even when /mcp itself has none', async t => {
  const { base } = await startApp(t, { auth: { provider: keys(), endpoints: { mcp: false } } })
  const refused = await fetch(`${base}/mcp`, { headers: { accept: 'text/event-stream' } })
  t.equal(refused.status, 401)
  t.ok(refused.headers.get('www-authenticate') !== null, 'with a challenge')
  t.match(await refused.json(), { error: { data: { type: 'authentication_error' } } })
  const s = await RawStream.open(`${base}/mcp`, { 'x-api-key': ALICE })
  t.teardown(() => s.close())
  t.match((await s.next('endpoint')).data, /^\/messages\?sessionId=/, 'with a key the legacy session opens')
})

t.test('a DELETE (or GET) that carries the client\'s JSON content type and no body is served, not refused', async t => {
  const { base, app } = await startApp(t)
  const init = await fetch(`${base}/mcp`, { method: 'POST', headers: { 'content-type': 'application/json', accept: ACCEPT }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } } }) })
  const id = init.headers.get('mcp-session-id') ?? ''
  await init.text()
  const res = await fetch(`${base}/mcp`, { method: 'DELETE', headers: { 'content-type': 'application/json', 'mcp-session-id': id } })
  t.equal(res.status, 204)
  t.equal(app.mcpSessions.size, 0)
})

t.test('a GET on the one URL that also accepts JSON (a probe, not a legacy client) opens no HTTP+SSE session', async t => {
  const { base, app } = await startApp(t)
  const res = await fetch(`${base}/mcp`, { headers: { accept: 'application/json, text/event-stream' } })
  t.equal(res.status, 405)
  t.equal(res.headers.get('allow'), 'POST, OPTIONS')
  t.equal(app.mcpSessions.size, 0)
})

t.test('a standalone stream whose client stops reading is cut off past maxBufferedBytes, and its session ends', async t => {
  const servers: McpServer[] = []
  const { base, app } = await startApp(t, {
    maxBufferedBytes: 64 * 1024,
    server: () => { const s = new McpServer({ name: 'flood', version: '1' }, { capabilities: { logging: {} } }); servers.push(s); return s }
  })
  const { sessionId } = await openSession(base)
  const stream = await openStream(t, base, sessionId)
  stream.res.pause()
  const server = servers[0] as McpServer
  const chunk = 'x'.repeat(16 * 1024)
  for (let i = 0; i < 400 && app.mcpSessions.has(sessionId); i++) {
    // A send held back by backpressure waits for 'drain', which never comes here.
    await Promise.race([
      server.server.notification({ method: 'notifications/message', params: { level: 'info', data: chunk } }).catch(() => {}),
      new Promise(resolve => setTimeout(resolve, 5))
    ])
  }
  await until(() => !app.mcpSessions.has(sessionId), 5000, 'the session to end')
  t.equal(app.mcpSessions.get(sessionId), undefined)
  t.equal(app.mcpSessions.size, 0, 'the session ended')
  const after = await mcpPost(base, { jsonrpc: '2.0', id: 9, method: 'ping' }, { session: sessionId })
  t.equal(after.status, 404, 'and its id is unknown from then on')
})

t.test('a Streamable HTTP session reports its transport: keep-alive pings on its stream, buffered bytes, and why it ended', async t => {
  const { base, app } = await startApp(t, { keepAliveInterval: 40 })
  const { sessionId } = await openSession(base)
  const stream = await openStream(t, base, sessionId)
  const ping = await stream.next('ping', 2000)
  t.match(JSON.parse(ping.data), { timestamp: String })
  const session = app.mcpSessions.get(sessionId)
  t.equal(session?.kind, 'streamable')
  t.type(session?.transport.bufferedBytes, 'number')
  t.equal((await app.mcpSessions.lookup('no-such-session')), undefined, 'lookup of an unknown id, without Redis')
  t.match(await app.mcpSessions.lookup(sessionId), { id: sessionId, local: true, owner: 'local' })
  const res = await fetch(`${base}/mcp`, { method: 'DELETE', headers: { 'mcp-session-id': sessionId } })
  t.equal(res.status, 204)
  t.equal(session?.transport.closeReason, 'deleted_by_client')
  t.equal(session?.transport.isOpen, false)
})

t.test('stateless: a factory that throws answers 500 message_handler_error; a server whose close() fails is logged, the answer stands', async t => {
  const lines: Array<Record<string, unknown>> = []
  const stream = new (await import('node:stream')).Writable({ write (chunk, _enc, done) { lines.push(JSON.parse(String(chunk)) as Record<string, unknown>); done() } })
  let calls = 0
  const { base } = await startApp(t, {
    stateless: true,
    server: () => {
      calls++
      if (calls === 1) throw new Error('factory down')
      const server = buildExampleServer()
      const close = server.close.bind(server)
      server.close = async () => { await close(); throw new Error('close failed') }
      return server
    }
  }, { fastify: { forceCloseConnections: true, logger: { level: 'info', stream } } })
  const list = { jsonrpc: '2.0', id: 1, method: 'tools/list' }
  const failed = await mcpPost(base, list)
  assertError(t, failed, { status: 500, code: -32603, type: 'message_handler_error', id: 1, method: 'tools/list' })
  t.ok(lines.some(l => l.msg === 'fastify-mcp-sse: the server factory threw'), 'the factory\'s error is logged')
  const ok = await mcpPost(base, list)
  t.equal(ok.status, 200)
  t.match(ok.body, { id: 1, result: { tools: Array } })
  await until(() => lines.some(l => l.msg === 'fastify-mcp-sse: the MCP server failed to close'), 2000, 'the close failure in the log')
})
