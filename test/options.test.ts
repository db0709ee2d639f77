// Options: every invalid value fails at register with a code and the option's name; valid
// values are accepted and do what they say.
import t from 'tap'
import Fastify from 'fastify'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import mcpSse, { defaults, type McpSseOptions } from '../src/index.js'
import { initialize, post, RawStream, startApp } from './support/helpers.js'

/** A subtest, as tap passes it to a test function. */
type Test = Parameters<Parameters<typeof t.test>[0]>[0]

const server = () => new McpServer({ name: 'options', version: '1.0.0' })

/** Registers the plugin with `opts` (bypassing the types, as a JavaScript user could). */
async function register (t: Test, opts: Record<string, unknown>): Promise<void> {
  const app = Fastify()
  t.teardown(() => app.close().catch(() => {}))
  await app.register(mcpSse, opts as unknown as McpSseOptions)
}

/** Asserts that registering with `opts` rejects, naming `option` in the message. */
async function rejects (t: Test, opts: Record<string, unknown>, option: string): Promise<void> {
  const err = await register(t, opts).then(() => undefined, (e: unknown) => e)
  t.ok(err instanceof TypeError, 'rejects with a TypeError')
  t.match(err, { code: 'FST_ERR_MCP_SSE_INVALID_OPTION' })
  t.ok((err as Error | undefined)?.message.startsWith(`fastify-mcp-sse: invalid option "${option}". `),
    `the message names "${option}": ${(err as Error | undefined)?.message}`)
}

const invalid: Array<[string, Record<string, unknown>, string]> = [
  ['a missing server', {}, 'server'],
  ['a server that is not a function', { server: server() }, 'server'],
  ['an endpoint without a leading slash', { server, endpoint: 'sse' }, 'endpoint'],
  ['an endpoint with a parameter', { server, endpoint: '/a/:id' }, 'endpoint'],
  ['an endpoint of just "/"', { server, endpoint: '/' }, 'endpoint'],
  ['an endpoint with a query', { server, endpoint: '/x?y' }, 'endpoint'],
  ['an endpoint with a wildcard', { server, endpoint: '/x/*' }, 'endpoint'],
  ['an endpoint that is not a string', { server, endpoint: 5 }, 'endpoint'],
  ['a messageEndpoint without a leading slash', { server, messageEndpoint: 'messages' }, 'messageEndpoint'],
  ['an endpoint equal to messageEndpoint', { server, endpoint: '/mcp', messageEndpoint: '/mcp' }, 'messageEndpoint'],
  ['an endpoint equal to the default messageEndpoint', { server, endpoint: '/messages' }, 'messageEndpoint'],
  ['endpoints equal once the trailing slash is dropped', { server, endpoint: '/mcp/', messageEndpoint: '/mcp' }, 'messageEndpoint'],
  ['a maxMessageSize that is not a size', { server, maxMessageSize: 'lots' }, 'maxMessageSize'],
  ['a negative maxMessageSize', { server, maxMessageSize: -1 }, 'maxMessageSize'],
  ['a zero maxMessageSize', { server, maxMessageSize: 0 }, 'maxMessageSize'],
  ['a fractional maxMessageSize', { server, maxMessageSize: 10.5 }, 'maxMessageSize'],
  ['a negative keepAliveInterval', { server, keepAliveInterval: -5 }, 'keepAliveInterval'],
  ['a fractional keepAliveInterval', { server, keepAliveInterval: 1.5 }, 'keepAliveInterval'],
  ['a keepAliveInterval given as a string', { server, keepAliveInterval: '15000' }, 'keepAliveInterval'],
  ['a zero maxSessions', { server, maxSessions: 0 }, 'maxSessions'],
  ['a maxBufferedBytes that is not a size', { server, maxBufferedBytes: 'x' }, 'maxBufferedBytes'],
  ['a header value with CRLF', { server, headers: { 'X-Evil': 'a\r\nSet-Cookie: x=1' } }, 'headers.X-Evil'],
  ['a header name that is not a token', { server, headers: { 'X Bad': 'v' } }, 'headers.X Bad'],
  ['headers that are not an object', { server, headers: 'X-A: b' }, 'headers'],
  ['an unknown cors field', { server, cors: { allowOrigin: '*', credentials: 'true' } }, 'cors.credentials'],
  ['a cors maxAge that is not a number of seconds', { server, cors: { maxAge: 'abc' } }, 'cors.maxAge'],
  ['a cors maxAge given as a number', { server, cors: { maxAge: 86400 } }, 'cors.maxAge'],
  ['cors set to true', { server, cors: true }, 'cors'],
  ['allowedOrigins that is not an array', { server, allowedOrigins: 'https://app.example.com' }, 'allowedOrigins'],
  ['allowedOrigins holding an empty string', { server, allowedOrigins: [''] }, 'allowedOrigins'],
  ['auth without a provider', { server, auth: {} }, 'auth.provider'],
  ['an auth provider without authenticate()', { server, auth: { provider: { check: () => true } } }, 'auth.provider'],
  ['auth endpoints that are not booleans', { server, auth: { provider: { authenticate: () => true }, endpoints: { sse: 'yes' } } }, 'auth.endpoints.sse']
]

for (const [what, opts, option] of invalid) {
  t.test(`${what} fails at register, naming "${option}"`, async t => {
    await rejects(t, opts, option)
  })
}

t.test('an invalid option also fails app.ready()', async t => {
  const app = Fastify()
  t.teardown(() => app.close().catch(() => {}))
  void app.register(mcpSse, { server, maxSessions: 0 })
  await t.rejects(async () => { await app.ready() }, { code: 'FST_ERR_MCP_SSE_INVALID_OPTION', message: /"maxSessions"/ })
})

t.test('the invalid-option error says how to fix it', async t => {
  const err = await register(t, { server, endpoint: 'sse' }).then(() => undefined, (e: Error) => e)
  t.match(err?.message, /starting with "\/"/)
  t.equal((err as { statusCode?: number } | undefined)?.statusCode, 500)
})

t.test('the exported defaults are the documented values', async t => {
  t.match(defaults, {
    endpoint: '/sse',
    messageEndpoint: '/messages',
    maxMessageSize: '4mb',
    keepAliveInterval: 15000
  })
  t.same(defaults.cors, {
    allowOrigin: '*',
    allowMethods: 'GET, POST, OPTIONS',
    allowHeaders: 'Content-Type, Authorization, x-api-key',
    exposeHeaders: 'Content-Type, Authorization, x-api-key',
    maxAge: '86400'
  })
})

t.test('with only a server, the routes are /sse and /messages', async t => {
  const { base } = await startApp(t, { server })
  const s = await RawStream.open(`${base}/sse`)
  t.teardown(() => s.close())
  t.equal(s.res.statusCode, 200)
  const url = new URL(await s.endpoint(base))
  t.equal(url.pathname, '/messages')
  t.equal((await post(url.toString(), initialize(1))).status, 202)
})

t.test('the default maxMessageSize is 4mb', async t => {
  const { base } = await startApp(t, { server })
  const s = await RawStream.open(`${base}/sse`)
  t.teardown(() => s.close())
  const url = await s.endpoint(base)
  const frame = (pad: number) => `{"jsonrpc":"2.0","method":"notifications/x","params":{"pad":"${'x'.repeat(pad)}"}}`
  const overhead = frame(0).length
  t.equal((await post(url, frame(4 * 1024 * 1024 - overhead))).status, 202, '4mb exactly is accepted')
  const over = await post(url, frame(4 * 1024 * 1024 - overhead + 1))
  t.equal(over.status, 413, 'one byte more is refused')
  t.match(over.body, { error: { data: { type: 'message_too_large' } } })
})

t.test('maxMessageSize accepts a number of bytes', async t => {
  const { base } = await startApp(t, { server, maxMessageSize: 200 })
  const s = await RawStream.open(`${base}/sse`)
  t.teardown(() => s.close())
  const url = await s.endpoint(base)
  t.equal((await post(url, { jsonrpc: '2.0', method: 'notifications/x', params: { pad: 'x'.repeat(100) } })).status, 202)
  t.equal((await post(url, { jsonrpc: '2.0', method: 'notifications/x', params: { pad: 'x'.repeat(200) } })).status, 413)
})

t.test('maxMessageSize accepts a size string such as "512kb"', async t => {
  const { base } = await startApp(t, { server, maxMessageSize: '512kb' })
  const s = await RawStream.open(`${base}/sse`)
  t.teardown(() => s.close())
  const url = await s.endpoint(base)
  t.equal((await post(url, { jsonrpc: '2.0', method: 'notifications/x', params: { pad: 'x'.repeat(500 * 1024) } })).status, 202)
  const over = await post(url, { jsonrpc: '2.0', method: 'notifications/x', params: { pad: 'x'.repeat(520 * 1024) } })
  t.equal(over.status, 413)
  t.match(over.body, { error: { message: /512KB/ } })
})

t.test('an endpoint with a trailing slash behaves as without it', async t => {
  const { base } = await startApp(t, { server, endpoint: '/sse/', messageEndpoint: '/rpc/' })
  const s = await RawStream.open(`${base}/sse`)
  t.teardown(() => s.close())
  t.equal(s.res.statusCode, 200)
  t.match(s.res.headers['content-type'], /^text\/event-stream/)
  const url = new URL(await s.endpoint(base))
  t.equal(url.pathname, '/rpc', 'the announced message path has no trailing slash')
  t.equal((await post(url.toString(), initialize(1))).status, 202)
  t.equal(JSON.parse((await s.next('message')).data).id, 1)
})

// A page the DNS-rebinding default admits on this 127.0.0.1 listener.
const PAGE = 'http://localhost:5173'

t.test('cors: false writes no Access-Control-* headers on GET and POST', async t => {
  const { base } = await startApp(t, { server, cors: false })
  const s = await RawStream.open(`${base}/sse`, { origin: PAGE })
  t.teardown(() => s.close())
  t.equal(s.res.statusCode, 200)
  t.same(Object.keys(s.res.headers).filter(h => h.startsWith('access-control-')), [], 'GET')
  const url = await s.endpoint(base)
  const res = await post(url, initialize(1), { origin: PAGE })
  t.equal(res.status, 202)
  t.same([...res.headers.keys()].filter(h => h.startsWith('access-control-')), [], 'POST')
  const error = await post(`${base}/messages`, initialize(1), { origin: PAGE })
  t.equal(error.status, 404)
  t.same([...error.headers.keys()].filter(h => h.startsWith('access-control-')), [], 'POST error')
})

t.test('by default, CORS headers are written on GET and POST', async t => {
  const { base } = await startApp(t, { server })
  const s = await RawStream.open(`${base}/sse`, { origin: PAGE })
  t.teardown(() => s.close())
  t.equal(s.res.headers['access-control-allow-origin'], '*', 'GET')
  t.equal(s.res.headers['access-control-expose-headers'], defaults.cors.exposeHeaders, 'GET')
  const res = await post(await s.endpoint(base), initialize(1), { origin: PAGE })
  t.equal(res.headers.get('access-control-allow-origin'), '*', 'POST')
})

t.test('keepAliveInterval sets the ping period, and 0 turns pings off', async t => {
  const { base: fast } = await startApp(t, { server, keepAliveInterval: 30 })
  const a = await RawStream.open(`${fast}/sse`)
  t.teardown(() => a.close())
  const ping = await a.next('ping', 1000)
  t.match(JSON.parse(ping.data), { timestamp: /^\d{4}-\d\d-\d\dT/ })

  const { base: off } = await startApp(t, { server, keepAliveInterval: 0 })
  const b = await RawStream.open(`${off}/sse`)
  t.teardown(() => b.close())
  await b.next('endpoint')
  await t.rejects(b.next('ping', 150), /timed out/)
})

t.test('custom headers are written on the stream', async t => {
  const { base } = await startApp(t, { server, headers: { 'X-Custom-Header': 'value' } })
  const s = await RawStream.open(`${base}/sse`)
  t.teardown(() => s.close())
  t.equal(s.res.headers['x-custom-header'], 'value')
})
