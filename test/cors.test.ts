// CORS on the plugin's routes, the Origin allow-list, and encapsulation: nothing the
// plugin sets up (CORS, Origin checks, error and body handling) reaches the host's routes.
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import cors from '@fastify/cors'
import Fastify, { type FastifyInstance } from 'fastify'
import mcpSse from '../src/index.js'
import { exampleServer, initialize, RawStream, startApp } from './support/helpers.js'

interface Answer {
  status: number
  headers: http.IncomingHttpHeaders
  text: string
  body: any
}

/** One request over node:http (any method and header, Origin included). */
function send (method: string, url: string, headers: Record<string, string> = {}, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers }, res => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { text += c })
      res.on('end', () => {
        let parsed: unknown
        try { parsed = text === '' ? undefined : JSON.parse(text) } catch { parsed = undefined }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body: parsed })
      })
    })
    req.on('error', reject)
    req.end(body)
  })
}

const preflight = (url: string, origin: string, method = 'POST'): Promise<Answer> =>
  send('OPTIONS', url, { origin, 'access-control-request-method': method, 'access-control-request-headers': 'content-type' })

const json = (url: string, message: unknown, headers: Record<string, string> = {}): Promise<Answer> =>
  send('POST', url, { 'content-type': 'application/json', ...headers }, JSON.stringify(message))

/** Opens a stream (with request headers) and returns it with its message URL. */
async function session (t: { teardown: (fn: () => unknown) => void }, base: string, headers: Record<string, string> = {}): Promise<{ stream: RawStream, url: string }> {
  const stream = await RawStream.open(`${base}/sse`, headers)
  t.teardown(() => stream.close())
  return { stream, url: await stream.endpoint(base) }
}

function accessControl (headers: http.IncomingHttpHeaders): string[] {
  return Object.keys(headers).filter(h => h.startsWith('access-control-'))
}

const EXPOSE = 'Content-Type, Authorization, x-api-key'

// The app listens on 127.0.0.1, where the DNS-rebinding default lets in only pages from
// loopback origins unless an origin is opened explicitly: the page here is one of those.
const PAGE = 'http://localhost:5173'

// --- default CORS -----------------------------------------------------------------

t.test('by default the stream allows any origin and exposes the documented headers', async t => {
  const { base } = await startApp(t)
  const { stream } = await session(t, base, { origin: PAGE })
  t.equal(stream.res.headers['access-control-allow-origin'], '*')
  t.equal(stream.res.headers['access-control-expose-headers'], EXPOSE)
})

t.test('by default a POSTed message answer allows any origin and exposes the documented headers', async t => {
  const { base } = await startApp(t)
  const { url } = await session(t, base)
  const res = await json(url, initialize(1), { origin: PAGE })
  t.equal(res.status, 202)
  t.equal(res.headers['access-control-allow-origin'], '*')
  t.equal(res.headers['access-control-expose-headers'], EXPOSE)
})

t.test('by default a preflight of the message endpoint answers 204 with the documented values', async t => {
  const { base } = await startApp(t)
  const res = await preflight(`${base}/messages`, PAGE)
  t.equal(res.status, 204)
  t.equal(res.headers['access-control-allow-origin'], '*')
  t.equal(res.headers['access-control-allow-methods'], 'GET, POST, OPTIONS')
  t.equal(res.headers['access-control-allow-headers'], 'Content-Type, Authorization, x-api-key')
  t.equal(res.headers['access-control-max-age'], '86400')
})

t.test('by default a preflight of the stream endpoint answers 204 with the documented values', async t => {
  const { base } = await startApp(t)
  const res = await preflight(`${base}/sse`, PAGE, 'GET')
  t.equal(res.status, 204)
  t.equal(res.headers['access-control-allow-origin'], '*')
  t.equal(res.headers['access-control-allow-methods'], 'GET, POST, OPTIONS')
  t.equal(res.headers['access-control-allow-headers'], 'Content-Type, Authorization, x-api-key')
  t.equal(res.headers['access-control-max-age'], '86400')
})

t.test('error answers of the plugin carry CORS headers so a browser can read them', async t => {
  const { base } = await startApp(t)
  const res = await json(`${base}/messages?sessionId=nope`, initialize(1), { origin: PAGE })
  t.equal(res.status, 404)
  t.equal(res.body.error.data.type, 'session_not_found')
  t.equal(res.headers['access-control-allow-origin'], '*')
})

// --- custom CORS ------------------------------------------------------------------

t.test('a single allowOrigin is the origin answered', async t => {
  const { base } = await startApp(t, { cors: { allowOrigin: 'https://a.example' } })
  const { stream, url } = await session(t, base, { origin: 'https://a.example' })
  t.equal(stream.res.headers['access-control-allow-origin'], 'https://a.example')
  const res = await json(url, initialize(1), { origin: 'https://a.example' })
  t.equal(res.headers['access-control-allow-origin'], 'https://a.example')
})

t.test('a comma-separated allowOrigin reflects an allowed request origin', async t => {
  const { base } = await startApp(t, { cors: { allowOrigin: 'https://a.example, https://b.example' } })
  const { stream, url } = await session(t, base, { origin: 'https://b.example' })
  t.equal(stream.res.headers['access-control-allow-origin'], 'https://b.example')
  t.match(stream.res.headers.vary, /\bOrigin\b/i, 'the answer varies by Origin')
  const res = await json(url, initialize(1), { origin: 'https://b.example' })
  t.equal(res.headers['access-control-allow-origin'], 'https://b.example')
  const pre = await preflight(`${base}/messages`, 'https://a.example')
  t.equal(pre.status, 204)
  t.equal(pre.headers['access-control-allow-origin'], 'https://a.example')
})

t.test('a comma-separated allowOrigin omits the header for another origin', async t => {
  const { base } = await startApp(t, { cors: { allowOrigin: 'https://a.example, https://b.example' } })
  const { stream, url } = await session(t, base, { origin: PAGE })
  t.equal(stream.res.headers['access-control-allow-origin'], undefined)
  const res = await json(url, initialize(1), { origin: PAGE })
  t.equal(res.headers['access-control-allow-origin'], undefined)
  const pre = await preflight(`${base}/messages`, PAGE)
  t.equal(pre.headers['access-control-allow-origin'], undefined)
})

// --- cors: false ------------------------------------------------------------------

t.test('cors false writes no access-control headers on the stream or on messages', async t => {
  const { base } = await startApp(t, { cors: false })
  const { stream, url } = await session(t, base, { origin: PAGE })
  t.same(accessControl(stream.res.headers), [])
  const res = await json(url, initialize(1), { origin: PAGE })
  t.equal(res.status, 202)
  t.same(accessControl(res.headers), [])
})

t.test('cors false does not answer preflights', async t => {
  const { base } = await startApp(t, { cors: false })
  const res = await preflight(`${base}/messages`, 'https://site.example')
  t.ok(res.status >= 400, `answered ${res.status}, not a successful preflight`)
  t.same(accessControl(res.headers), [])
})

// --- allowedOrigins ---------------------------------------------------------------

t.test('a preflight from an allowed origin answers 204', async t => {
  const { base } = await startApp(t, { allowedOrigins: ['https://ok.example'] })
  const res = await preflight(`${base}/messages`, 'https://ok.example')
  t.equal(res.status, 204)
  t.equal(res.headers['access-control-allow-methods'], 'GET, POST, OPTIONS')
})

t.test('a stream request from a foreign origin answers 403 forbidden_origin', async t => {
  const { base, app } = await startApp(t, { allowedOrigins: ['https://ok.example'] })
  const res = await send('GET', `${base}/sse`, { origin: 'https://evil.example' })
  t.equal(res.status, 403)
  t.match(res.headers['content-type'], /^application\/json/)
  t.match(res.body, { jsonrpc: '2.0', id: null, error: { code: -32000, data: { type: 'forbidden_origin' } } })
  t.equal(app.mcpSessions.size, 0)
})

t.test('a preflight from a foreign origin answers 403 forbidden_origin', async t => {
  const { base } = await startApp(t, { allowedOrigins: ['https://ok.example'] })
  const res = await preflight(`${base}/messages`, 'https://evil.example')
  t.equal(res.status, 403)
  t.match(res.body, { jsonrpc: '2.0', id: null, error: { code: -32000, data: { type: 'forbidden_origin' } } })
})

// --- encapsulation ----------------------------------------------------------------

/** A host app with its own routes, parser and handlers, registered beside the plugin. */
function host (app: FastifyInstance): void {
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)))
  })
  app.setErrorHandler((err: Error, _req, reply) => { reply.code(418).send({ hostError: err.message }) })
  app.setNotFoundHandler((req, reply) => { reply.code(404).send({ hostNotFound: req.url }) })
  app.get('/health', async () => ({ ok: true }))
  app.post('/echo', async req => ({ echoed: req.body }))
  app.options('/health', async (_req, reply) => { reply.code(200).header('allow', 'GET, OPTIONS').send('host options') })
  app.get('/boom', async () => { throw new Error('host boom') })
}

const guarded = { allowedOrigins: ['https://ok.example'] }

t.test('a host GET route gets no CORS headers and no Origin check from the plugin', async t => {
  const { base } = await startApp(t, guarded, { before: host })
  const res = await send('GET', `${base}/health`, { origin: 'https://evil.example' })
  t.equal(res.status, 200)
  t.same(res.body, { ok: true })
  t.same(accessControl(res.headers), [])
})

t.test('a host POST route gets no CORS headers and no Origin check from the plugin', async t => {
  const { base } = await startApp(t, guarded, { before: host })
  const res = await send('POST', `${base}/echo`, { origin: 'https://evil.example', 'content-type': 'application/json' }, '{"a":1}')
  t.equal(res.status, 200)
  t.same(res.body, { echoed: { a: 1 } })
  t.same(accessControl(res.headers), [])
})

t.test('a host OPTIONS route is answered by the host, not as the plugin\'s preflight', async t => {
  const { base } = await startApp(t, guarded, { before: host })
  const res = await preflight(`${base}/health`, 'https://evil.example', 'GET')
  t.equal(res.status, 200)
  t.equal(res.headers.allow, 'GET, OPTIONS')
  t.equal(res.text, 'host options')
  t.same(accessControl(res.headers), [])
})

t.test('the host error handler still answers errors of host routes', async t => {
  const { base } = await startApp(t, guarded, { before: host })
  const res = await send('GET', `${base}/boom`)
  t.equal(res.status, 418)
  t.same(res.body, { hostError: 'host boom' })
})

t.test('the host not-found handler still answers unknown paths', async t => {
  const { base } = await startApp(t, guarded, { before: host })
  const res = await send('GET', `${base}/nope`, { origin: 'https://evil.example' })
  t.equal(res.status, 404)
  t.same(res.body, { hostNotFound: '/nope' })
  t.same(accessControl(res.headers), [])
})

t.test('the host content-type parsers still work on host routes', async t => {
  const { base } = await startApp(t, guarded, { before: host })
  const res = await send('POST', `${base}/echo`, { 'content-type': 'application/x-www-form-urlencoded' }, 'a=1&b=two')
  t.equal(res.status, 200)
  t.same(res.body, { echoed: { a: '1', b: 'two' } })
})

t.test('the host content-type parsers do not open the message endpoint to other types', async t => {
  const { base } = await startApp(t, {}, { before: host })
  const { url } = await session(t, base)
  const res = await send('POST', url, { 'content-type': 'application/x-www-form-urlencoded' }, 'jsonrpc=2.0&method=ping&id=1')
  t.equal(res.status, 415)
  t.equal(res.body.error.data.type, 'unsupported_media_type')
})

t.test('the plugin still answers its own errors as JSON-RPC beside a host error handler', async t => {
  const { base } = await startApp(t, guarded, { before: host })
  const res = await json(`${base}/messages?sessionId=nope`, initialize(3))
  t.equal(res.status, 404)
  t.match(res.body, { jsonrpc: '2.0', id: 3, error: { code: -32001, data: { type: 'session_not_found' } } })
})

// --- a host that registers @fastify/cors itself -------------------------------------

type Order = 'before' | 'after'

/** A host app whose root registers @fastify/cors with its own settings, before or after the plugin. */
async function hostWithCors (t: { teardown: (fn: () => unknown) => void }, order: Order): Promise<{ app: FastifyInstance, base: string }> {
  const app = Fastify({ forceCloseConnections: true })
  t.teardown(() => app.close())
  const hostCors = async (): Promise<void> => {
    await app.register(cors, { origin: 'https://host.example', methods: ['GET', 'PUT'], maxAge: 600 })
  }
  if (order === 'before') await hostCors()
  await app.register(mcpSse, { server: () => exampleServer() })
  if (order === 'after') await hostCors()
  app.get('/health', async () => ({ ok: true }))
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { app, base: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}` }
}

const opts = (_key: string, _order: Order): Record<string, never> => ({})

for (const order of ['before', 'after'] as const) {
  t.test(`a host that registers @fastify/cors at its root ${order} the plugin starts without a clash`, opts('starts', order), async t => {
    const { app } = await hostWithCors(t, order)
    t.ok(app.hasRoute({ method: 'OPTIONS', url: '/*' }), 'the host keeps its OPTIONS * route')
    t.ok(app.hasRoute({ method: 'GET', url: '/sse' }), 'the plugin serves its stream')
    t.ok(app.hasRoute({ method: 'POST', url: '/messages' }), 'the plugin serves its messages')
  })

  t.test(`host routes answer with the host's own CORS settings when it registers @fastify/cors ${order} the plugin`, opts('host', order), async t => {
    const { base } = await hostWithCors(t, order)
    const res = await send('GET', `${base}/health`, { origin: 'https://host.example' })
    t.equal(res.status, 200)
    t.equal(res.headers['access-control-allow-origin'], 'https://host.example')
    const pre = await preflight(`${base}/health`, 'https://host.example', 'PUT')
    t.equal(pre.status, 204)
    t.equal(pre.headers['access-control-allow-origin'], 'https://host.example')
    t.equal(pre.headers['access-control-allow-methods'], 'GET, PUT')
    t.equal(pre.headers['access-control-max-age'], '600')
  })

  t.test(`the plugin's preflights answer with the plugin's CORS settings when the host registers @fastify/cors ${order} it`, opts('preflight', order), async t => {
    const { base } = await hostWithCors(t, order)
    for (const path of ['/messages', '/sse']) {
      const res = await preflight(`${base}${path}`, PAGE)
      t.equal(res.status, 204, path)
      t.equal(res.headers['access-control-allow-origin'], '*', path)
      t.equal(res.headers['access-control-allow-methods'], 'GET, POST, OPTIONS', path)
      t.equal(res.headers['access-control-max-age'], '86400', path)
    }
  })

  t.test(`the plugin's stream and messages answer with the plugin's CORS settings when the host registers @fastify/cors ${order} it`, opts('answers', order), async t => {
    const { base } = await hostWithCors(t, order)
    const { stream, url } = await session(t, base, { origin: PAGE })
    t.equal(stream.res.headers['access-control-allow-origin'], '*')
    t.equal(stream.res.headers['access-control-expose-headers'], EXPOSE)
    const res = await json(url, initialize(1), { origin: PAGE })
    t.equal(res.status, 202)
    t.equal(res.headers['access-control-allow-origin'], '*')
    t.equal(res.headers['access-control-expose-headers'], EXPOSE)
  })
}

t.test('an OPTIONS request without Origin, even with a body, is answered 204 before any body is read', async t => {
  const { base } = await startApp(t)
  for (const path of ['/sse', '/messages']) {
    const res = await fetch(`${base}${path}`, { method: 'OPTIONS', body: '{"jsonrpc":"2.0","id":1,"method":"ping"}' })
    t.equal(res.status, 204, path)
    t.equal(res.headers.get('access-control-allow-origin'), '*')
    t.equal(res.headers.get('access-control-allow-methods'), 'GET, POST, OPTIONS')
  }
})

t.test('plain requests without Origin carry no CORS headers (only browsers read them)', async t => {
  const { base } = await startApp(t)
  const res = await fetch(`${base}/messages?sessionId=x`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"jsonrpc":"2.0","id":1,"method":"ping"}' })
  t.equal(res.status, 404)
  t.equal(res.headers.get('access-control-allow-origin'), null)
  const withOrigin = await fetch(`${base}/messages?sessionId=x`, { method: 'POST', headers: { 'content-type': 'application/json', origin: PAGE }, body: '{"jsonrpc":"2.0","id":1,"method":"ping"}' })
  t.equal(withOrigin.headers.get('access-control-allow-origin'), '*')
})
