// A real browser as the MCP client: headless Chromium (Debian's /usr/bin/chromium, driven
// with playwright-core) loads a page from one origin that talks to the plugin on another
// origin with nothing but EventSource and fetch. Whether the browser lets the page read
// the stream and the answers is decided by Chromium's own CORS checks, not by us.
//
// This test never skips: without Chromium it fails, saying how to install it.
import http from 'node:http'
import { existsSync, readFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import { chromium, type Page } from 'playwright-core'
import type { FastifyInstance } from 'fastify'
import { ApiKeyAuthProvider, type McpSseOptions } from '../src/index.js'
import { RawStream, startApp, until, type TestApp } from './support/helpers.js'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const PAGE = readFileSync(new URL('./fixtures/real-clients/mcp-page.html', import.meta.url))
const TEXT = 'hello from the browser'

if (!existsSync(CHROMIUM)) {
  throw new Error(`Chromium not found at ${CHROMIUM}. The browser tests never skip: install it ` +
    '(apt-get update && apt-get install -y chromium) or point CHROMIUM_PATH at a Chromium binary.')
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    // Names under .test resolve to this machine: a page on a non-loopback origin, and a
    // DNS-rebinding attack (a hostile name that resolves to the server), stay on loopback.
    '--host-resolver-rules=MAP *.test 127.0.0.1'],
  timeout: 20_000
})
t.teardown(() => browser.close())

/** What the page's `mcpSession()` reports (see the fixture). */
interface SessionRun {
  endpoint: string | null
  sseErrors: Array<{ readyState: number }>
  posts: Array<{ method: string, status: number, body: string }>
  replies: Array<{ id?: number, result?: Record<string, unknown>, error?: unknown }>
  initialize: { result?: { serverInfo?: { name?: string } } } | null
  echo: string | null
  error: { name: string, message: string } | null
}

/** What the page's `mcpPost()` reports. */
interface PostRun {
  status: number | null
  body: string | null
  error: { name: string, message: string } | null
}

/** What the page's `mcpStreamable()` reports. */
interface StreamableRun {
  sessionId: string | null
  protocolVersion: string | null
  posts: Array<{ method: string, status: number, contentType: string, body: string }>
  initialize: { result?: { protocolVersion?: string, serverInfo?: { name?: string } } } | null
  echo: string | null
  deleteStatus: number | null
  deleteBody: string | null
  error: { name: string, message: string } | null
}

interface PageApi {
  mcpSession (base: string, opts: { apiKey?: string, timeoutMs?: number, text?: string, path?: string }): Promise<SessionRun>
  mcpStreamable (base: string, opts: { apiKey?: string, text?: string, path?: string, protocolVersion?: string, deleteWithJsonHeaders?: boolean }): Promise<StreamableRun>
  mcpPost (url: string, body: unknown, headers?: Record<string, string>): Promise<PostRun>
  __result: unknown
}

/**
 * The page's origin: a plain node:http server on another port of 127.0.0.1, named by
 * `hostname` (a loopback origin by default; a name under .test for a foreign one).
 */
async function startPageServer (t: Test, hostname = '127.0.0.1'): Promise<string> {
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' })
      res.end(PAGE)
      return
    }
    res.writeHead(404)
    res.end()
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => {
    server.closeAllConnections()
    server.close(() => resolve())
  }))
  return `http://${hostname}:${(server.address() as AddressInfo).port}`
}

interface LoggedRequest {
  method: string
  path: string
  status: number
  origin: string | undefined
  requestHeaders: string | undefined
  requestMethod?: string | undefined
  /** The CORS headers of the answer (lower-cased). */
  allowOrigin?: string | undefined
  allowMethods?: string | undefined
  allowHeaders?: string | undefined
  exposeHeaders?: string | undefined
}

function headerOf (value: unknown): string | undefined {
  return value === undefined ? undefined : String(value).toLowerCase()
}

/** The MCP app on its own origin, logging every answered request (hijacked streams aside). */
async function startMcp (t: Test, opts: Partial<McpSseOptions>, hostRoutes?: (app: FastifyInstance) => void): Promise<TestApp & { log: LoggedRequest[] }> {
  const log: LoggedRequest[] = []
  const started = await startApp(t, opts, {
    before: (app: FastifyInstance) => {
      hostRoutes?.(app)
      app.addHook('onResponse', async (request, reply) => {
        const ach = request.headers['access-control-request-headers']
        log.push({
          method: request.method,
          path: request.url.split('?')[0] as string,
          status: reply.statusCode,
          origin: request.headers.origin,
          requestHeaders: typeof ach === 'string' ? ach.toLowerCase() : undefined,
          requestMethod: headerOf(request.headers['access-control-request-method']),
          allowOrigin: headerOf(reply.getHeader('access-control-allow-origin')),
          allowMethods: headerOf(reply.getHeader('access-control-allow-methods')),
          allowHeaders: headerOf(reply.getHeader('access-control-allow-headers')),
          exposeHeaders: headerOf(reply.getHeader('access-control-expose-headers'))
        })
      })
    }
  })
  return { ...started, log }
}

interface OpenedPage { page: Page, consoleErrors: string[] }

async function openPage (t: Test, origin: string): Promise<OpenedPage> {
  const context = await browser.newContext()
  t.teardown(() => context.close())
  const page = await context.newPage()
  const consoleErrors: string[] = []
  page.on('console', m => { if (m.type() === 'error') consoleErrors.push(m.text()) })
  await page.goto(`${origin}/`)
  t.equal(new URL(page.url()).origin, origin, 'the page runs on its own origin')
  return { page, consoleErrors }
}

function runSession (page: Page, base: string, opts: { apiKey?: string, timeoutMs?: number, path?: string } = {}): Promise<SessionRun> {
  return page.evaluate(([b, o]) => (globalThis as unknown as PageApi).mcpSession(b, o), [base, opts] as const)
}

function runStreamable (page: Page, base: string, opts: { apiKey?: string, path?: string, protocolVersion?: string, deleteWithJsonHeaders?: boolean } = {}): Promise<StreamableRun> {
  return page.evaluate(([b, o]) => (globalThis as unknown as PageApi).mcpStreamable(b, o), [base, opts] as const)
}

function runPost (page: Page, url: string, body: unknown, headers: Record<string, string> = {}): Promise<PostRun> {
  return page.evaluate(([u, b, h]) => (globalThis as unknown as PageApi).mcpPost(u, b, h), [url, body, headers] as const)
}

/** The whole flow works: the echo text arrives in the page, from the page's origin. */
async function assertWorks (t: Test, page: Page, mcp: TestApp & { log: LoggedRequest[] }, origin: string, apiKey?: string, path?: string): Promise<void> {
  const r = await runSession(page, mcp.base, { ...(apiKey === undefined ? {} : { apiKey }), ...(path === undefined ? {} : { path }) })
  t.equal(r.error, null, 'no error in the page')
  t.match(r.endpoint, /^\/messages\?sessionId=[0-9a-f-]{36}$/, 'the page read the endpoint event')
  t.same(r.posts.map(p => [p.method, p.status]),
    [['initialize', 202], ['notifications/initialized', 202], ['tools/call', 202]], 'the page read every POST status')
  t.equal(r.initialize?.result?.serverInfo?.name, 'fastify-mcp-sse-example', 'the initialize reply came on the stream')
  t.equal(r.echo, TEXT, 'the echo text arrived in the page')
  t.same(await page.evaluate(() => ((globalThis as unknown as PageApi).__result as SessionRun).echo), TEXT, 'window.__result holds it too')
  const posts = mcp.log.filter(x => x.method === 'POST')
  t.equal(posts.length, 3, 'three POSTs reached the server')
  t.ok(posts.every(x => x.origin === origin && x.status === 202), 'each carried the page\'s Origin and answered 202')
  // The page closed its EventSource: the server notices and ends the session.
  await until(() => mcp.app.mcpSessions.size === 0, 5000, 'the browser\'s session to close')
}

/** The browser refused the stream: the page never saw the endpoint event or any reply. */
function assertStreamBlocked (t: Test, r: SessionRun): void {
  t.same(r.error, { name: 'Error', message: 'EventSource failed' }, 'the EventSource failed')
  t.ok(r.sseErrors.length >= 1 && r.sseErrors.every(e => e.readyState === 2), 'with an error event and readyState CLOSED (no reconnect)')
  t.equal(r.endpoint, null, 'the page never read the endpoint event')
  t.same(r.replies, [], 'nor any message')
  t.equal(r.echo, null)
}

/**
 * The server did open a session for the blocked stream (CORS only decides what the page may
 * read); Chromium lets go of the socket about 5 s later, and the session closes with it.
 */
async function assertStreamDropped (t: Test, mcp: TestApp): Promise<void> {
  await until(() => mcp.app.mcpSessions.size === 0, 15_000, 'the blocked stream\'s session to close')
  t.pass('the browser dropped the blocked stream and the server closed its session')
}

/** A POST to a real session (opened out of band, without Origin) is stopped by the preflight. */
async function assertPostBlocked (t: Test, page: Page, mcp: TestApp & { log: LoggedRequest[] }, preflightStatus: number): Promise<void> {
  const raw = await RawStream.open(`${mcp.base}/sse`)
  t.teardown(() => raw.close())
  const url = await raw.endpoint(mcp.base)
  const before = mcp.log.length
  const p = await runPost(page, url, { jsonrpc: '2.0', id: 1, method: 'ping' })
  t.equal(p.status, null, 'the page got no answer to read')
  t.equal(p.error?.name, 'TypeError', 'fetch rejected with a TypeError')
  const seen = mcp.log.slice(before)
  t.same(seen.map(x => [x.method, x.path, x.status]), [['OPTIONS', '/messages', preflightStatus]],
    'only the preflight reached the server: the browser never sent the POST')
  await t.rejects(raw.next('message', 300), /timed out/, 'so no reply was ever sent to the session')
}

t.test('default CORS (allowOrigin "*"): a page on another origin runs a whole session', async t => {
  const origin = await startPageServer(t)
  const mcp = await startMcp(t, {})
  const { page, consoleErrors } = await openPage(t, origin)
  await assertWorks(t, page, mcp, origin)
  const preflights = mcp.log.filter(x => x.method === 'OPTIONS')
  t.ok(preflights.length >= 1 && preflights.every(x => x.status === 204 && x.requestHeaders === 'content-type'),
    'the JSON POST needed a preflight, and it passed')
  t.same(consoleErrors, [], 'the browser logged no error')
})

t.test('allowOrigin naming the page\'s origin: a whole session works', async t => {
  const origin = await startPageServer(t)
  const mcp = await startMcp(t, { cors: { allowOrigin: origin } })
  const { page, consoleErrors } = await openPage(t, origin)
  await assertWorks(t, page, mcp, origin)
  t.same(consoleErrors, [], 'the browser logged no error')
})

t.test('allowOrigin in a list with another origin: a whole session works', async t => {
  const origin = await startPageServer(t)
  const mcp = await startMcp(t, { cors: { allowOrigin: `https://elsewhere.example, ${origin}` } })
  const { page } = await openPage(t, origin)
  await assertWorks(t, page, mcp, origin)
})

t.test('allowOrigin naming another origin: the browser blocks the stream and the POSTs', async t => {
  const origin = await startPageServer(t)
  const mcp = await startMcp(t, { cors: { allowOrigin: 'https://elsewhere.example' } })
  const { page, consoleErrors } = await openPage(t, origin)
  assertStreamBlocked(t, await runSession(page, mcp.base, { timeoutMs: 5000 }))
  await assertStreamDropped(t, mcp)
  await assertPostBlocked(t, page, mcp, 204)
  t.ok(consoleErrors.some(m => /blocked by CORS policy/.test(m)), 'Chromium says CORS blocked it')
})

t.test('by default a page on a foreign origin is refused: 403 before any session, and its POSTs stop at the preflight', async t => {
  const origin = await startPageServer(t, 'page.test')
  const mcp = await startMcp(t, {})
  const { page } = await openPage(t, origin)
  assertStreamBlocked(t, await runSession(page, mcp.base, { timeoutMs: 5000 }))
  t.same(mcp.log.filter(x => x.path === '/sse').map(x => [x.method, x.status, x.origin]), [['GET', 403, origin]],
    'the server refused the stream with 403')
  t.equal(mcp.app.mcpSessions.size, 0, 'and opened no session for it')
  await assertPostBlocked(t, page, mcp, 403)
})

t.test('a page on a foreign origin runs a whole session once its origin is opened (allowedOrigins or cors.allowOrigin)', async t => {
  const origin = await startPageServer(t, 'page.test')
  for (const opts of [{ allowedOrigins: [origin] }, { cors: { allowOrigin: origin } }, { cors: { allowOrigin: '*' } }]) {
    t.test(JSON.stringify(opts), async t => {
      const mcp = await startMcp(t, opts)
      const { page } = await openPage(t, origin)
      await assertWorks(t, page, mcp, origin)
    })
  }
})

t.test('DNS rebinding: a page served under a hostile name that resolves to the server itself is refused by default', async t => {
  const mcp = await startMcp(t, {}, app => {
    // The attacker's page, as the rebound name would serve it: same origin as the MCP routes.
    app.get('/', (_request, reply) => { reply.type('text/html; charset=utf-8').send(PAGE) })
  })
  const origin = `http://rebind.test:${new URL(mcp.base).port}`
  const { page } = await openPage(t, origin)
  const r = await runSession(page, origin, { timeoutMs: 5000 })
  t.same(r.error, { name: 'Error', message: 'EventSource failed' }, 'the same-origin stream failed')
  t.equal(r.endpoint, null, 'no endpoint event reached the page')
  t.same(mcp.log.filter(x => x.path === '/sse').map(x => [x.method, x.status]), [['GET', 403]], 'the server answered 403 to the rebound Host')
  t.equal(mcp.app.mcpSessions.size, 0, 'and opened no session')
  const p = await runPost(page, `${origin}/messages?sessionId=x`, { jsonrpc: '2.0', id: 1, method: 'ping' })
  t.equal(p.status, 403, 'a same-origin POST reads 403')
  t.match(JSON.parse(p.body ?? '{}'), { error: { code: -32000, data: { type: 'forbidden_origin' }, message: /^Host "rebind\.test:\d+" is not allowed\..*allowedHosts/ } },
    'whose message names the Host and the option that would let it in')
})

t.test('cors false: the browser blocks the stream and the POSTs', async t => {
  const origin = await startPageServer(t)
  const mcp = await startMcp(t, { cors: false })
  const { page, consoleErrors } = await openPage(t, origin)
  assertStreamBlocked(t, await runSession(page, mcp.base, { timeoutMs: 5000 }))
  await assertStreamDropped(t, mcp)
  // No preflight route either: the OPTIONS request is the app's 404.
  await assertPostBlocked(t, page, mcp, 404)
  t.ok(consoleErrors.some(m => /blocked by CORS policy/.test(m)), 'Chromium says CORS blocked it')
})

t.test('an API key in x-api-key: the preflight passes without it and the call works', async t => {
  const origin = await startPageServer(t)
  const mcp = await startMcp(t, {
    auth: { provider: new ApiKeyAuthProvider({ keys: ['k'] }), endpoints: { sse: false } }
  })
  const { page, consoleErrors } = await openPage(t, origin)
  await assertWorks(t, page, mcp, origin, 'k')
  const preflights = mcp.log.filter(x => x.method === 'OPTIONS')
  t.ok(preflights.length >= 1, 'the custom header made the browser send a preflight')
  t.ok(preflights.every(x => x.status === 204 && x.path === '/messages' && x.origin === origin &&
    x.requestHeaders?.split(',').map(h => h.trim()).sort().join(',') === 'content-type,x-api-key'),
  'the preflight asked for content-type and x-api-key (and carried no key) and answered 204')
  t.same(consoleErrors, [], 'the browser logged no error')
})

t.test('an API key: a page without the key, or with a wrong one, reads the 401 (CORS headers on the error)', async t => {
  const origin = await startPageServer(t)
  const mcp = await startMcp(t, {
    auth: { provider: new ApiKeyAuthProvider({ keys: ['k'] }), endpoints: { sse: false } }
  })
  const { page } = await openPage(t, origin)
  for (const apiKey of [undefined, 'wrong']) {
    const r = await runSession(page, mcp.base, apiKey === undefined ? {} : { apiKey })
    t.match(r.endpoint, /^\/messages\?sessionId=/, 'the stream opens without credentials (endpoints.sse false)')
    t.equal(r.posts.length, 1)
    t.equal(r.posts[0]?.status, 401, 'the page could read the 401')
    // Auth runs before the body is read, so the error cannot echo the request id.
    t.match(JSON.parse(r.posts[0]?.body ?? '{}'), { jsonrpc: '2.0', id: null, error: { code: -32000, data: { type: 'authentication_error' } } },
      'and its JSON-RPC error body')
    t.same(r.error, { name: 'Error', message: 'POST initialize answered 401' })
    t.equal(r.echo, null)
  }
})

// Streamable HTTP on /mcp from a page: fetch alone, the session id read off a response
// header (which the browser shows the page only if the server exposes it).

const list = (header: string | undefined): string[] => (header ?? '').split(',').map(h => h.trim()).filter(h => h !== '')

/** The page ran a whole Streamable HTTP session: it read the session id, the replies and the DELETE's 204. */
async function assertStreamableWorks (t: Test, page: Page, mcp: TestApp & { log: LoggedRequest[] }, origin: string, replyType: string): Promise<void> {
  const r = await runStreamable(page, mcp.base)
  t.equal(r.error, null, 'no error in the page')
  t.match(r.sessionId, /^[0-9a-f-]{36}$/, 'the page read the Mcp-Session-Id header of the initialize answer')
  t.same(r.posts.map(p => [p.method, p.status]), [['initialize', 200], ['notifications/initialized', 202], ['tools/call', 200]],
    'the page read every POST status')
  t.same(r.posts.filter(p => p.status === 200).map(p => p.contentType.split(';')[0]), [replyType, replyType], `the requests were answered as ${replyType}`)
  t.equal(r.initialize?.result?.serverInfo?.name, 'fastify-mcp-sse-example', 'the initialize reply came on its POST')
  t.equal(r.protocolVersion, '2025-06-18', 'the negotiated protocol version, sent back in MCP-Protocol-Version')
  t.equal(r.echo, TEXT, 'the echo text arrived in the page')
  t.equal(r.deleteStatus, 204, 'the page read the DELETE\'s 204')
  t.equal(mcp.app.mcpSessions.size, 0, 'the DELETE ended the session on the server')
  t.same(mcp.log.filter(x => x.method !== 'OPTIONS').map(x => [x.method, x.path, x.status, x.origin]),
    [['POST', '/mcp', 200, origin], ['POST', '/mcp', 202, origin], ['POST', '/mcp', 200, origin], ['DELETE', '/mcp', 204, origin]],
    'the three POSTs and the DELETE reached /mcp with the page\'s Origin')
  const preflights = mcp.log.filter(x => x.method === 'OPTIONS')
  // Chromium caches a preflight's answer (Access-Control-Max-Age): the later requests, with
  // Mcp-Session-Id, MCP-Protocol-Version or DELETE, went out on the lists of the first one.
  t.ok(preflights.length >= 1, 'the JSON POSTs needed a preflight')
  t.match(preflights[0], { path: '/mcp', requestMethod: 'post', requestHeaders: 'content-type' }, 'the first, for initialize, asked for POST and Content-Type')
  for (const p of preflights) {
    t.match(p, { path: '/mcp', status: 204, origin }, `the preflight (${p.requestMethod ?? '?'}: ${p.requestHeaders ?? ''}) answered 204`)
    t.ok(['content-type', 'mcp-session-id', 'mcp-protocol-version', 'last-event-id'].every(h => list(p.allowHeaders).includes(h)),
      'allowing Content-Type and the MCP headers')
    t.ok(['get', 'post', 'delete'].every(m => list(p.allowMethods).includes(m)), 'and GET, POST and DELETE')
  }
  t.ok(list(mcp.log.find(x => x.method === 'POST')?.exposeHeaders).includes('mcp-session-id'), 'the initialize answer exposed Mcp-Session-Id')
}

t.test('Streamable HTTP: a page on another (loopback) origin runs a whole session on /mcp with fetch', async t => {
  const origin = await startPageServer(t)
  const mcp = await startMcp(t, {})
  const { page, consoleErrors } = await openPage(t, origin)
  await assertStreamableWorks(t, page, mcp, origin, 'application/json')
  t.same(consoleErrors, [], 'the browser logged no error')
})

t.test('Streamable HTTP with responseMode "sse": the page reads each reply off its POST\'s event stream', async t => {
  const origin = await startPageServer(t)
  const mcp = await startMcp(t, { responseMode: 'sse' })
  const { page, consoleErrors } = await openPage(t, origin)
  await assertStreamableWorks(t, page, mcp, origin, 'text/event-stream')
  t.same(consoleErrors, [], 'the browser logged no error')
})

t.test('Streamable HTTP with allowOrigin naming another origin: the browser stops the page at the preflight', async t => {
  const origin = await startPageServer(t)
  const mcp = await startMcp(t, { cors: { allowOrigin: 'https://elsewhere.example' } })
  const { page, consoleErrors } = await openPage(t, origin)
  const r = await runStreamable(page, mcp.base)
  t.equal(r.error?.name, 'TypeError', 'fetch rejected with a TypeError')
  t.equal(r.sessionId, null, 'the page read no session id')
  t.same(r.posts, [], 'nor any answer')
  t.same(mcp.log.map(x => [x.method, x.path, x.status, x.allowOrigin]), [['OPTIONS', '/mcp', 204, undefined]],
    'only the preflight reached the server, answered without Access-Control-Allow-Origin: the POST was never sent')
  t.equal(mcp.app.mcpSessions.size, 0, 'no session was opened')
  t.ok(consoleErrors.some(m => /blocked by CORS policy/.test(m)), 'Chromium says CORS blocked it')
})

t.test('Streamable HTTP: by default a page on a foreign origin is refused at /mcp (403 preflight, no session)', async t => {
  const origin = await startPageServer(t, 'page.test')
  const mcp = await startMcp(t, {})
  const { page } = await openPage(t, origin)
  const r = await runStreamable(page, mcp.base)
  t.equal(r.error?.name, 'TypeError', 'fetch rejected with a TypeError')
  t.same(r.posts, [], 'the page read no answer')
  t.same(mcp.log.map(x => [x.method, x.path, x.status, x.origin]), [['OPTIONS', '/mcp', 403, origin]], 'the server refused the preflight with 403')
  t.equal(mcp.app.mcpSessions.size, 0, 'and opened no session')
})

t.test('an old client in a page given only the /mcp URL: EventSource on /mcp gets the endpoint event and a whole HTTP+SSE session', async t => {
  const origin = await startPageServer(t)
  const mcp = await startMcp(t, {})
  const { page, consoleErrors } = await openPage(t, origin)
  await assertWorks(t, page, mcp, origin, undefined, '/mcp')
  t.notOk(mcp.log.some(x => x.path === '/mcp' && x.method !== 'GET'), 'nothing but the stream\'s GET went to /mcp: the messages went to /messages')
  t.same(consoleErrors, [], 'the browser logged no error')
})

// A page with one fixed set of headers sends Content-Type on its DELETE too (no body).
t.test('Streamable HTTP: a page that sends its JSON headers on the DELETE too ends the session', async t => {
  const origin = await startPageServer(t)
  const mcp = await startMcp(t, {})
  const { page } = await openPage(t, origin)
  const r = await runStreamable(page, mcp.base, { deleteWithJsonHeaders: true })
  t.equal(r.echo, TEXT, 'the session worked')
  t.equal(r.deleteStatus, 204, 'the page read the DELETE\'s 204', { body: r.deleteBody })
  t.equal(mcp.app.mcpSessions.size, 0, 'the DELETE ended the session on the server')
})
