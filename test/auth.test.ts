import { Writable } from 'node:stream'
import t from 'tap'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js'
import { z } from 'zod'
import { ApiKeyAuthProvider, McpAuthError, type AuthProvider } from '../src/index.js'
import { connectClient, initialize, post, RawStream, startApp, until } from './support/helpers.js'

const ALICE = 'alice-key-0123456789'
const BOB = 'bob-key-9876543210'

const keys = () => new ApiKeyAuthProvider({ keys: [{ key: ALICE, principal: 'alice' }, { key: BOB, principal: 'bob' }] })

function capture (): { stream: Writable, text: () => string, lines: () => Array<Record<string, unknown>> } {
  let all = ''
  const stream = new Writable({ write (chunk, _e, cb) { all += String(chunk); cb() } })
  return {
    stream,
    text: () => all,
    lines: () => all.split('\n').filter(l => l !== '').map(l => JSON.parse(l))
  }
}

/** A server whose `whoami` tool answers with what it sees in extra.authInfo. */
function whoamiServer (): McpServer {
  const server = new McpServer({ name: 'whoami', version: '1.0.0' })
  server.registerTool('whoami', { inputSchema: { x: z.string().optional() } }, async (_args, extra) => ({
    content: [{ type: 'text', text: JSON.stringify(extra.authInfo ?? null) }]
  }))
  return server
}

async function rawSession (base: string, headers: Record<string, string>): Promise<{ stream: RawStream, url: string, id: string }> {
  const stream = await RawStream.open(`${base}/sse`, headers)
  const url = await stream.endpoint(base)
  return { stream, url, id: new URL(url).searchParams.get('sessionId') ?? '' }
}

t.test('without credentials both routes answer 401 with a challenge and a JSON-RPC error', async t => {
  const { base } = await startApp(t, { auth: { provider: keys() } })
  const get = await fetch(`${base}/sse`)
  t.equal(get.status, 401)
  t.equal(get.headers.get('www-authenticate'), 'Bearer realm="mcp"')
  const body = await get.json() as { error: { code: number, data: { type: string } } }
  t.equal(body.error.code, -32000)
  t.equal(body.error.data.type, 'authentication_error')

  const p = await post(`${base}/messages?sessionId=x`, { jsonrpc: '2.0', id: 3, method: 'ping' })
  t.equal(p.status, 401)
  t.equal(p.headers.get('www-authenticate'), 'Bearer realm="mcp"')
  t.match(p.body, { jsonrpc: '2.0', id: null, error: { code: -32000, data: { type: 'authentication_error' } } })
})

t.test('a wrong key is refused like a missing one', async t => {
  const { base } = await startApp(t, { auth: { provider: keys() } })
  const res = await fetch(`${base}/sse`, { headers: { 'x-api-key': 'nope' } })
  t.equal(res.status, 401)
  const res2 = await fetch(`${base}/sse`, { headers: { 'x-api-key': ALICE.slice(0, -1) } })
  t.equal(res2.status, 401)
})

t.test('the API key is read from its header (any case) or from Authorization: Bearer', async t => {
  const provider = new ApiKeyAuthProvider({ keys: [ALICE], headerName: 'X-Custom-Key' })
  const { base } = await startApp(t, { auth: { provider } })
  for (const headers of [{ 'X-CUSTOM-KEY': ALICE }, { 'x-custom-key': ALICE }, { authorization: `Bearer ${ALICE}` }, { authorization: `bearer ${ALICE}` }]) {
    const s = await RawStream.open(`${base}/sse`, headers)
    t.equal(s.res.statusCode, 200, JSON.stringify(Object.keys(headers)))
    s.close()
  }
  const s = await RawStream.open(`${base}/sse`, { 'x-api-key': ALICE })
  t.equal(s.res.statusCode, 401, 'the default header name no longer applies')
  s.close()
})

t.test('the SDK client connects with its key in headers and tools see extra.authInfo', async t => {
  const { base } = await startApp(t, { auth: { provider: keys() }, server: whoamiServer })
  const headers = { 'x-api-key': ALICE }
  const client = await connectClient(t, `${base}/sse`, {
    requestInit: { headers },
    eventSourceInit: { fetch: (url, init) => fetch(url, { ...init, headers: { ...Object.fromEntries(new Headers(init?.headers)), ...headers } }) }
  })
  const result = await client.callTool({ name: 'whoami', arguments: {} })
  const info = JSON.parse((result.content as Array<{ text: string }>)[0]?.text ?? 'null') as AuthInfo
  t.equal(info.token, ALICE)
  t.equal(info.clientId, 'alice')
  t.same(info.scopes, [])
  t.same(info.extra, { authType: 'apiKey', principal: 'alice' })
})

t.test('the server factory learns who opened the session', async t => {
  const seen: Array<string | undefined> = []
  const { base } = await startApp(t, {
    auth: { provider: keys() },
    server: ({ auth }) => { seen.push(auth?.principal); return whoamiServer() }
  })
  const s = await rawSession(base, { 'x-api-key': BOB })
  t.teardown(() => s.stream.close())
  t.same(seen, ['bob'])
})

t.test('another principal posting into a session gets exactly the unknown-session answer, and it is logged', async t => {
  const logs = capture()
  const { base, app } = await startApp(t, { auth: { provider: keys() } }, {
    fastify: { forceCloseConnections: true, logger: { level: 'info', stream: logs.stream } }
  })
  const alice = await rawSession(base, { 'x-api-key': ALICE })
  t.teardown(() => alice.stream.close())

  const hijack = await post(alice.url, initialize(1), { 'x-api-key': BOB })
  const unknown = await post(`${base}/messages?sessionId=${alice.id.replace(/.$/, c => c === '0' ? '1' : '0')}`, initialize(1), { 'x-api-key': BOB })
  t.equal(hijack.status, 404)
  t.equal(unknown.status, 404)
  const strip = (b: unknown) => JSON.stringify(b).replace(/"sessionId":"[^"]*"/, '')
  t.equal(strip(hijack.body), strip(unknown.body), 'same body but for the id asked about')
  t.match(hijack.body, { error: { code: -32001, data: { type: 'session_not_found', connectionActive: false } } })
  await t.rejects(alice.stream.next('message', 200), /timed out/, 'nothing reached alice\'s server')

  const line = logs.lines().find(l => typeof l.msg === 'string' && l.msg.includes('does not own the session'))
  t.equal(line?.principal, 'bob')
  t.equal(line?.sessionId, alice.id)

  // Alice herself is served.
  t.equal((await post(alice.url, initialize(1), { 'x-api-key': ALICE })).status, 202)
  t.equal(JSON.parse((await alice.stream.next('message')).data).id, 1)
  t.equal(app.mcpSessions.get(alice.id)?.principal, 'alice')
})

t.test('keys never appear in the logs', async t => {
  const logs = capture()
  const { base } = await startApp(t, { auth: { provider: keys() } }, {
    fastify: { forceCloseConnections: true, logger: { level: 'trace', stream: logs.stream } }
  })
  const alice = await rawSession(base, { 'x-api-key': ALICE })
  await post(alice.url, initialize(1), { 'x-api-key': BOB })
  await post(alice.url, initialize(1), { authorization: `Bearer ${ALICE}` })
  await fetch(`${base}/sse`, { headers: { 'x-api-key': `${BOB}x` } })
  alice.stream.close()
  await until(() => logs.text().includes('session closed'), 5000, 'the close log')
  t.notMatch(logs.text(), ALICE)
  t.notMatch(logs.text(), BOB)
})

t.test('with endpoints.sse false the stream opens without credentials, messages still need them, and the first poster owns it', async t => {
  const { base, app } = await startApp(t, { auth: { provider: keys(), endpoints: { sse: false } }, server: whoamiServer })
  const s = await rawSession(base, {})
  t.teardown(() => s.stream.close())
  t.equal(s.stream.res.statusCode, 200)
  t.equal(app.mcpSessions.get(s.id)?.principal, undefined)

  t.equal((await post(s.url, initialize(1))).status, 401)
  t.equal((await post(s.url, initialize(1), { 'x-api-key': ALICE })).status, 202)
  await s.stream.next('message')
  t.equal(app.mcpSessions.get(s.id)?.principal, 'alice')
  t.equal((await post(s.url, { jsonrpc: '2.0', id: 2, method: 'ping' }, { 'x-api-key': BOB })).status, 404, 'bound to alice now')
  t.equal((await post(s.url, { jsonrpc: '2.0', id: 3, method: 'ping' }, { 'x-api-key': ALICE })).status, 202)
})

t.test('with endpoints.messages false, posts need no credentials and tools see the opener\'s authInfo', async t => {
  const { base } = await startApp(t, { auth: { provider: keys(), endpoints: { messages: false } }, server: whoamiServer })
  t.equal((await fetch(`${base}/sse`)).status, 401)
  const s = await rawSession(base, { 'x-api-key': BOB })
  t.teardown(() => s.stream.close())
  t.equal((await post(s.url, initialize(1))).status, 202)
  await s.stream.next('message')
  await post(s.url, { jsonrpc: '2.0', method: 'notifications/initialized' })
  await post(s.url, { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'whoami', arguments: {} } })
  const reply = JSON.parse((await s.stream.next('message')).data)
  t.equal(JSON.parse(reply.result.content[0].text).clientId, 'bob')
})

t.test('CORS preflight never needs credentials', async t => {
  const { base } = await startApp(t, { auth: { provider: keys() } })
  for (const path of ['/sse', '/messages']) {
    // A loopback page: on this 127.0.0.1 listener the DNS-rebinding default admits it.
    const res = await fetch(`${base}${path}`, { method: 'OPTIONS', headers: { origin: 'http://localhost:5173', 'access-control-request-method': 'POST', 'access-control-request-headers': 'x-api-key' } })
    t.equal(res.status, 204, path)
    t.equal(res.headers.get('access-control-allow-origin'), '*')
  }
})

t.test('a provider that throws gives a logged 401, never a 500 or a crash', async t => {
  const logs = capture()
  const provider: AuthProvider = { authenticate () { throw new Error('database down') } }
  const { base } = await startApp(t, { auth: { provider } }, { fastify: { forceCloseConnections: true, logger: { stream: logs.stream } } })
  const res = await fetch(`${base}/sse`)
  t.equal(res.status, 401)
  t.equal(res.headers.get('www-authenticate'), 'Bearer realm="mcp"')
  t.match(await res.json(), { error: { data: { type: 'authentication_error' } } })
  t.ok(logs.lines().some(l => l.msg === 'fastify-mcp-sse: the auth provider threw; answering 401' && (l.err as { message: string }).message === 'database down'))
  t.equal((await fetch(`${base}/sse`)).status, 401, 'still serving')
})

t.test('a provider whose promise rejects, or that answers nonsense, is refused too', async t => {
  let mode = 0
  const provider = {
    async authenticate () {
      if (mode === 0) throw new Error('async failure')
      return { principal: '' }
    }
  } as AuthProvider
  const { base } = await startApp(t, { auth: { provider } })
  t.equal((await fetch(`${base}/sse`)).status, 401)
  mode = 1
  t.equal((await fetch(`${base}/sse`)).status, 401)
})

t.test('a provider can answer with its own status, message and headers', async t => {
  let refuseWith403 = false
  const provider: AuthProvider = {
    authenticate (request) {
      if (refuseWith403) throw new McpAuthError({ status: 403, message: 'Forbidden: plan expired', headers: { 'x-reason': 'plan' } })
      return request.headers['x-user'] === 'carol' ? { principal: 'carol' } : false
    },
    getAuthError: () => ({ status: 401, message: 'Who are you?', headers: { 'WWW-Authenticate': 'Basic realm="custom"' } })
  }
  const { base } = await startApp(t, { auth: { provider } })
  const refused = await post(`${base}/messages?sessionId=x`, initialize(1))
  t.equal(refused.status, 401)
  t.equal(refused.headers.get('www-authenticate'), 'Basic realm="custom"')
  t.match(refused.body, { error: { message: 'Who are you?', data: { type: 'authentication_error' } } })

  refuseWith403 = true
  const forbidden = await post(`${base}/messages?sessionId=x`, initialize(1))
  t.equal(forbidden.status, 403)
  t.equal(forbidden.headers.get('x-reason'), 'plan')
  t.match(forbidden.body, { error: { message: 'Forbidden: plan expired', data: { type: 'authentication_error' } } })
})

t.test('a provider answering true admits the caller as one shared principal', async t => {
  const provider: AuthProvider = { authenticate: request => request.headers['x-ok'] === '1' }
  const { base, app } = await startApp(t, { auth: { provider } })
  const s = await rawSession(base, { 'x-ok': '1' })
  t.teardown(() => s.stream.close())
  t.equal(app.mcpSessions.get(s.id)?.principal, 'authenticated')
  t.equal((await post(s.url, initialize(1), { 'x-ok': '1' })).status, 202)
  t.equal((await post(s.url, initialize(2))).status, 401)
})

t.test('the host app\'s own routes are never touched by the auth hook', async t => {
  let calls = 0
  const provider: AuthProvider = { authenticate: () => { calls++; return false } }
  const { base } = await startApp(t, { auth: { provider } }, {
    before: app => {
      app.get('/health', async () => ({ ok: true }))
      app.post('/echo', async request => request.body)
    }
  })
  const health = await fetch(`${base}/health`)
  t.equal(health.status, 200)
  t.same(await health.json(), { ok: true })
  const echo = await post(`${base}/echo`, { a: 1 })
  t.equal(echo.status, 200)
  t.same(echo.body, { a: 1 })
  t.equal(calls, 0, 'the provider never ran for host routes')
  t.equal((await fetch(`${base}/sse`)).status, 401)
  t.equal(calls, 1)
})

t.test('ApiKeyAuthProvider refuses an empty key list or empty keys at construction', async t => {
  t.throws(() => new ApiKeyAuthProvider({ keys: [] }), { code: 'FST_ERR_MCP_SSE_INVALID_OPTION' })
  t.throws(() => new ApiKeyAuthProvider({ keys: [''] }), { code: 'FST_ERR_MCP_SSE_INVALID_OPTION' })
  t.throws(() => new ApiKeyAuthProvider({ keys: [String(process.env.SURELY_UNSET_VARIABLE ?? '')] }), /environment variable/)
})

t.test('an auth option without a provider fails at register', async t => {
  const Fastify = (await import('fastify')).default
  const mcpSse = (await import('../src/index.js')).default
  const app = Fastify()
  t.teardown(() => app.close())
  // @ts-expect-error: provider is required
  app.register(mcpSse, { server: whoamiServer, auth: {} })
  await t.rejects(async () => { await app.ready() }, { code: 'FST_ERR_MCP_SSE_INVALID_OPTION', message: /auth\.provider/ })
})
