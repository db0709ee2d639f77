// The 2026-07-28 revision on the same URL as 2025 sessions and HTTP+SSE: the SDK's own
// clients of both lines at once, MRTR, listen streams with change events, the errors the
// revision defines, the fallback of dual-era clients, and servers kept between requests.
import http from 'node:http'
import t, { type Test } from 'tap'
import { z } from 'zod'
import { McpServer, acceptedContent, inputRequired } from '@modelcontextprotocol/server'
import { Client as ClientV2, StreamableHTTPClientTransport as StreamableV2 } from '@modelcontextprotocol/client'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js'
import { ApiKeyAuthProvider, type McpSessionContext } from '../src/index.js'
import { buildExampleServer } from '../example/mcp-server.js'
import { buildConformanceServerV2 } from '../example/conformance-v2.js'
import { REDIS_URL, startInstance, startProxy, testPrefix } from './support/cluster.js'
import { startApp, until } from './support/helpers.js'

const MODERN = '2026-07-28'
const META = {
  'io.modelcontextprotocol/protocolVersion': MODERN,
  'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' },
  'io.modelcontextprotocol/clientCapabilities': {}
}

const text = (r: unknown): string => {
  const first = (r as { content: Array<{ type: string, text?: string }> }).content[0]
  return first?.type === 'text' ? first.text ?? '' : ''
}

/** What the servers saw, for the tests to check. */
interface Seen { builds: number, aborted: number }

/** An SDK v2 server: echo, countdown (progress), ask (MRTR elicitation), whoami (slow; who built it and who asks), wait (until cancelled). */
function v2Server (seen: Seen, context: McpSessionContext): McpServer {
  seen.builds++
  const server = new McpServer({ name: 'modern-test', version: '1.0.0' }, { capabilities: { logging: {}, resources: { subscribe: true, listChanged: true } } })
  const builtFor = context.auth?.principal ?? 'nobody'
  server.registerTool('echo', { inputSchema: z.object({ text: z.string() }) }, async ({ text }) => ({ content: [{ type: 'text', text }] }))
  server.registerTool('countdown', { inputSchema: z.object({ from: z.number() }) }, async ({ from }, ctx) => {
    const progressToken = ctx.mcpReq._meta?.progressToken
    for (let i = 0; i < from; i++) {
      if (progressToken !== undefined) await ctx.mcpReq.notify({ method: 'notifications/progress', params: { progressToken, progress: i, total: from } })
      await new Promise(resolve => setTimeout(resolve, 5))
    }
    return { content: [{ type: 'text', text: `Counted down from ${from}` }] }
  })
  server.registerTool('ask', {}, async ctx => {
    const answer = acceptedContent<{ name: string }>(ctx.mcpReq.inputResponses, 'who')
    if (answer === undefined) {
      return inputRequired({
        inputRequests: { who: inputRequired.elicit({ message: 'Name?', requestedSchema: { type: 'object', properties: { name: { type: 'string' } }, required: ['name'] } }) },
        requestState: 'asked-once'
      })
    }
    return { content: [{ type: 'text', text: `hello ${answer.name} (state ${String(ctx.mcpReq.requestState())})` }] }
  })
  server.registerTool('whoami', { inputSchema: z.object({ delay: z.number() }) }, async ({ delay }, ctx) => {
    const asking = (ctx.http?.authInfo?.extra as { principal?: string } | undefined)?.principal ?? 'nobody'
    await new Promise(resolve => setTimeout(resolve, delay))
    return { content: [{ type: 'text', text: `${builtFor}/${asking}` }] }
  })
  server.registerTool('logs', {}, async ctx => {
    for (const level of ['debug', 'info', 'warning', 'error'] as const) await ctx.mcpReq.log(level, `at ${level}`)
    return { content: [{ type: 'text', text: 'logged' }] }
  })
  server.registerTool('ticks', {}, async ctx => {
    const progressToken = ctx.mcpReq._meta?.progressToken
    for (let i = 0; !ctx.mcpReq.signal.aborted; i++) {
      if (progressToken !== undefined) await ctx.mcpReq.notify({ method: 'notifications/progress', params: { progressToken, progress: i } })
      await new Promise(resolve => setTimeout(resolve, 20))
    }
    seen.aborted++
    return { content: [] }
  })
  server.registerResource('a', 'test://a', {}, async uri => ({ contents: [{ uri: uri.href, text: 'a' }] }))
  server.registerPrompt('greet', {}, async () => ({ messages: [{ role: 'user', content: { type: 'text', text: 'hello' } }] }))
  server.registerTool('wait', {}, async ctx => await new Promise(resolve => {
    ctx.mcpReq.signal.addEventListener('abort', () => { seen.aborted++; resolve({ content: [] }) })
  }))
  return server
}

async function modernClient (t: Test, url: string, headers: Record<string, string> = {}): Promise<ClientV2> {
  const client = new ClientV2({ name: 'modern', version: '1' }, { capabilities: { elicitation: { form: {} } }, versionNegotiation: { mode: 'auto' } })
  client.setRequestHandler('elicitation/create', async () => ({ action: 'accept', content: { name: 'Ann' } }))
  await client.connect(new StreamableV2(new URL(url), { requestInit: { headers } }))
  t.teardown(() => client.close())
  return client
}

/** A raw POST to /mcp, read to its end. */
function post (base: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number, headers: http.IncomingHttpHeaders, text: string, json: unknown }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}/mcp`, {
      method: 'POST',
      headers: { accept: 'application/json, text/event-stream', 'content-type': 'application/json', 'mcp-protocol-version': MODERN, ...headers }
    }, res => {
      let raw = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { raw += c })
      res.on('end', () => {
        let json: unknown
        try { json = JSON.parse(raw) } catch { json = undefined }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text: raw, json })
      })
    })
    req.on('error', reject)
    req.end(JSON.stringify(body))
  })
}

const call = (id: number, name: string, args: object, extra: object = {}): object =>
  ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args, _meta: { ...META, ...extra } } })

t.test('one URL, every era at once: a 2026-07-28 client, 2025 sessions of both SDK lines, and an HTTP+SSE client', async t => {
  const seen: Seen = { builds: 0, aborted: 0 }
  const { app, base } = await startApp(t, { server: ctx => ctx.era === 'modern' ? v2Server(seen, ctx) : buildExampleServer() })
  const url = `${base}/mcp`
  const modern = await modernClient(t, url)
  t.equal(modern.getProtocolEra(), 'modern', 'the v2 client in auto mode stays modern')
  const legacyV2 = new ClientV2({ name: 'legacy-v2', version: '1' })
  await legacyV2.connect(new StreamableV2(new URL(url)))
  t.teardown(() => legacyV2.close())
  const v1 = new Client({ name: 'v1', version: '1' })
  await v1.connect(new StreamableHTTPClientTransport(new URL(url)))
  t.teardown(() => v1.close())
  const sse = new Client({ name: 'sse', version: '1' })
  await sse.connect(new SSEClientTransport(new URL(url)))
  t.teardown(() => sse.close())
  t.equal(app.mcpSessions.size, 3, 'three sessions (two Streamable, one HTTP+SSE); the modern client holds none')

  const progress: number[] = []
  const changed: string[] = []
  modern.setNotificationHandler('notifications/tools/list_changed', () => { changed.push('tools') })
  const [subscription, m, l2, l1, s, counted] = await Promise.all([
    modern.listen({ toolsListChanged: true }),
    modern.callTool({ name: 'echo', arguments: { text: 'modern' } }),
    legacyV2.callTool({ name: 'echo', arguments: { text: 'legacy v2' } }),
    v1.callTool({ name: 'echo', arguments: { text: 'v1' } }),
    sse.callTool({ name: 'echo', arguments: { text: 'sse' } }),
    modern.callTool({ name: 'countdown', arguments: { from: 3 } }, { onprogress: p => { progress.push(p.progress) } })
  ])
  t.same([m, l2, l1, s].map(text), ['modern', 'legacy v2', 'v1', 'sse'])
  t.equal(text(counted), 'Counted down from 3')
  t.same(subscription.honoredFilter, { toolsListChanged: true }, 'the v2 client\'s listen() acknowledged, beside the other clients\' calls')
  t.equal(app.mcpEvents.listening, 1)
  app.mcpEvents.toolsChanged()
  await until(() => changed.length === 1, 5000, 'the change on the v2 client\'s listen stream')
  await subscription.close()
  t.equal(await subscription.closed, 'local')
  await until(() => app.mcpEvents.listening === 0, 5000, 'the listen stream to end')
  t.same(progress, [0, 1, 2], 'progress on the modern request\'s own stream, before its result')
  const asked = await modern.callTool({ name: 'ask', arguments: {} })
  t.equal(text(asked), 'hello Ann (state asked-once)', 'MRTR: input_required, the client answers the elicitation, the retry completes')
  t.equal(app.mcpSessions.size, 3, 'modern requests never touch the session store')
  t.equal(app.mcpEvents.inFlight, 0)
  const discover = modern.getDiscoverResult()
  t.ok(discover?.supportedVersions.includes(MODERN), 'server/discover advertised 2026-07-28')
})

t.test('the errors of the revision, with status 400; GET and DELETE are 405; Mcp-Session-Id is ignored', async t => {
  const seen: Seen = { builds: 0, aborted: 0 }
  const { base } = await startApp(t, { server: ctx => v2Server(seen, ctx) })
  const ok = await post(base, call(1, 'echo', { text: 'a' }), { 'mcp-method': 'tools/call', 'mcp-name': 'echo', 'mcp-session-id': 'whatever' })
  t.equal(ok.status, 200)
  t.match(ok.json, { id: 1, result: { resultType: 'complete', content: [{ text: 'a' }] } }, 'resultType stamped; the session header ignored')
  t.notOk(ok.headers['mcp-session-id'], 'no session minted')

  const mismatch = await post(base, call(2, 'echo', { text: 'a' }), { 'mcp-method': 'tools/call', 'mcp-name': 'other' })
  t.equal(mismatch.status, 400)
  t.match(mismatch.json, { id: 2, error: { code: -32020 } }, 'HeaderMismatch')
  const missing = await post(base, call(3, 'echo', { text: 'a' }), {})
  t.equal(missing.status, 400)
  t.match(missing.json, { error: { code: -32020 } }, 'Mcp-Method missing')
  const unsupported = await post(base, { jsonrpc: '2.0', id: 4, method: 'tools/list', params: { _meta: { ...META, 'io.modelcontextprotocol/protocolVersion': '2099-01-01' } } }, { 'mcp-protocol-version': '2099-01-01', 'mcp-method': 'tools/list' })
  t.equal(unsupported.status, 400)
  t.match(unsupported.json, { id: 4, error: { code: -32022, data: { supported: [MODERN] } } }, 'UnsupportedProtocolVersion lists what is supported')
  const noCapability = await post(base, call(5, 'ask', {}), { 'mcp-method': 'tools/call', 'mcp-name': 'ask' })
  t.equal(noCapability.status, 400)
  t.match(noCapability.json, { id: 5, error: { code: -32021 } }, 'MissingRequiredClientCapability: no elicitation declared')
  const removed = await post(base, { jsonrpc: '2.0', id: 6, method: 'ping', params: { _meta: META } }, { 'mcp-method': 'ping' })
  t.equal(removed.status, 404)
  t.match(removed.json, { error: { code: -32601 } }, 'a method the revision removed')

  for (const method of ['GET', 'DELETE']) {
    const res = await fetch(`${base}/mcp`, { method, headers: { accept: 'text/event-stream', 'mcp-protocol-version': MODERN, 'mcp-session-id': 'x' } })
    t.equal(res.status, 405, `${method} with a modern version`)
    t.equal(res.headers.get('allow'), 'POST, OPTIONS')
  }
})

t.test('the versions this URL supports, as -32022 and server/discover list them: 2026-07-28 and the 2025 revisions served through initialize', async t => {
  const all = [MODERN, '2025-11-25', '2025-06-18', '2025-03-26', '2024-11-05']
  for (const responseMode of ['auto', 'sse'] as const) {
    const { base } = await startApp(t, { server: ctx => v2Server({ builds: 0, aborted: 0 }, ctx), responseMode })
    const unsupported = await post(base, { jsonrpc: '2.0', id: 4, method: 'tools/list', params: { _meta: { ...META, 'io.modelcontextprotocol/protocolVersion': '2099-01-01' } } }, { 'mcp-protocol-version': '2099-01-01', 'mcp-method': 'tools/list' })
    t.equal(unsupported.status, 400)
    t.same((unsupported.json as { error: { data: unknown } }).error.data, { supported: all, requested: '2099-01-01' }, `${responseMode}: -32022 lists every version served here`)
    const discover = await post(base, { jsonrpc: '2.0', id: 5, method: 'server/discover', params: { _meta: META } }, { 'mcp-method': 'server/discover' })
    t.equal(discover.status, 200)
    const result = messagesOf(discover).find(m => m.result !== undefined)?.result as { supportedVersions: string[], capabilities: object }
    t.same(result.supportedVersions, all, `${responseMode}: server/discover lists the same (every -32022 entry is one discover lists)`)
    t.ok(result.capabilities, 'the rest of the discover result is intact')
  }
  const client = await modernClient(t, `${(await startApp(t, { server: ctx => v2Server({ builds: 0, aborted: 0 }, ctx) })).base}/mcp`)
  t.equal(client.getProtocolEra(), 'modern', 'the v2 client in auto mode still picks 2026-07-28')
  t.equal(text(await client.callTool({ name: 'echo', arguments: { text: 'still modern' } })), 'still modern')
})

t.test('a factory of SDK v1 servers (or modern: false): a dual-era client falls back to initialize and a 2025 session', async t => {
  for (const opts of [{ server: () => buildExampleServer() }, { server: (ctx: McpSessionContext) => v2Server({ builds: 0, aborted: 0 }, ctx), modern: false as const }]) {
    const { app, base } = await startApp(t, opts)
    const raw = await post(base, call(1, 'echo', { text: 'a' }), { 'mcp-method': 'tools/call', 'mcp-name': 'echo' })
    t.equal(raw.status, 400)
    t.match(raw.json, { error: { code: -32600, data: { type: 'invalid_request' } } }, 'not a modern error: the signal to fall back')
    const client = await modernClient(t, `${base}/mcp`)
    t.equal(client.getProtocolEra(), 'legacy')
    t.equal(text(await client.callTool({ name: 'echo', arguments: { text: 'fell back' } })), 'fell back')
    t.equal(app.mcpSessions.size, 1, 'on a 2025 session')
  }
})

t.test('a factory of SDK v1 servers: even a first modern request the SDK would refuse before the factory gets the fallback signal, not a modern error', async t => {
  const cases: Array<[string, object, Record<string, string>]> = [
    ['a header mismatch (-32020 from a modern server)', call(1, 'echo', { text: 'a' }), { 'mcp-method': 'tools/call', 'mcp-name': 'other' }],
    ['an unsupported version (-32022)', { jsonrpc: '2.0', id: 1, method: 'tools/list', params: { _meta: { ...META, 'io.modelcontextprotocol/protocolVersion': '2099-01-01' } } }, { 'mcp-protocol-version': '2099-01-01', 'mcp-method': 'tools/list' }],
    ['a missing client capability (-32021)', call(1, 'ask', {}), { 'mcp-method': 'tools/call', 'mcp-name': 'ask' }]
  ]
  for (const [what, body, headers] of cases) {
    let builds = 0
    const { base } = await startApp(t, { server: () => { builds++; return buildExampleServer() } })
    const first = await post(base, body, headers)
    t.equal(first.status, 400, what)
    t.match(first.json, { error: { code: -32600, data: { type: 'invalid_request' } } }, `${what}: the fallback signal`)
    t.equal(builds, 1, 'one server built to learn the era (and closed)')
    const again = await post(base, call(2, 'echo', { text: 'a' }), { 'mcp-method': 'tools/call', 'mcp-name': 'echo' })
    t.match(again.json, { error: { code: -32600 } }, 'and every modern request after it')
    t.equal(builds, 1, 'the era is known: no more servers built for modern requests')
    const client = await modernClient(t, `${base}/mcp`)
    t.equal(client.getProtocolEra(), 'legacy', 'a dual-era client falls back')
  }
  // An SDK v2 factory: the server built to learn the era serves the request, or is closed when the SDK refuses it first.
  let builds = 0
  let closes = 0
  const counted = (ctx: McpSessionContext): McpServer => {
    builds++
    const s = v2Server({ builds: 0, aborted: 0 }, ctx)
    const close = s.close.bind(s)
    s.close = async () => { closes++; await close() }
    return s
  }
  const { base } = await startApp(t, { server: counted })
  const mismatch = await post(base, call(1, 'echo', { text: 'a' }), { 'mcp-method': 'tools/call', 'mcp-name': 'other' })
  t.match(mismatch.json, { error: { code: -32020 } }, 'a modern server\'s own error')
  t.equal(builds, 1)
  await until(() => closes === 1, 5000, 'the unused server to be closed')
  const ok = await post(base, call(2, 'echo', { text: 'b' }), { 'mcp-method': 'tools/call', 'mcp-name': 'echo' })
  t.match(ok.json, { result: { content: [{ text: 'b' }] } })
  t.equal(builds, 2, 'one server per request once the era is known')

  // A factory that throws before its era is known: 500, the factory run once.
  let throws = 0
  const failing = await startApp(t, { server: () => { throws++; throw new Error('no server today') } })
  const failed = await post(failing.base, call(1, 'echo', { text: 'a' }), { 'mcp-method': 'tools/call', 'mcp-name': 'echo' })
  t.equal(failed.status, 500)
  t.match(failed.json, { id: 1, error: { code: -32603, data: { type: 'message_handler_error' } } })
  t.equal(throws, 1, 'the factory was not run a second time for the same request')
})

t.test('auth, CORS and the Origin guard apply to modern requests as to every route', async t => {
  const auth = { provider: new ApiKeyAuthProvider({ keys: [{ key: 'k-a', principal: 'alice' }] }) }
  const { base } = await startApp(t, { server: ctx => v2Server({ builds: 0, aborted: 0 }, ctx), auth, allowedOrigins: ['https://app.example'] })
  const headers = { 'mcp-method': 'tools/call', 'mcp-name': 'whoami' }
  t.equal((await post(base, call(1, 'whoami', { delay: 0 }), headers)).status, 401, 'no key')
  const ok = await post(base, call(2, 'whoami', { delay: 0 }), { ...headers, 'x-api-key': 'k-a', origin: 'https://app.example' })
  t.equal(ok.status, 200)
  const legacy = await fetch(`${base}/mcp`, { method: 'POST', headers: { accept: 'application/json, text/event-stream', 'content-type': 'application/json', 'x-api-key': 'k-a', origin: 'https://app.example' }, body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } } }) })
  for (const name of ['access-control-allow-origin', 'access-control-expose-headers']) {
    t.equal(ok.headers[name], legacy.headers.get(name) ?? undefined, `${name}: the plugin's CORS headers on the SDK's answer, as on a 2025 one`)
  }
  t.match(ok.json, { result: { content: [{ text: 'alice/alice' }] } }, 'the factory and the tool both see the principal')
  t.equal((await post(base, call(3, 'whoami', { delay: 0 }), { ...headers, 'x-api-key': 'k-a', origin: 'https://evil.example' })).status, 403)
  const preflight = await fetch(`${base}/mcp`, { method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'mcp-method, mcp-name, mcp-protocol-version' } })
  t.equal(preflight.status, 204)
  t.match(preflight.headers.get('access-control-allow-headers'), /Mcp-Method/i)
})

t.test('CORS on /mcp allows the revision\'s Mcp-Param-* headers a preflight asks for, beside the fixed list; on /mcp only', async t => {
  const { base } = await startApp(t, { server: ctx => v2Server({ builds: 0, aborted: 0 }, ctx), allowedOrigins: ['https://app.example'] })
  const preflight = async (path: string, requested: string): Promise<{ status: number, allowed: string[], vary: string }> => {
    const res = await fetch(`${base}${path}`, { method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': requested } })
    const allowed = (res.headers.get('access-control-allow-headers') ?? '').split(',').map(x => x.trim().toLowerCase()).filter(x => x !== '')
    return { status: res.status, allowed, vary: res.headers.get('vary') ?? '' }
  }
  const mcp = await preflight('/mcp', 'Mcp-Name, Mcp-Param-Region')
  t.equal(mcp.status, 204)
  for (const name of ['mcp-method', 'mcp-name', 'mcp-protocol-version', 'mcp-param-region']) t.ok(mcp.allowed.includes(name), `${name} allowed`)
  t.equal(mcp.allowed.filter(x => x === 'mcp-name').length, 1, 'a fixed header asked for is not listed twice')
  t.match(mcp.vary, /Access-Control-Request-Headers/i, 'caches key on the headers asked for')
  const two = await preflight('/mcp', 'mcp-param-a, mcp-param-b.c, x-other, mcp-param-, mcp-param-bad name')
  t.ok(two.allowed.includes('mcp-param-a') && two.allowed.includes('mcp-param-b.c'), 'any Mcp-Param-{token}')
  t.notOk(two.allowed.includes('x-other'), 'a header of another pattern is not allowed')
  t.notOk(two.allowed.some(x => x === 'mcp-param-' || x.startsWith('mcp-param-bad')), 'an empty or malformed name is not allowed')
  const sse = await preflight('/sse', 'Mcp-Param-Region')
  t.notOk(sse.allowed.includes('mcp-param-region'), 'the HTTP+SSE endpoint does not take them')
  // The request a browser sends after that preflight.
  const res = await fetch(`${base}/mcp`, {
    method: 'POST',
    headers: { origin: 'https://app.example', accept: 'application/json, text/event-stream', 'content-type': 'application/json', 'mcp-protocol-version': MODERN, 'mcp-method': 'tools/call', 'mcp-name': 'echo', 'mcp-param-region': 'eu' },
    body: JSON.stringify(call(1, 'echo', { text: 'from a page' }))
  })
  t.equal(res.status, 200)
  t.equal(res.headers.get('access-control-allow-origin'), '*', 'the default allowOrigin')
  t.match(await res.json(), { result: { content: [{ text: 'from a page' }] } })
})

t.test('servers kept between requests: two principals\' concurrent requests never see each other\'s server or auth', async t => {
  const seen: Seen = { builds: 0, aborted: 0 }
  const auth = { provider: new ApiKeyAuthProvider({ keys: [{ key: 'k-a', principal: 'alice' }, { key: 'k-b', principal: 'bob' }] }) }
  let closed = 0
  const counted = (ctx: McpSessionContext): McpServer => {
    const s = v2Server(seen, ctx)
    const close = s.close.bind(s)
    s.close = async () => { closed++; await close() }
    return s
  }
  const { app, base } = await startApp(t, { server: counted, auth, modern: { reuseServers: 4 } })
  const headers = (key: string): Record<string, string> => ({ 'mcp-method': 'tools/call', 'mcp-name': 'whoami', 'x-api-key': key })
  const rounds = 5
  const results: string[] = []
  for (let r = 0; r < rounds; r++) {
    const batch = await Promise.all(Array.from({ length: 8 }, (_, i) => {
      const key = i % 2 === 0 ? 'k-a' : 'k-b'
      return post(base, call(i, 'whoami', { delay: 10 + (i % 3) * 5 }), headers(key)).then(res => ({ key, res }))
    }))
    for (const { key, res } of batch) {
      const who = key === 'k-a' ? 'alice' : 'bob'
      t.equal(text((res.json as { result: unknown }).result), `${who}/${who}`, `round ${r}: ${who} got a server built for ${who}, and saw its own auth`)
      results.push(who)
    }
  }
  t.equal(results.length, 40)
  t.ok(seen.builds <= 16, `40 requests, ${seen.builds} servers built (kept and reused)`)
  t.ok(app.mcpEvents.inFlight === 0)
  // Without a client identity there is nothing to tell clients of one principal apart: built anew.
  const before = seen.builds
  const anonymous = { jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'echo', arguments: { text: 'x' }, _meta: { 'io.modelcontextprotocol/protocolVersion': MODERN, 'io.modelcontextprotocol/clientCapabilities': {} } } }
  await post(base, anonymous, { ...headers('k-a'), 'mcp-name': 'echo' })
  await post(base, anonymous, { ...headers('k-a'), 'mcp-name': 'echo' })
  t.equal(seen.builds - before, 2)
  await app.close()
  t.ok(closed >= seen.builds - 2, `the kept servers are closed with the app (${closed} of ${seen.builds} closed)`)
})

t.test('closing a modern request\'s stream cancels it', async t => {
  const seen: Seen = { builds: 0, aborted: 0 }
  const { app, base } = await startApp(t, { server: ctx => v2Server(seen, ctx) })
  const req = http.request(`${base}/mcp`, {
    method: 'POST',
    headers: { accept: 'application/json, text/event-stream', 'content-type': 'application/json', 'mcp-protocol-version': MODERN, 'mcp-method': 'tools/call', 'mcp-name': 'wait' }
  })
  req.on('error', () => {})
  req.end(JSON.stringify(call(1, 'wait', {})))
  await until(() => app.mcpEvents.inFlight === 1, 5000, 'the request to be in flight')
  await new Promise(resolve => setTimeout(resolve, 50))
  req.destroy()
  await until(() => seen.aborted === 1, 5000, 'the tool to see the cancellation')
  await until(() => app.mcpEvents.inFlight === 0, 5000, 'nothing in flight')
  t.pass('cancelled')
})

/** Opens a listen stream and collects its events. */
function listen (base: string, filter: object, id = 'listen-1'): { events: unknown[], close: () => void, ended: Promise<void> } {
  const events: unknown[] = []
  let setEnded!: () => void
  const ended = new Promise<void>(resolve => { setEnded = resolve })
  const req = http.request(`${base}/mcp`, {
    method: 'POST',
    headers: { accept: 'application/json, text/event-stream', 'content-type': 'application/json', 'mcp-protocol-version': MODERN, 'mcp-method': 'subscriptions/listen' }
  }, res => {
    let buf = ''
    res.setEncoding('utf8')
    res.on('data', (c: string) => {
      buf += c
      const parts = buf.split('\n\n')
      buf = parts.pop() ?? ''
      for (const p of parts) {
        const data = /^data: ?(.*)$/m.exec(p)?.[1]
        if (data !== undefined && data !== '') events.push(JSON.parse(data))
      }
    })
    res.on('close', () => setEnded())
  })
  req.on('error', () => setEnded())
  req.end(JSON.stringify({ jsonrpc: '2.0', id, method: 'subscriptions/listen', params: { notifications: filter, _meta: META } }))
  return { events, close: () => req.destroy(), ended }
}

t.test('listen streams: acknowledged first, then only what they opted into, tagged with their subscription; published on another instance', async t => {
  const keyPrefix = testPrefix()
  const seen: Seen = { builds: 0, aborted: 0 }
  const server = (ctx: McpSessionContext): McpServer => v2Server(seen, ctx)
  const a = await startInstance(t, { server, redis: { url: REDIS_URL, keyPrefix } })
  const b = await startInstance(t, { server, redis: { url: REDIS_URL, keyPrefix } })
  const tools = listen(a.base, { toolsListChanged: true }, 'listen-tools')
  const prompts = listen(a.base, { promptsListChanged: true }, 'listen-prompts')
  t.teardown(() => { tools.close(); prompts.close() })
  await until(() => tools.events.length >= 1 && prompts.events.length >= 1, 5000, 'the acknowledgements')
  t.match(tools.events[0], { method: 'notifications/subscriptions/acknowledged' }, 'acknowledged first')
  t.equal(a.app.mcpEvents.listening, 2)
  t.equal(a.app.mcpSessions.size, 0, 'listen streams are not sessions')
  b.app.mcpEvents.toolsChanged()
  b.app.mcpEvents.promptsChanged()
  await until(() => tools.events.length >= 2, 5000, 'the tools change from the other instance')
  t.match(tools.events[1], { method: 'notifications/tools/list_changed', params: { _meta: { 'io.modelcontextprotocol/subscriptionId': 'listen-tools' } } })
  await until(() => prompts.events.length >= 2, 5000, 'the prompts change')
  t.match(prompts.events[1], { method: 'notifications/prompts/list_changed', params: { _meta: { 'io.modelcontextprotocol/subscriptionId': 'listen-prompts' } } }, 'each stream tagged with its own subscription id')
  await new Promise(resolve => setTimeout(resolve, 100))
  t.equal(tools.events.length, 2, 'the tools listener did not get the prompts change')
  tools.close()
  await tools.ended
  await until(() => a.app.mcpEvents.listening === 1, 5000, 'the closed listener to be counted out')
  await a.app.close()
  await prompts.ended
  t.pass('app.close() ends listen streams')
})

t.test('MRTR across instances: input_required from one instance, the retry served by another', async t => {
  const keyPrefix = testPrefix()
  const seen: Seen = { builds: 0, aborted: 0 }
  const server = (ctx: McpSessionContext): McpServer => v2Server(seen, ctx)
  const a = await startInstance(t, { server, redis: { url: REDIS_URL, keyPrefix } })
  const b = await startInstance(t, { server, redis: { url: REDIS_URL, keyPrefix } })
  const caps = { 'io.modelcontextprotocol/clientCapabilities': { elicitation: { form: {} } } }
  const headers = { 'mcp-method': 'tools/call', 'mcp-name': 'ask' }
  const first = await post(a.base, call(1, 'ask', {}, caps), headers)
  t.equal(first.status, 200)
  const result = (first.json as { result: { resultType: string, inputRequests: object, requestState: string } }).result
  t.equal(result.resultType, 'input_required', 'instance A asks for input')
  t.ok('who' in result.inputRequests)
  const retry = { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'ask', arguments: {}, inputResponses: { who: { action: 'accept', content: { name: 'Bo' } } }, requestState: result.requestState, _meta: { ...META, ...caps } } }
  const second = await post(b.base, retry, headers)
  t.equal(second.status, 200)
  t.match(second.json, { id: 2, result: { resultType: 'complete', content: [{ text: 'hello Bo (state asked-once)' }] } }, 'instance B completes it from the requestState')
})

/** The JSON-RPC messages of an SSE body (or the one JSON body). */
function messagesOf (res: { headers: http.IncomingHttpHeaders, text: string, json: unknown }): Array<{ method?: string, params?: Record<string, unknown>, result?: unknown }> {
  if (!String(res.headers['content-type']).startsWith('text/event-stream')) return [res.json as { result?: unknown }]
  const out: Array<{ method?: string, params?: Record<string, unknown>, result?: unknown }> = []
  for (const frame of res.text.split('\n\n')) {
    const data = /^data: ?(.*)$/m.exec(frame)?.[1]
    if (data !== undefined && data !== '') out.push(JSON.parse(data))
  }
  return out
}

t.test('the log level a request carries in _meta: notifications/message at or above it, none below, and none without it', async t => {
  const { base } = await startApp(t, { server: ctx => v2Server({ builds: 0, aborted: 0 }, ctx) })
  const headers = { 'mcp-method': 'tools/call', 'mcp-name': 'logs' }
  const levels = async (extra: object): Promise<unknown[]> => {
    const res = await post(base, call(1, 'logs', {}, extra), headers)
    t.equal(res.status, 200)
    const messages = messagesOf(res)
    t.match(messages[messages.length - 1], { result: { content: [{ text: 'logged' }] } }, 'the result comes last')
    return messages.filter(m => m.method === 'notifications/message').map(m => m.params?.level)
  }
  t.same(await levels({ 'io.modelcontextprotocol/logLevel': 'warning' }), ['warning', 'error'], 'warning and above')
  t.same(await levels({ 'io.modelcontextprotocol/logLevel': 'debug' }), ['debug', 'info', 'warning', 'error'], 'debug: all of them')
  t.same(await levels({ 'io.modelcontextprotocol/logLevel': 'error' }), ['error'])
  t.same(await levels({}), [], 'no level in _meta: no log messages at all')
})

t.test('listen streams: resource list changes and updates of a URI reach only the streams that asked for them, each tagged with its own subscription id', async t => {
  const keyPrefix = testPrefix()
  const server = (ctx: McpSessionContext): McpServer => v2Server({ builds: 0, aborted: 0 }, ctx)
  const a = await startInstance(t, { server, redis: { url: REDIS_URL, keyPrefix } })
  const b = await startInstance(t, { server, redis: { url: REDIS_URL, keyPrefix } })
  const list = listen(a.base, { resourcesListChanged: true }, 'sub-list')
  const uriA = listen(a.base, { resourceSubscriptions: ['test://a'] }, 'sub-a')
  const tools = listen(a.base, { toolsListChanged: true }, 'sub-tools')
  t.teardown(() => { list.close(); uriA.close(); tools.close() })
  await until(() => list.events.length >= 1 && uriA.events.length >= 1 && tools.events.length >= 1, 5000, 'the acknowledgements')
  t.match(uriA.events[0], { method: 'notifications/subscriptions/acknowledged', params: { notifications: { resourceSubscriptions: ['test://a'] } } })
  b.app.mcpEvents.resourceUpdated('test://other')
  b.app.mcpEvents.resourcesChanged()
  b.app.mcpEvents.resourceUpdated('test://a')
  await until(() => list.events.length >= 2 && uriA.events.length >= 2, 5000, 'the changes published on the other instance')
  await new Promise(resolve => setTimeout(resolve, 150))
  t.same(list.events.slice(1), [{ jsonrpc: '2.0', method: 'notifications/resources/list_changed', params: { _meta: { 'io.modelcontextprotocol/subscriptionId': 'sub-list' } } }], 'the list stream: the list change only, with its id')
  t.same(uriA.events.slice(1), [{ jsonrpc: '2.0', method: 'notifications/resources/updated', params: { uri: 'test://a', _meta: { 'io.modelcontextprotocol/subscriptionId': 'sub-a' } } }], 'the URI stream: the update of its URI only (not test://other), with its id')
  t.equal(tools.events.length, 1, 'the tools stream got none of them')
})

t.test('closing a modern request\'s stream mid-progress cancels it: the tool\'s signal aborts', async t => {
  const seen: Seen = { builds: 0, aborted: 0 }
  const { app, base } = await startApp(t, { server: ctx => v2Server(seen, ctx) })
  let progressed = 0
  const req = http.request(`${base}/mcp`, {
    method: 'POST',
    headers: { accept: 'application/json, text/event-stream', 'content-type': 'application/json', 'mcp-protocol-version': MODERN, 'mcp-method': 'tools/call', 'mcp-name': 'ticks' }
  }, res => {
    t.equal(res.headers['content-type'], 'text/event-stream')
    res.setEncoding('utf8')
    res.on('data', (c: string) => { progressed += c.split('notifications/progress').length - 1 })
  })
  req.on('error', () => {})
  req.end(JSON.stringify(call(1, 'ticks', {}, { progressToken: 'p' })))
  await until(() => progressed >= 2, 5000, 'progress on the request\'s stream')
  t.equal(seen.aborted, 0)
  req.destroy()
  await until(() => seen.aborted === 1, 5000, 'the tool to see its signal abort')
  await until(() => app.mcpEvents.inFlight === 0, 5000, 'nothing in flight')
  t.pass('cancelled mid-progress')
})

t.test('maxMessageSize applies to modern requests: 413 message_too_large', async t => {
  const seen: Seen = { builds: 0, aborted: 0 }
  const { base } = await startApp(t, { server: ctx => v2Server(seen, ctx), maxMessageSize: 1024 })
  const headers = { 'mcp-method': 'tools/call', 'mcp-name': 'echo' }
  const big = await post(base, call(1, 'echo', { text: 'x'.repeat(2000) }), headers)
  t.equal(big.status, 413)
  t.match(big.json, { error: { code: -32000, data: { type: 'message_too_large' } } })
  t.equal(seen.builds, 0, 'no server built for it')
  const small = await post(base, call(2, 'echo', { text: 'x'.repeat(100) }), headers)
  t.equal(small.status, 200, 'under the limit it is served')
})

t.test('MRTR with a signed requestState across a Redis pair: the v2 client answers the elicitation, each round on another instance', async t => {
  const keyPrefix = testPrefix()
  const server = (ctx: McpSessionContext): McpServer => buildConformanceServerV2(ctx)
  const a = await startInstance(t, { server, redis: { url: REDIS_URL, keyPrefix } })
  const b = await startInstance(t, { server, redis: { url: REDIS_URL, keyPrefix } })
  const proxy = await startProxy(t, [a.base, b.base])
  const client = new ClientV2({ name: 'mrtr', version: '1' }, { capabilities: { elicitation: { form: {} } }, versionNegotiation: { mode: 'auto' } })
  const asked: string[] = []
  client.setRequestHandler('elicitation/create', async request => {
    asked.push(request.params.message)
    return { action: 'accept', content: { ok: true } }
  })
  await client.connect(new StreamableV2(new URL(`${proxy.base}/mcp`)))
  t.teardown(() => client.close())
  t.equal(client.getProtocolEra(), 'modern')
  const from = proxy.log.length
  const result = await client.callTool({ name: 'test_input_required_result_request_state', arguments: {} })
  t.equal(text(result), 'state-ok: confirmed=true, step=1', 'the retry verified the state the other instance sealed')
  t.same(asked, ['Please confirm'], 'the client answered one elicitation')
  const rounds = proxy.log.slice(from)
  t.equal(rounds.length, 2, 'two rounds: input_required, then the retry')
  t.not(rounds[0]?.upstream, rounds[1]?.upstream, 'each round on another instance')

  // A state altered in transit is refused on the other instance, before the tool runs.
  const caps = { 'io.modelcontextprotocol/clientCapabilities': { elicitation: { form: {} } } }
  const headers = { 'mcp-method': 'tools/call', 'mcp-name': 'test_input_required_result_tampered_state' }
  const first = await post(a.base, call(1, 'test_input_required_result_tampered_state', {}, caps), headers)
  const state = (first.json as { result: { requestState: string } }).result.requestState
  t.type(state, 'string')
  const tampered = state.slice(0, -2) + (state.endsWith('AA') ? 'BB' : 'AA')
  const retry = (requestState: string): object => ({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'test_input_required_result_tampered_state', arguments: {}, inputResponses: { confirm: { action: 'accept', content: { ok: true } } }, requestState, _meta: { ...META, ...caps } } })
  const refused = await post(b.base, retry(tampered), headers)
  t.match(refused.json, { id: 2, error: { code: -32602 } }, 'a tampered requestState: -32602')
  const accepted = await post(b.base, retry(state), headers)
  t.match(accepted.json, { id: 2, result: { resultType: 'complete', content: [{ text: 'state-ok' }] } }, 'the intact one completes on the other instance')
})
