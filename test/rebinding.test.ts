// DNS-rebinding protection without configuration: on a loopback listener the plugin
// serves only loopback Host names and loopback (or explicitly opened) Origins, on every
// route; allowlists replace the default; an opt-out exists; other interfaces keep the
// old behaviour.
import http from 'node:http'
import t from 'tap'
import Fastify from 'fastify'
import mcpSse, { type McpSseOptions } from '../src/index.js'
import { exampleServer, startApp } from './support/helpers.js'

interface Answer { status: number, body: any }

/** One request over node:http with exactly these headers (Host included). */
function send (base: string, method: string, path: string, headers: Record<string, string>, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}${path}`, { method, headers }, res => {
      if (res.statusCode === 200 && res.headers['content-type']?.startsWith('text/event-stream') === true) {
        resolve({ status: 200, body: undefined })
        req.destroy()
        return
      }
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { text += c })
      res.on('end', () => {
        let parsed: unknown
        try { parsed = text === '' ? undefined : JSON.parse(text) } catch { parsed = text }
        resolve({ status: res.statusCode ?? 0, body: parsed })
      })
    })
    req.on('error', reject)
    req.end(body)
  })
}

/** Every route of the plugin, each with what a valid request needs. */
const ROUTES: Array<{ name: string, method: string, path: string, headers: Record<string, string>, body?: string, ok: number }> = [
  { name: 'GET /sse', method: 'GET', path: '/sse', headers: { accept: 'text/event-stream' }, ok: 200 },
  { name: 'POST /messages', method: 'POST', path: '/messages?sessionId=none', headers: { 'content-type': 'application/json' }, body: '{"jsonrpc":"2.0","id":1,"method":"ping"}', ok: 404 },
  { name: 'OPTIONS /sse', method: 'OPTIONS', path: '/sse', headers: { 'access-control-request-method': 'GET' }, ok: 204 },
  { name: 'OPTIONS /messages', method: 'OPTIONS', path: '/messages', headers: { 'access-control-request-method': 'POST' }, ok: 204 }
]

async function loopbackApp (t: { teardown: (fn: () => unknown) => void }, opts: Partial<McpSseOptions> = {}): Promise<{ base: string, port: number }> {
  const { base } = await startApp(t, opts)
  return { base, port: Number(new URL(base).port) }
}

t.test('by default, on a loopback listener, a foreign Host is refused on every route with 403 naming allowedHosts', async t => {
  const { base } = await loopbackApp(t)
  for (const r of ROUTES) {
    const res = await send(base, r.method, r.path, { ...r.headers, host: 'attacker.example:8080' }, r.body)
    t.equal(res.status, 403, r.name)
    t.match(res.body, { jsonrpc: '2.0', error: { code: -32000, data: { type: 'forbidden_origin' } } }, r.name)
    t.match(res.body.error.message, /^Host "attacker\.example:8080" is not allowed\. .*loopback.*allowedHosts/, r.name)
  }
})

t.test('by default, on a loopback listener, a foreign Origin is refused on every route with 403 naming allowedOrigins', async t => {
  const { base, port } = await loopbackApp(t)
  for (const origin of ['https://evil.example', 'http://localhost.evil.example', 'null', 'http://127.0.0.1.evil.example']) {
    for (const r of ROUTES) {
      const res = await send(base, r.method, r.path, { ...r.headers, host: `127.0.0.1:${port}`, origin }, r.body)
      t.equal(res.status, 403, `${r.name} from ${origin}`)
      t.match(res.body, { error: { code: -32000, data: { type: 'forbidden_origin' } } })
      t.match(res.body.error.message, /^Origin ".*" is not allowed\. .*allowedOrigins/)
    }
  }
})

t.test('by default, loopback Host names on any port and loopback Origins are served, and so is a request without Origin', async t => {
  const { base, port } = await loopbackApp(t)
  const hosts = [`127.0.0.1:${port}`, `localhost:${port}`, 'LOCALHOST', `[::1]:${port}`, '[::1]', '127.0.0.2:9', 'localhost:1']
  const origins = [undefined, 'http://localhost:5173', 'https://127.0.0.1', `http://127.0.0.1:${port}`, 'http://[::1]:3000', 'http://LOCALHOST:8080']
  for (const host of hosts) {
    for (const origin of origins) {
      for (const r of ROUTES) {
        const res = await send(base, r.method, r.path, { ...r.headers, host, ...(origin === undefined ? {} : { origin }) }, r.body)
        t.equal(res.status, r.ok, `${r.name} Host ${host} Origin ${origin ?? '(none)'}`)
      }
    }
  }
})

t.test('origins written in cors.allowOrigin are let in; "*" written there lets every page in; the default value does not', async t => {
  const one = await loopbackApp(t, { cors: { allowOrigin: 'https://app.example, https://other.example' } })
  t.equal((await send(one.base, 'GET', '/sse', { accept: 'text/event-stream', origin: 'https://app.example' })).status, 200)
  t.equal((await send(one.base, 'GET', '/sse', { accept: 'text/event-stream', origin: 'https://other.example' })).status, 200)
  t.equal((await send(one.base, 'GET', '/sse', { accept: 'text/event-stream', origin: 'https://evil.example' })).status, 403)
  const any = await loopbackApp(t, { cors: { allowOrigin: '*' } })
  t.equal((await send(any.base, 'GET', '/sse', { accept: 'text/event-stream', origin: 'https://evil.example' })).status, 200)
  t.equal((await send(any.base, 'GET', '/sse', { accept: 'text/event-stream', host: 'attacker.example' })).status, 403, 'the Host default still holds')
  const defaults = await loopbackApp(t, { cors: { maxAge: '60' } })
  t.equal((await send(defaults.base, 'GET', '/sse', { accept: 'text/event-stream', origin: 'https://evil.example' })).status, 403, 'cors given without allowOrigin opens nothing')
  const off = await loopbackApp(t, { cors: false })
  t.equal((await send(off.base, 'GET', '/sse', { accept: 'text/event-stream', origin: 'https://evil.example' })).status, 403, 'nor does cors: false')
})

t.test('configured allowedHosts replace the default Host check (a public name behind a proxy on the same host)', async t => {
  const { base, port } = await loopbackApp(t, { allowedHosts: ['mcp.example.com'] })
  t.equal((await send(base, 'GET', '/sse', { accept: 'text/event-stream', host: 'mcp.example.com' })).status, 200, 'the listed public name is served')
  t.equal((await send(base, 'GET', '/sse', { accept: 'text/event-stream', host: `127.0.0.1:${port}` })).status, 403, 'names not listed are refused, loopback ones too')
  t.equal((await send(base, 'GET', '/sse', { accept: 'text/event-stream', host: 'mcp.example.com', origin: 'https://evil.example' })).status, 403, 'the Origin default still holds')
  t.equal((await send(base, 'GET', '/sse', { accept: 'text/event-stream', host: 'mcp.example.com', origin: 'http://localhost:3000' })).status, 200)
})

t.test('configured allowedOrigins replace the default Origin check', async t => {
  const { base } = await loopbackApp(t, { allowedOrigins: ['https://app.example'] })
  t.equal((await send(base, 'GET', '/sse', { accept: 'text/event-stream', origin: 'https://app.example' })).status, 200)
  t.equal((await send(base, 'GET', '/sse', { accept: 'text/event-stream', origin: 'http://localhost:3000' })).status, 403, 'only the listed origins, loopback ones not included')
  const res = await send(base, 'GET', '/sse', { accept: 'text/event-stream', origin: 'https://evil.example' })
  t.equal(res.status, 403)
  t.equal(res.body.error.message, 'Origin "https://evil.example" is not allowed.', 'the allowlist\'s own answer, as before')
  t.equal((await send(base, 'GET', '/sse', { accept: 'text/event-stream', host: 'attacker.example', origin: 'https://app.example' })).status, 403, 'the Host default still holds')
})

t.test('dnsRebindingProtection: false turns the default off', async t => {
  const { base } = await loopbackApp(t, { dnsRebindingProtection: false })
  for (const r of ROUTES) {
    const res = await send(base, r.method, r.path, { ...r.headers, host: 'attacker.example', origin: 'https://evil.example' }, r.body)
    t.equal(res.status, r.ok, r.name)
  }
})

t.test('dnsRebindingProtection must be a boolean', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  // @ts-expect-error not a boolean
  app.register(mcpSse, { server: () => exampleServer(), dnsRebindingProtection: 'yes' })
  await t.rejects(async () => { await app.ready() }, { code: 'FST_ERR_MCP_SSE_INVALID_OPTION', message: /dnsRebindingProtection/ })
})

t.test('a request that did not arrive on a loopback address keeps the old behaviour: any Host and Origin pass', async t => {
  // An injected request has no local address, like one that arrived on another interface.
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(mcpSse, { server: () => exampleServer() })
  const post = await app.inject({
    method: 'POST',
    url: '/messages?sessionId=none',
    headers: { host: 'mcp.example.com', origin: 'https://app.example', 'content-type': 'application/json' },
    payload: '{"jsonrpc":"2.0","id":1,"method":"ping"}'
  })
  t.equal(post.statusCode, 404, 'past the checks: an unknown session')
  const pre = await app.inject({ method: 'OPTIONS', url: '/sse', headers: { host: 'mcp.example.com', origin: 'https://app.example', 'access-control-request-method': 'GET' } })
  t.equal(pre.statusCode, 204)
  t.equal(pre.headers['access-control-allow-origin'], '*')
})

t.test('a request that arrived on a non-loopback address over a real socket keeps the old behaviour too', async t => {
  // The socket the server sees says it arrived on another address; nothing leaves loopback.
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(mcpSse, { server: () => exampleServer() })
  await app.listen({ port: 0, host: '127.0.0.1' })
  app.server.prependListener('connection', socket => {
    Object.defineProperty(socket, 'localAddress', { value: '192.0.2.10', configurable: true })
  })
  const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  const res = await send(base, 'GET', '/sse', { accept: 'text/event-stream', host: 'mcp.example.com', origin: 'https://app.example' })
  t.equal(res.status, 200)
})

t.test('an IPv6 loopback listener is protected the same way', async t => {
  const app = Fastify({ forceCloseConnections: true })
  t.teardown(() => app.close())
  await app.register(mcpSse, { server: () => exampleServer() })
  await app.listen({ port: 0, host: '::1' })
  const base = `http://[::1]:${(app.server.address() as { port: number }).port}`
  t.equal((await send(base, 'GET', '/sse', { accept: 'text/event-stream' })).status, 200, 'Host [::1]:port is served')
  t.equal((await send(base, 'GET', '/sse', { accept: 'text/event-stream', host: 'attacker.example' })).status, 403)
})
