// Rate limits (the rateLimit option, @fastify/rate-limit in the plugin's scope): every
// budget on every transport under concurrent load, batches, the 429 answer exactly,
// preflights and the host's routes untouched, keys (principal, client address behind a
// proxy), one budget across two instances on a real Redis, and Redis away.
import http from 'node:http'
import { Writable } from 'node:stream'
import t, { type Test } from 'tap'
import Fastify from 'fastify'
import fastifyRateLimit from '@fastify/rate-limit'
import { Redis } from 'ioredis'
import mcpSse, { ApiKeyAuthProvider, type McpSseOptions } from '../src/index.js'
import { buildExampleServer } from '../example/mcp-server.js'
import { buildExampleServerV2 } from '../example/mcp-server-v2.js'
import { PrivateRedis, REDIS_URL, startInstance, testPrefix } from './support/cluster.js'
import { assertError, startApp, until } from './support/helpers.js'

const ACCEPT = 'application/json, text/event-stream'
const MODERN = '2026-07-28'
const META = {
  'io.modelcontextprotocol/protocolVersion': MODERN,
  'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' },
  'io.modelcontextprotocol/clientCapabilities': {}
}
const ALICE = 'alice-key-0123456789'
const BOB = 'bob-key-0123456789ab'

/** A budget of `max` per minute. */
const perMinute = (max: number): { max: number, timeWindow: string } => ({ max, timeWindow: '1 minute' })

/** Both SDK lines: v1 servers for 2025 sessions and HTTP+SSE, v2 for 2026-07-28 requests. */
const bothEras: McpSseOptions['server'] = ctx => ctx.era === 'modern' ? buildExampleServerV2() : buildExampleServer()

interface Answer {
  status: number
  headers: http.IncomingHttpHeaders
  contentType: string | null
  text: string
  body: any
  /** Ends an event stream left open (a no-op for answers read to their end). */
  close: () => void
}

/**
 * One request over node:http. An event stream (an open session or listen stream) resolves
 * at its head and stays open until `close()` or the test's end; anything else is read to
 * its end.
 */
function send (t: Test, method: string, url: string, headers: http.OutgoingHttpHeaders = {}, body?: unknown): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers }, res => {
      const contentType = res.headers['content-type'] ?? null
      const answer = (text: string): Answer => {
        let parsed: unknown
        try { parsed = text === '' ? undefined : JSON.parse(text) } catch { parsed = undefined }
        return { status: res.statusCode ?? 0, headers: res.headers, contentType, text, body: parsed, close: () => req.destroy() }
      }
      if (contentType?.startsWith('text/event-stream') === true && method === 'GET') {
        t.teardown(() => req.destroy())
        res.resume()
        resolve(answer(''))
        return
      }
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { text += c })
      res.on('end', () => resolve(answer(text)))
    })
    req.on('error', reject)
    req.end(body === undefined ? undefined : JSON.stringify(body))
  })
}

const getSse = (t: Test, base: string, headers: http.OutgoingHttpHeaders = {}): Promise<Answer> =>
  send(t, 'GET', `${base}/sse`, { accept: 'text/event-stream', ...headers })

/** POST {mcpEndpoint} as a 2025 Streamable HTTP client does. */
const mcpPost = (t: Test, base: string, body: unknown, headers: http.OutgoingHttpHeaders = {}): Promise<Answer> =>
  send(t, 'POST', `${base}/mcp`, { 'content-type': 'application/json', accept: ACCEPT, ...headers }, body)

/** A 2026-07-28 request: its version in `_meta` and the headers the revision requires. */
const modernPost = (t: Test, base: string, id: number, method: string, params: Record<string, unknown> = {}, headers: http.OutgoingHttpHeaders = {}): Promise<Answer> =>
  mcpPost(t, base, { jsonrpc: '2.0', id, method, params: { ...params, _meta: META } }, {
    'mcp-protocol-version': MODERN,
    'mcp-method': method,
    ...(method === 'tools/call' ? { 'mcp-name': params.name as string } : {}),
    ...headers
  })

const initRequest = (id: number | string = 1, protocolVersion = '2025-11-25') => ({
  jsonrpc: '2.0', id, method: 'initialize', params: { protocolVersion, capabilities: {}, clientInfo: { name: 'raw', version: '1' } }
})
const initialized = { jsonrpc: '2.0', method: 'notifications/initialized' }
const request = (id: number, method: string, params?: Record<string, unknown>) => ({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) })
const echo = (id: number, text = 'hi') => request(id, 'tools/call', { name: 'echo', arguments: { text } })

/** A Streamable HTTP session (2025-03-26 allows batches), set up before the budgets matter. */
async function openSession (t: Test, base: string, headers: http.OutgoingHttpHeaders = {}, version = '2025-11-25'): Promise<string> {
  const init = await mcpPost(t, base, initRequest(1, version), headers)
  t.equal(init.status, 200, `initialize: ${init.text.slice(0, 200)}`)
  const id = init.headers['mcp-session-id'] as string
  const ack = await mcpPost(t, base, initialized, { 'mcp-session-id': id, ...headers })
  t.equal(ack.status, 202)
  return id
}

/** How many answers had each status. */
function statuses (answers: Answer[]): Record<number, number> {
  const out: Record<number, number> = {}
  for (const a of answers) out[a.status] = (out[a.status] ?? 0) + 1
  return out
}

/** Runs `n` requests at once. */
const all = (n: number, one: (i: number) => Promise<Answer>): Promise<Answer[]> => Promise.all(Array.from({ length: n }, (_, i) => one(i)))

/** The RateLimit headers of an answer (numbers), and Retry-After. */
function limits (a: Answer): { limit: number, remaining: number, reset: number, retryAfter: number | undefined } {
  const n = (name: string): number => Number(a.headers[name])
  return { limit: n('x-ratelimit-limit'), remaining: n('x-ratelimit-remaining'), reset: n('x-ratelimit-reset'), retryAfter: a.headers['retry-after'] === undefined ? undefined : n('retry-after') }
}

const hasNoLimitHeaders = (a: Answer): boolean =>
  ['x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset', 'retry-after'].every(h => a.headers[h] === undefined)

/** Asserts a 429 answer: the JSON-RPC body exactly, and Retry-After with the RateLimit headers. */
function assertLimited (t: Test, a: Answer, budget: string, max: number, ctx: { id?: number, method?: string, sessionId?: string, connectionActive?: boolean } = {}): void {
  assertError(t, a, { status: 429, code: -32000, type: 'rate_limited', id: ctx.id ?? null, method: ctx.method ?? null, sessionId: ctx.sessionId ?? null, connectionActive: ctx.connectionActive ?? false })
  const l = limits(a)
  t.match(a.body?.error?.message, new RegExp(`^Rate limit exceeded \\(${budget.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\)\\. Retry in ${l.reset} s\\.$`), 'the message names the budget and the wait')
  t.equal(l.limit, max, 'x-ratelimit-limit')
  t.equal(l.remaining, 0, 'x-ratelimit-remaining')
  t.ok(l.reset >= 1 && l.reset <= 60, `x-ratelimit-reset is the rest of the window (${l.reset} s)`)
  t.equal(l.retryAfter, l.reset, 'Retry-After is the same wait')
}

// --- Options ---------------------------------------------------------------------------

t.test('rateLimit options: every invalid value fails at register, naming the option', async t => {
  const invalid: Array<[unknown, string]> = [
    [true, 'rateLimit'],
    ['on', 'rateLimit'],
    [null, 'rateLimit'],
    [{ message: perMinute(1) }, 'rateLimit.message'],
    [{ open: true }, 'rateLimit.open'],
    [{ open: { max: 0, timeWindow: 1000 } }, 'rateLimit.open.max'],
    [{ open: { max: 1.5, timeWindow: 1000 } }, 'rateLimit.open.max'],
    [{ open: { max: '5', timeWindow: 1000 } }, 'rateLimit.open.max'],
    [{ messages: { max: 5 } }, 'rateLimit.messages.timeWindow'],
    [{ messages: { max: 5, timeWindow: 0 } }, 'rateLimit.messages.timeWindow'],
    [{ messages: { max: 5, timeWindow: 1.5 } }, 'rateLimit.messages.timeWindow'],
    [{ messages: { max: 5, timeWindow: 'soon' } }, 'rateLimit.messages.timeWindow'],
    [{ messages: { max: 5, timeWindow: '5 fortnights' } }, 'rateLimit.messages.timeWindow'],
    [{ messages: { max: 5, timeWindow: '0s' } }, 'rateLimit.messages.timeWindow'],
    [{ messages: { max: 5, timeWindow: '1 minute', burst: 2 } }, 'rateLimit.messages.burst'],
    [{ methods: [] }, 'rateLimit.methods'],
    [{ methods: 'tools/call' }, 'rateLimit.methods'],
    [{ methods: { '': perMinute(1) } }, 'rateLimit.methods'],
    [{ methods: { 'tools/call': false } }, 'rateLimit.methods.tools/call'],
    [{ methods: { 'tools/call': { max: -1, timeWindow: '1s' } } }, 'rateLimit.methods.tools/call.max']
  ]
  for (const [rateLimit, option] of invalid) {
    const app = Fastify()
    const err = await app.register(mcpSse, { server: () => buildExampleServer(), rateLimit } as unknown as McpSseOptions).then(() => undefined, (e: unknown) => e)
    await app.close().catch(() => {})
    t.match(err, { code: 'FST_ERR_MCP_SSE_INVALID_OPTION' }, `${JSON.stringify(rateLimit)} is refused`)
    t.ok((err as Error | undefined)?.message.startsWith(`fastify-mcp-sse: invalid option "${option}". `), `names ${option}: ${(err as Error | undefined)?.message}`)
  }
})

t.test('rateLimit: unset, false, or with every budget off, nothing is counted (no headers); {} turns the defaults on', async t => {
  for (const rateLimit of [undefined, false, { open: false, messages: false }, { open: false, messages: false, methods: {} }] as const) {
    const { base } = await startApp(t, rateLimit === undefined ? {} : { rateLimit })
    const answers = await all(3, i => mcpPost(t, base, initRequest(i)))
    t.same(statuses(answers), { 200: 3 }, `${JSON.stringify(rateLimit)}: served`)
    t.ok(answers.every(hasNoLimitHeaders), `${JSON.stringify(rateLimit)}: no RateLimit headers`)
  }
  const { base } = await startApp(t, { rateLimit: {} })
  const init = await mcpPost(t, base, initRequest(1))
  // initialize takes from open (60) and messages (600): the headers show the tighter one.
  t.same(limits(init), { limit: 60, remaining: 59, reset: 60, retryAfter: undefined }, 'the default open budget: 60 a minute')
  const id = init.headers['mcp-session-id'] as string
  const list = await mcpPost(t, base, request(2, 'tools/list'), { 'mcp-session-id': id })
  t.same(limits(list), { limit: 600, remaining: 598, reset: 60, retryAfter: undefined }, 'the default messages budget: 600 a minute')
})

t.test('timeWindow: milliseconds, or a string with a unit', async t => {
  const windows: Array<[number | string, number]> = [[1500, 2], ['500', 1], ['2500ms', 3], ['1.5s', 2], ['30 seconds', 30], ['2m', 120], ['1 minute', 60], ['1h', 3600], ['2 hours', 7200], ['1 day', 86400], [' 10 S ', 10]]
  for (const [timeWindow, seconds] of windows) {
    const { base } = await startApp(t, { rateLimit: { open: false, messages: { max: 5, timeWindow } } })
    const a = await mcpPost(t, base, initRequest())
    t.equal(limits(a).reset, seconds, `${JSON.stringify(timeWindow)}: a window of ${seconds} s`)
  }
})

// --- Scope ----------------------------------------------------------------------------

t.test('the host app\'s routes are never limited, nor given the plugin\'s decorators; preflights take nothing', async t => {
  const { app, base } = await startApp(t, { rateLimit: { open: perMinute(1), messages: perMinute(1) } }, {
    before: app => {
      app.get('/host', async () => ({ ok: true }))
      app.post('/host', async () => ({ ok: true }))
    }
  })
  const host = await all(20, i => send(t, i % 2 === 0 ? 'GET' : 'POST', `${base}/host`, { 'content-type': 'application/json' }, i % 2 === 0 ? undefined : {}))
  t.same(statuses(host), { 200: 20 }, 'twenty host requests, all served')
  t.ok(host.every(hasNoLimitHeaders), 'with no RateLimit headers')
  t.notOk(app.hasDecorator('createRateLimit'), '@fastify/rate-limit stays in the plugin\'s scope')

  const preflight = { origin: 'http://localhost:3000', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' }
  const preflights = await all(12, i => send(t, 'OPTIONS', `${base}${['/sse', '/messages', '/mcp'][i % 3] as string}`, preflight))
  t.same(statuses(preflights), { 204: 12 }, 'twelve preflights, all answered')
  t.ok(preflights.every(hasNoLimitHeaders), 'preflights are not counted')

  const first = await getSse(t, base)
  t.equal(first.status, 200, 'the one stream of the open budget is still there after the preflights')
  t.same(limits(first), { limit: 1, remaining: 0, reset: 60, retryAfter: undefined }, 'RateLimit headers on the stream itself')
  first.close()
  assertLimited(t, await getSse(t, base), 'open', 1)
  const again = await all(5, () => send(t, 'GET', `${base}/host`))
  t.same(statuses(again), { 200: 5 }, 'the host route is untouched by the plugin\'s exhausted budget')
})

// --- Every transport under concurrent load ---------------------------------------------

t.test('HTTP+SSE: streams take from open (not from messages), exactly max of them opened at once', async t => {
  const { base } = await startApp(t, { rateLimit: { open: perMinute(4), messages: perMinute(6) } })
  const streams = await all(10, () => getSse(t, base))
  t.same(statuses(streams), { 200: 4, 429: 6 }, 'ten streams at once, four opened')
  const opened = streams.filter(s => s.status === 200)
  t.same(opened.map(s => limits(s).remaining).sort(), [0, 1, 2, 3], 'each opened stream saw what was left')
  for (const refused of streams.filter(s => s.status === 429)) assertLimited(t, refused, 'open', 4)
  for (const s of opened) s.close()
})

t.test('HTTP+SSE: POSTs to a session take from messages, exactly max of them accepted at once', async t => {
  const { app, base } = await startApp(t, { rateLimit: { open: false, messages: perMinute(6) } })
  const stream = await getSse(t, base)
  t.equal(stream.status, 200)
  t.ok(hasNoLimitHeaders(stream), 'open is off: the stream carries no RateLimit headers')
  const sessionId = [...app.mcpSessions.ids()][0] as string
  const url = `${base}/messages?sessionId=${sessionId}`
  const posts = await all(15, i => send(t, 'POST', url, { 'content-type': 'application/json' }, echo(i + 1)))
  t.same(statuses(posts), { 202: 6, 429: 9 }, 'fifteen POSTs at once, six accepted')
  const refused = posts.find(p => p.status === 429) as Answer
  assertLimited(t, refused, 'messages', 6, { id: refused.body?.id, method: 'tools/call', sessionId, connectionActive: true })
  t.type(refused.body?.id, 'number', 'the refused message\'s id is echoed')
  stream.close()
})

t.test('Streamable HTTP sessions: initialize without a session and GET streams take from open; every POST from messages', async t => {
  const { base } = await startApp(t, { rateLimit: { open: perMinute(3), messages: perMinute(12) } })
  const inits = await all(8, i => mcpPost(t, base, initRequest(i + 1)))
  t.same(statuses(inits), { 200: 3, 429: 5 }, 'eight initializes at once, three sessions')
  for (const refused of inits.filter(a => a.status === 429)) {
    assertLimited(t, refused, 'open', 3, { id: refused.body?.id, method: 'initialize' })
  }
  const id = inits.find(a => a.status === 200)?.headers['mcp-session-id'] as string
  // Every request counts, refused ones too: the eight initializes took eight messages.
  const posts = await all(9, i => mcpPost(t, base, echo(i + 10), { 'mcp-session-id': id }))
  t.same(statuses(posts), { 200: 4, 429: 5 }, 'nine requests at once in a session, the four left served')
  const refused = posts.find(p => p.status === 429) as Answer
  assertLimited(t, refused, 'messages', 12, { id: refused.body?.id, method: 'tools/call', sessionId: id, connectionActive: true })

  // open is spent by the initializes: the session's GET stream is refused too.
  assertLimited(t, await send(t, 'GET', `${base}/mcp`, { accept: 'text/event-stream', 'mcp-session-id': id }), 'open', 3, { sessionId: id, connectionActive: true })
  // DELETE takes nothing.
  const deleted = await send(t, 'DELETE', `${base}/mcp`, { 'mcp-session-id': id })
  t.equal(deleted.status, 204)
  t.ok(hasNoLimitHeaders(deleted), 'DELETE is not counted')
})

t.test('Streamable HTTP: GET streams, a session\'s and the HTTP+SSE fallback\'s, take from open under load', async t => {
  const { base } = await startApp(t, { rateLimit: { open: perMinute(4), messages: false } })
  const id = await openSession(t, base)
  const stream = await send(t, 'GET', `${base}/mcp`, { accept: 'text/event-stream', 'mcp-session-id': id })
  t.equal(stream.status, 200, 'the session\'s stream')
  t.same(limits(stream), { limit: 4, remaining: 2, reset: 60, retryAfter: undefined }, 'initialize and the stream taken')
  const fallback = await all(6, () => send(t, 'GET', `${base}/mcp`, { accept: 'text/event-stream' }))
  t.same(statuses(fallback), { 200: 2, 429: 4 }, 'six HTTP+SSE clients at once on the one URL: two streams')
  for (const g of fallback.filter(a => a.status === 429)) assertLimited(t, g, 'open', 4)
  for (const g of [stream, ...fallback]) g.close()
})

t.test('Streamable HTTP stateless: each POST takes from messages, initialize from open too', async t => {
  const { base } = await startApp(t, { stateless: true, rateLimit: { open: perMinute(1), messages: perMinute(5) } })
  t.equal((await mcpPost(t, base, initRequest(1))).status, 200)
  assertLimited(t, await mcpPost(t, base, initRequest(2)), 'open', 1, { id: 2, method: 'initialize' })
  // Two taken by the initializes (the refused one too): three left.
  const posts = await all(7, i => mcpPost(t, base, request(i + 3, 'tools/list')))
  t.same(statuses(posts), { 200: 3, 429: 4 }, 'seven stateless POSTs at once, three served')
})

t.test('2026-07-28: every request takes from messages, subscriptions/listen from open too', async t => {
  const { app, base } = await startApp(t, { server: bothEras, rateLimit: { open: perMinute(2), messages: perMinute(6) } })
  const calls = await all(4, i => modernPost(t, base, i + 1, 'tools/call', { name: 'echo', arguments: { text: `m${i}` } }))
  t.same(statuses(calls), { 200: 4 }, 'four modern requests served')
  t.match(calls[0]?.body, { result: { content: [{ text: 'm0' }] } })
  t.same(calls.map(c => limits(c).remaining).sort(), [2, 3, 4, 5], 'with their RateLimit headers')

  // Listen streams: two open within `open`, and each takes a message; the third is refused.
  const listen = (id: number): Promise<Answer> => new Promise((resolve, reject) => {
    const req = http.request(`${base}/mcp`, {
      method: 'POST',
      headers: { accept: ACCEPT, 'content-type': 'application/json', 'mcp-protocol-version': MODERN, 'mcp-method': 'subscriptions/listen' }
    }, res => {
      t.teardown(() => req.destroy())
      let text = ''
      res.setEncoding('utf8')
      const done = (): void => {
        let body: unknown
        try { body = JSON.parse(text) } catch {}
        resolve({ status: res.statusCode ?? 0, headers: res.headers, contentType: res.headers['content-type'] ?? null, text, body, close: () => req.destroy() })
      }
      if (res.statusCode === 200) done()
      else {
        res.on('data', (c: string) => { text += c })
        res.on('end', done)
      }
    })
    req.on('error', reject)
    req.end(JSON.stringify({ jsonrpc: '2.0', id, method: 'subscriptions/listen', params: { notifications: { toolsListChanged: true }, _meta: META } }))
  })
  const first = await listen(10)
  const second = await listen(11)
  t.same([first.status, second.status], [200, 200], 'two listen streams')
  t.equal(app.mcpEvents.listening, 2)
  const third = await listen(12)
  assertLimited(t, third, 'open', 2, { id: 12, method: 'subscriptions/listen' })
  first.close()
  second.close()
  // Six messages: four calls and the two listens that opened (the refused one was counted too).
  assertLimited(t, await modernPost(t, base, 13, 'tools/list'), 'messages', 6, { id: 13, method: 'tools/list' })
})

// --- Batches and methods --------------------------------------------------------------------

t.test('batches: each message counts once, in messages and in its method\'s budget; a batch past a budget is refused whole', async t => {
  const { app, base } = await startApp(t, { rateLimit: { open: false, messages: perMinute(5), methods: { 'tools/call': perMinute(3) } } })
  const stream = await getSse(t, base)
  const sessionId = [...app.mcpSessions.ids()][0] as string
  const url = `${base}/messages?sessionId=${sessionId}`
  const batch = (...messages: unknown[]): Promise<Answer> => send(t, 'POST', url, { 'content-type': 'application/json' }, messages)

  const two = await batch(echo(1), echo(2))
  t.equal(two.status, 202)
  t.same(limits(two), { limit: 3, remaining: 1, reset: 60, retryAfter: undefined }, 'two tools/call of three: the method\'s budget is the tighter one')
  const over = await batch(echo(3), echo(4))
  assertLimited(t, over, 'methods.tools/call', 3, { sessionId, connectionActive: true })
  t.equal(over.body.id, null, 'a batch has no one id to echo')
  // messages: 2 + 2 = 4 of 5 taken; a batch of three others is past it.
  const three = await batch(request(5, 'tools/list'), request(6, 'prompts/list'), request(7, 'resources/list'))
  assertLimited(t, three, 'messages', 5, { sessionId, connectionActive: true })
  // A batch far larger than the budget is refused the same way.
  assertLimited(t, await batch(...Array.from({ length: 50 }, (_, i) => request(100 + i, 'ping'))), 'messages', 5, { sessionId, connectionActive: true })
  stream.close()
})

t.test('a batch in a 2025-03-26 Streamable HTTP session counts each message', async t => {
  const { base } = await startApp(t, { rateLimit: { open: false, messages: perMinute(4) } })
  const id = await openSession(t, base, {}, '2025-03-26')
  // initialize and initialized took two.
  const ok = await mcpPost(t, base, [request(3, 'tools/list'), initialized], { 'mcp-session-id': id })
  t.equal(ok.status, 200, 'two more: all four taken')
  t.same(limits(ok), { limit: 4, remaining: 0, reset: 60, retryAfter: undefined })
  assertLimited(t, await mcpPost(t, base, [request(4, 'tools/list')], { 'mcp-session-id': id }), 'messages', 4, { sessionId: id, connectionActive: true })
})

t.test('methods: tools/call has its own budget, other methods are not counted in it', async t => {
  const { base } = await startApp(t, { rateLimit: { open: false, messages: false, methods: { 'tools/call': perMinute(3) } } })
  const id = await openSession(t, base)
  const lists = await all(10, i => mcpPost(t, base, request(i + 2, 'tools/list'), { 'mcp-session-id': id }))
  t.same(statuses(lists), { 200: 10 }, 'tools/list is not limited')
  t.ok(lists.every(hasNoLimitHeaders), 'and carries no RateLimit headers (no budget applies)')
  const calls = await all(8, i => mcpPost(t, base, echo(i + 20), { 'mcp-session-id': id }))
  t.same(statuses(calls), { 200: 3, 429: 5 }, 'eight tools/call at once, three served')
  const refused = calls.find(c => c.status === 429) as Answer
  assertLimited(t, refused, 'methods.tools/call', 3, { id: refused.body?.id, method: 'tools/call', sessionId: id, connectionActive: true })
  t.equal((await mcpPost(t, base, request(40, 'tools/list'), { 'mcp-session-id': id })).status, 200, 'tools/list still served')
  // A method's name that is also an Object.prototype key is just a name.
  t.equal((await mcpPost(t, base, request(41, 'constructor'), { 'mcp-session-id': id })).status, 200)
})

t.test('past two budgets at once, the answer is the wait of the one that frees up last', async t => {
  const { base } = await startApp(t, { stateless: true, rateLimit: { open: false, messages: perMinute(1), methods: { 'tools/call': { max: 1, timeWindow: '1h' } } } })
  const first = await mcpPost(t, base, echo(1))
  t.equal(first.status, 200)
  t.same(limits(first), { limit: 1, remaining: 0, reset: 60, retryAfter: undefined }, 'within both: the headers of the one ending first (a tie on remaining)')
  const second = await mcpPost(t, base, echo(2))
  assertError(t, second, { status: 429, code: -32000, type: 'rate_limited', id: 2, method: 'tools/call' })
  t.same(limits(second), { limit: 1, remaining: 0, reset: 3600, retryAfter: 3600 }, 'the hour-long tools/call budget, not the minute-long messages one')
  t.match(second.body.error.message, /^Rate limit exceeded \(methods\.tools\/call\)\. Retry in 3600 s\.$/)
})

// --- Keys -----------------------------------------------------------------------------------

t.test('authenticated requests count per principal: two API keys from one address have budgets of their own', async t => {
  const auth = { provider: new ApiKeyAuthProvider({ keys: [{ key: ALICE, principal: 'alice' }, { key: BOB, principal: 'bob' }] }) }
  const { base } = await startApp(t, { auth, rateLimit: { open: perMinute(2), messages: perMinute(4) } })
  const as = (key: string): http.OutgoingHttpHeaders => ({ authorization: `Bearer ${key}` })
  const inits = await all(6, i => mcpPost(t, base, initRequest(i + 1), as(i % 2 === 0 ? ALICE : BOB)))
  t.same(statuses(inits.filter((_, i) => i % 2 === 0)), { 200: 2, 429: 1 }, 'alice: two sessions of three')
  t.same(statuses(inits.filter((_, i) => i % 2 === 1)), { 200: 2, 429: 1 }, 'bob: two sessions of three, from the same address')
  const aliceSession = inits.find((a, i) => i % 2 === 0 && a.status === 200)?.headers['mcp-session-id'] as string
  // alice has one message left (three initializes), bob too.
  t.equal((await mcpPost(t, base, request(10, 'tools/list'), { ...as(ALICE), 'mcp-session-id': aliceSession })).status, 200)
  assertLimited(t, await mcpPost(t, base, request(11, 'tools/list'), { ...as(ALICE), 'mcp-session-id': aliceSession }), 'messages', 4, { id: 11, method: 'tools/list', sessionId: aliceSession, connectionActive: true })
  // A refused key is refused by auth before any budget.
  const anonymous = await all(5, () => mcpPost(t, base, initRequest(20)))
  t.same(statuses(anonymous), { 401: 5 }, 'unauthenticated: 401, never 429')
})

t.test('the HTTP+SSE fallback on {mcpEndpoint} counts per principal too: its auth runs before the limit', async t => {
  const auth = { provider: new ApiKeyAuthProvider({ keys: [{ key: ALICE, principal: 'alice' }, { key: BOB, principal: 'bob' }] }), endpoints: { sse: true, messages: true, mcp: false } }
  const { base } = await startApp(t, { auth, rateLimit: { open: perMinute(2), messages: false } })
  const stream = (key?: string): Promise<Answer> => send(t, 'GET', `${base}/mcp`, { accept: 'text/event-stream', ...(key === undefined ? {} : { authorization: `Bearer ${key}` }) })
  const alice = await all(3, () => stream(ALICE))
  t.same(statuses(alice), { 200: 2, 429: 1 }, 'alice: two streams of three')
  assertLimited(t, alice.find(a => a.status === 429) as Answer, 'open', 2)
  const bob = await stream(BOB)
  t.equal(bob.status, 200, 'bob, from the same address, has a budget of his own')
  t.equal(limits(bob).remaining, 1, 'and it is his: one left')
  const anonymous = await all(3, () => stream())
  t.same(statuses(anonymous), { 401: 3 }, 'unauthenticated: 401, never 429')
  for (const s of [...alice, bob]) s.close()
})

t.test('unauthenticated requests count per client address, X-Forwarded-For honoured with trustProxy', async t => {
  const { base } = await startApp(t, { rateLimit: { open: perMinute(2), messages: false } }, { fastify: { forceCloseConnections: true, trustProxy: true } })
  const from = (ip: string): http.OutgoingHttpHeaders => ({ 'x-forwarded-for': ip })
  const opened = await all(9, i => getSse(t, base, from(['10.0.0.1', '10.0.0.2', '10.0.0.3'][i % 3] as string)))
  for (let c = 0; c < 3; c++) {
    t.same(statuses(opened.filter((_, i) => i % 3 === c)), { 200: 2, 429: 1 }, `client 10.0.0.${c + 1}: two streams of three`)
  }
  // IPv6 clients are counted by /64 (one host's addresses), IPv4-mapped ones as IPv4.
  const v6 = await all(3, i => getSse(t, base, from(`2001:db8:0:1::${i + 1}`)))
  t.same(statuses(v6), { 200: 2, 429: 1 }, 'three addresses of one /64 share a budget')
  const mapped = await getSse(t, base, from('::ffff:10.0.0.1'))
  assertLimited(t, mapped, 'open', 2)
  for (const a of [...opened, ...v6]) a.close()
})

t.test('without trustProxy, X-Forwarded-For is ignored: the socket\'s address is the key', async t => {
  const { base } = await startApp(t, { rateLimit: { open: perMinute(2), messages: false } })
  const opened = await all(4, i => getSse(t, base, { 'x-forwarded-for': `10.0.1.${i}` }))
  t.same(statuses(opened), { 200: 2, 429: 2 }, 'four "clients" from 127.0.0.1 share one budget')
  for (const a of opened) a.close()
})

// --- Redis ----------------------------------------------------------------------------------

t.test('two instances on one Redis share each budget; the counts live under the key prefix and expire', async t => {
  const keyPrefix = testPrefix()
  const redis = { url: REDIS_URL, keyPrefix }
  const rateLimit = { open: perMinute(3), messages: perMinute(10) }
  const a = await startInstance(t, { server: bothEras, redis, rateLimit })
  const b = await startInstance(t, { server: bothEras, redis, rateLimit })
  const calls = await all(16, i => modernPost(t, i % 2 === 0 ? a.base : b.base, i + 1, 'tools/call', { name: 'echo', arguments: { text: 'x' } }))
  t.same(statuses(calls), { 200: 10, 429: 6 }, 'sixteen requests at once through two instances: ten served in all')
  t.ok(calls.some((c, i) => i % 2 === 0 && c.status === 200) && calls.some((c, i) => i % 2 === 1 && c.status === 200), 'both instances served some')
  const streams = await all(6, i => getSse(t, i % 2 === 0 ? a.base : b.base))
  t.same(statuses(streams), { 200: 3, 429: 3 }, 'six streams at once through two instances: three opened in all')
  for (const s of streams) s.close()

  const client = new Redis(REDIS_URL)
  t.teardown(() => client.quit())
  const keys = (await client.keys(`${keyPrefix}ratelimit:*`)).sort()
  t.equal(keys.length, 2, `one key per budget and client: ${keys.join(', ')}`)
  t.ok(keys.some(k => k.endsWith('messages|ip:127.0.0.1')) && keys.some(k => k.endsWith('open|ip:127.0.0.1')), 'keyed by budget and client address')
  for (const key of keys) {
    const ttl = await client.pttl(key)
    t.ok(ttl > 0 && ttl <= 60_000, `${key} expires with its window (${ttl} ms)`)
  }
  t.equal(Number(await client.get(keys.find(k => k.endsWith('messages|ip:127.0.0.1')) as string)), 16, 'every request was counted once')
})

t.test('Redis away: requests are served uncounted, with no RateLimit headers', async t => {
  const redis = await PrivateRedis.start(t)
  const { app, base } = await startInstance(t, { server: bothEras, redis: { url: redis.url, keyPrefix: testPrefix() }, rateLimit: { open: perMinute(1), messages: perMinute(1) } })
  const before = await modernPost(t, base, 1, 'tools/list')
  t.equal(before.status, 200)
  t.equal(limits(before).remaining, 0, 'counted while Redis is there')
  await redis.down()
  await until(() => !(app.mcpSessions as unknown as { connected: boolean }).connected, 5000, 'the instance to see Redis gone')
  const during = await all(5, i => modernPost(t, base, i + 2, 'tools/list'))
  t.same(statuses(during), { 200: 5 }, 'five requests past the budget, all served')
  t.ok(during.every(hasNoLimitHeaders), 'with no RateLimit headers (nothing could be counted)')
})

// --- A host that registered @fastify/rate-limit itself ---------------------------------------

t.test('a host with its own @fastify/rate-limit: the budgets still hold (counted in its store), and a warning says so', async t => {
  const lines: string[] = []
  const stream = new Writable({ write (chunk: Buffer, _enc, done) { lines.push(chunk.toString()); done() } })
  const { base } = await startApp(t, { rateLimit: { open: perMinute(1), messages: false } }, {
    fastify: { forceCloseConnections: true, logger: { level: 'warn', stream } },
    before: async app => {
      await app.register(fastifyRateLimit, { global: false, max: 1000, allowList: () => true })
      app.get('/host', async () => ({ ok: true }))
    }
  })
  t.ok(lines.some(l => l.includes('@fastify/rate-limit is already registered')), 'the warning is logged')
  t.equal((await getSse(t, base)).status, 200)
  assertLimited(t, await getSse(t, base), 'open', 1)
  const host = await all(5, () => send(t, 'GET', `${base}/host`))
  t.same(statuses(host), { 200: 5 }, 'the host route is still not limited')
})

t.test('a rate limit the host applies to every route still answers with the plugin\'s 429 body on its routes', async t => {
  const { base } = await startApp(t, {}, { before: async app => { await app.register(fastifyRateLimit, { global: true, max: 1, timeWindow: 60_000 }) } })
  const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } } })
  const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }
  t.equal((await fetch(`${base}/mcp`, { method: 'POST', headers, body })).status, 200)
  const limited = await fetch(`${base}/mcp`, { method: 'POST', headers, body })
  t.equal(limited.status, 429)
  // The host's hook runs before the body is read: no id to echo.
  t.match(await limited.json(), { jsonrpc: '2.0', id: null, error: { code: -32000, data: { type: 'rate_limited' } } })
})
