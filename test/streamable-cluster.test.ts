// Streamable HTTP across instances over a real Redis: requests for a session held by
// another instance are relayed to it, and its answers (JSON, or streams with progress)
// come back on the receiving instance's response. Round-robin proxies, no stickiness.
import http from 'node:http'
import t, { type Test } from 'tap'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { Client as ClientV2, StreamableHTTPClientTransport as StreamableV2 } from '@modelcontextprotocol/client'
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js'
import { Redis } from 'ioredis'
import { z } from 'zod'
import mcpSse, { ApiKeyAuthProvider } from '../src/index.js'
import { buildExampleServer } from '../example/mcp-server.js'
import { PrivateRedis, REDIS_URL, spawnInstance, startInstance, startProxy, testPrefix, type Instance } from './support/cluster.js'
import { until } from './support/helpers.js'

const ACCEPT = 'application/json, text/event-stream'
const INIT = {
  jsonrpc: '2.0',
  id: 0,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } }
}

const text = (r: unknown): string => {
  const first = (r as CallToolResult).content[0]
  return first?.type === 'text' ? first.text : ''
}

interface Event { id: string | undefined, event: string | undefined, data: string }

interface Answer {
  status: number
  headers: http.IncomingHttpHeaders
  text: string
  events: Event[]
  json: unknown
}

function parseEvents (raw: string): Event[] {
  const out: Event[] = []
  for (const block of raw.split('\n\n')) {
    // Blank blocks and comments (lines starting with ':') are not events.
    if (block.split('\n').every(line => line === '' || line.startsWith(':'))) continue
    const field = (name: string): string | undefined => new RegExp(`^${name}: ?(.*)$`, 'm').exec(block)?.[1]
    const event = field('event')
    if (event === 'ping') continue
    out.push({ id: field('id'), event, data: field('data') ?? '' })
  }
  return out
}

/** A request to `{base}/mcp`, read to its end. */
function request (base: string, method: string, body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}/mcp`, {
      method,
      headers: { accept: ACCEPT, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers }
    }, res => {
      let raw = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { raw += c })
      res.on('end', () => {
        let json: unknown
        try { json = raw === '' ? undefined : JSON.parse(raw) } catch { json = undefined }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text: raw, events: parseEvents(raw), json })
      })
    })
    req.on('error', reject)
    req.end(body === undefined ? undefined : JSON.stringify(body))
  })
}

/** Opens a session on `base` (initialize + initialized); returns its id. */
async function open (t: Test, base: string, headers: Record<string, string> = {}): Promise<string> {
  const init = await request(base, 'POST', INIT, headers)
  t.equal(init.status, 200, 'initialize')
  const id = String(init.headers['mcp-session-id'])
  const h = { 'mcp-session-id': id, 'mcp-protocol-version': '2025-11-25', ...headers }
  t.equal((await request(base, 'POST', { jsonrpc: '2.0', method: 'notifications/initialized' }, h)).status, 202)
  return id
}

const session = (id: string, extra: Record<string, string> = {}): Record<string, string> =>
  ({ 'mcp-session-id': id, 'mcp-protocol-version': '2025-11-25', ...extra })

/** A standalone GET stream being read; `events` fills as they come. */
interface LiveStream {
  status: Promise<number>
  events: Event[]
  ended: Promise<void>
  close: () => void
}

function stream (base: string, headers: Record<string, string>): LiveStream {
  const events: Event[] = []
  let buf = ''
  let setStatus!: (s: number) => void
  let setEnded!: () => void
  const status = new Promise<number>(resolve => { setStatus = resolve })
  const ended = new Promise<void>(resolve => { setEnded = resolve })
  const req = http.request(`${base}/mcp`, { method: 'GET', headers: { accept: 'text/event-stream', ...headers } }, res => {
    setStatus(res.statusCode ?? 0)
    res.setEncoding('utf8')
    res.on('data', (c: string) => {
      buf += c
      const parts = buf.split('\n\n')
      buf = parts.pop() ?? ''
      events.push(...parseEvents(parts.join('\n\n')))
    })
    res.on('close', () => setEnded())
  })
  req.on('error', () => { setStatus(0); setEnded() })
  req.end()
  return { status, events, ended, close: () => req.destroy() }
}

/** Servers made by an instance's factory, so a test can make them speak first. */
function recordingFactory (): { servers: McpServer[], server: () => McpServer } {
  const servers: McpServer[] = []
  return { servers, server: () => { const s = buildExampleServer(); servers.push(s); return s } }
}

type InstanceOptions = Omit<Parameters<typeof startInstance>[1], 'redis'>

/** Two instances sharing sessions through one Redis (a fresh key prefix). */
async function pair (t: Test, extra: InstanceOptions = {}, url = REDIS_URL, redis: { relayTimeout?: number, sessionTtl?: number } = {}): Promise<[Instance, Instance, string]> {
  const keyPrefix = testPrefix()
  const a = await startInstance(t, { ...extra, redis: { ...redis, url, keyPrefix } })
  const b = await startInstance(t, { ...extra, redis: { ...redis, url, keyPrefix } })
  return [a, b, keyPrefix]
}

/** A plugin instance in a process of its own (so it can be killed outright); its base URL. */
/** A server whose `sleep` tool answers after `ms`, with nothing before its result (a JSON answer). */
function sleepyServer (): McpServer {
  const s = new McpServer({ name: 'sleepy', version: '1' })
  s.registerTool('sleep', { description: 'answers after a while', inputSchema: { ms: z.number() } }, async ({ ms }) => {
    await new Promise(resolve => setTimeout(resolve, ms))
    return { content: [{ type: 'text', text: `slept ${ms}` }] }
  })
  s.registerTool('wait', { description: 'never answers' }, async () => await new Promise<never>(() => {}))
  return s
}

/** The SDK client of one line over Streamable HTTP, closed when the test ends. */
async function connectLine (t: Test, line: 'v1' | 'v2', url: URL): Promise<Client | ClientV2> {
  const client = line === 'v1' ? new Client({ name: 'c1', version: '1' }) : new ClientV2({ name: 'c2', version: '1' })
  await client.connect(line === 'v1' ? new StreamableHTTPClientTransport(url) : new StreamableV2(url))
  t.teardown(() => client.close())
  return client
}

const ping = (n: number): object => ({ jsonrpc: '2.0', id: n, method: 'ping' })

const toolsChanged = { jsonrpc: '2.0', method: 'notifications/tools/list_changed' }

t.test('SDK clients of both lines, every request through another instance than the last: tools, progress before results, 100 answers in order', async t => {
  const keyPrefix = testPrefix()
  const instances = await Promise.all([0, 1, 2].map(() => startInstance(t, { redis: { url: REDIS_URL, keyPrefix } })))
  const proxy = await startProxy(t, instances.map(i => i.base))
  for (const line of ['v1', 'v2'] as const) {
    const url = new URL(`${proxy.base}/mcp`)
    const client = await connectLine(t, line, url)
    const { tools } = await client.listTools()
    t.same(tools.map(x => x.name).sort(), ['countdown', 'echo'], `${line}: tools/list`)
    const progress: number[] = []
    const onprogress = (p: { progress: number }): void => { progress.push(p.progress) }
    const args = { name: 'countdown', arguments: { from: 3, intervalMs: 20 } }
    // The lines differ here: v1 takes a result schema before the options.
    const counted = client instanceof Client ? await client.callTool(args, undefined, { onprogress }) : await client.callTool(args, { onprogress })
    t.equal(text(counted), 'Counted down from 3', `${line}: the result`)
    t.same(progress, [0, 1, 2], `${line}: every progress notification, before the result`)
    const got: string[] = []
    for (let i = 0; i < 100; i++) got.push(text(await client.callTool({ name: 'echo', arguments: { text: `m${i}` } })))
    t.same(got, Array.from({ length: 100 }, (_, i) => `m${i}`), `${line}: 100 answers, in order`)
    const burst = await Promise.all(Array.from({ length: 30 }, (_, i) => client.callTool({ name: 'echo', arguments: { text: `b${i}` } })))
    t.same(burst.map(text), Array.from({ length: 30 }, (_, i) => `b${i}`), `${line}: 30 at once, each its own answer`)
  }
  t.equal(instances.reduce((n, i) => n + i.app.mcpSessions.size, 0), 2, 'one session per client, each on one instance')
  const posts = proxy.log.filter(r => r.method === 'POST')
  t.ok(new Set(posts.map(p => p.upstream)).size === 3, 'POSTs landed on every instance')
})

t.test('a GET stream on one instance gets the server-initiated messages of a session held by another; DELETE anywhere ends it on its owner', async t => {
  const rec = recordingFactory()
  const [a, b] = await pair(t, { server: rec.server })
  const id = await open(t, a.base)
  const info = await b.app.mcpSessions.lookup(id)
  t.match(info, { id, local: false, owner: (a.app.mcpSessions as unknown as { instanceId: string }).instanceId }, 'lookup on the other instance finds it')
  const s = stream(b.base, session(id))
  t.equal(await s.status, 200)
  await until(() => s.events.length >= 1, 5000, 'the priming event')
  t.match(s.events[0], { id: new RegExp(`^${id}\\.0\\.0$`), data: '' }, 'primed with an event id of the owner\'s numbering')
  const again = await request(b.base, 'GET', undefined, { ...session(id), accept: 'text/event-stream' })
  t.equal(again.status, 409, 'a second stream, through either instance, is a conflict')
  t.equal((await request(a.base, 'GET', undefined, { ...session(id), accept: 'text/event-stream' })).status, 409)
  const server = rec.servers[0] as McpServer
  for (let i = 0; i < 5; i++) server.sendToolListChanged()
  await until(() => s.events.length >= 6, 5000, 'five notifications')
  t.same(s.events.slice(1).map(e => JSON.parse(e.data)), Array.from({ length: 5 }, () => toolsChanged))
  t.same(s.events.slice(1).map(e => e.id), [1, 2, 3, 4, 5].map(n => `${id}.0.${n}`), 'numbered in order')

  const del = await request(b.base, 'DELETE', undefined, session(id))
  t.equal(del.status, 204, 'DELETE through the other instance')
  await s.ended
  t.equal(a.app.mcpSessions.size, 0, 'the session ended on its owner')
  t.equal((await request(b.base, 'POST', { jsonrpc: '2.0', id: 1, method: 'ping' }, session(id))).status, 404)
  t.equal((await request(a.base, 'POST', { jsonrpc: '2.0', id: 1, method: 'ping' }, session(id))).status, 404)
})

for (const eventStore of ['memory', 'redis'] as const) {
t.test(`a client that leaves a relayed POST stream cancels nothing: the owner finishes, and the rest is resumed through either instance (${eventStore} event store)`, async t => {
  const [a, b, keyPrefix] = await pair(t, eventStore === 'redis' ? { eventStore: 'redis' } : {})
  const id = await open(t, a.base)
  const call = { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'countdown', arguments: { from: 4, intervalMs: 150 }, _meta: { progressToken: 'p' } } }
  // Read the POST stream through B until the first progress, then leave.
  const first = await new Promise<Event[]>((resolve, reject) => {
    const req = http.request(`${b.base}/mcp`, { method: 'POST', headers: { accept: ACCEPT, 'content-type': 'application/json', ...session(id) } }, res => {
      let buf = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => {
        buf += c
        const events = parseEvents(buf.slice(0, buf.lastIndexOf('\n\n') + 2))
        if (events.some(e => e.data.includes('progress'))) {
          req.destroy()
          resolve(events)
        }
      })
    })
    req.on('error', reject)
    req.end(JSON.stringify(call))
  })
  const last = first.filter(e => e.id !== undefined).pop()?.id as string
  t.match(last, new RegExp(`^${id}\\.`), 'events carry the owner\'s ids')
  // Resume through the owner itself once the tool is done: everything after, once.
  await new Promise(resolve => setTimeout(resolve, 700))
  const rest = await request(a.base, 'GET', undefined, { ...session(id), accept: 'text/event-stream', 'last-event-id': last })
  t.equal(rest.status, 200)
  const messages = rest.events.filter(e => e.data !== '').map(e => JSON.parse(e.data) as { id?: number, params?: { progress: number }, result?: unknown })
  t.same(messages.filter(m => m.params !== undefined).map(m => m.params?.progress), [1, 2, 3], 'the progress the client missed, once each')
  t.match(messages.at(-1), { id: 7, result: { content: [{ text: 'Counted down from 4' }] } }, 'then the result: not cancelled')
  const again = await request(b.base, 'GET', undefined, { ...session(id), accept: 'text/event-stream', 'last-event-id': last })
  t.same(again.events.map(e => e.id), rest.events.map(e => e.id), 'the same replay through the other instance')
  if (eventStore === 'redis') {
    const redis = new Redis(REDIS_URL)
    t.teardown(() => redis.quit())
    t.ok(await redis.xlen(`${keyPrefix}events:${id}`) > 0, 'the events are in Redis')
    t.equal((await request(b.base, 'DELETE', undefined, session(id))).status, 204)
    await until(() => a.app.mcpSessions.size === 0, 2000, 'the session to end')
    await new Promise(resolve => setTimeout(resolve, 50))
    t.equal(await redis.exists(`${keyPrefix}events:${id}`), 0, 'and leave with the session')
  }
})
}

t.test('notifications/cancelled sent to another instance than the request reaches the owner', async t => {
  const aborted: boolean[] = []
  const server = (): McpServer => {
    const s = new McpServer({ name: 'slow', version: '1' })
    s.registerTool('wait', { description: 'waits to be cancelled' }, async extra => await new Promise(resolve => {
      extra.signal.addEventListener('abort', () => { aborted.push(true); resolve({ content: [] }) })
    }))
    return s
  }
  const [a, b] = await pair(t, { server })
  const id = await open(t, a.base)
  const pending = request(a.base, 'POST', { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'wait', arguments: {} } }, session(id))
  await new Promise(resolve => setTimeout(resolve, 100))
  const cancel = await request(b.base, 'POST', { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 3, reason: 'test' } }, session(id))
  t.equal(cancel.status, 202)
  await until(() => aborted.length === 1, 5000, 'the tool to see the cancellation')
  t.pass('the owner aborted the request')
  void pending
})

t.test('another principal cannot use a session through another instance; its owner can', async t => {
  const auth = { provider: new ApiKeyAuthProvider({ keys: [{ key: 'key-a', principal: 'alice' }, { key: 'key-b', principal: 'bob' }] }) }
  const [a, b] = await pair(t, { auth })
  const alice = { authorization: 'Bearer key-a' }
  const id = await open(t, a.base, alice)
  const ping = { jsonrpc: '2.0', id: 2, method: 'ping' }
  const bob = await request(b.base, 'POST', ping, session(id, { authorization: 'Bearer key-b' }))
  t.equal(bob.status, 404, 'bob through B: like an unknown session')
  t.match(bob.json, { error: { data: { type: 'session_not_found' } } })
  t.equal((await request(b.base, 'GET', undefined, session(id, { authorization: 'Bearer key-b', accept: 'text/event-stream' }))).status, 404)
  t.equal((await request(b.base, 'DELETE', undefined, session(id, { authorization: 'Bearer key-b' }))).status, 404)
  t.equal((await request(b.base, 'POST', ping, session(id))).status, 401, 'no credentials: 401 before any lookup')
  const ok = await request(b.base, 'POST', ping, session(id, alice))
  t.equal(ok.status, 200, 'alice through B')
  t.match(ok.json, { id: 2, result: {} })
  t.equal(a.app.mcpSessions.size, 1)
})

for (const eventStore of ['memory', 'redis'] as const) {
t.test(`SIGKILL of the instance holding a GET stream: the client resumes on another with nothing lost or twice (${eventStore} event store)`, async t => {
  const rec = recordingFactory()
  const keyPrefix = testPrefix()
  const events = eventStore === 'redis' ? { eventStore: 'redis' as const } : {}
  const a = await startInstance(t, { ...events, server: rec.server, redis: { url: REDIS_URL, keyPrefix } })
  const b = await startInstance(t, { ...events, redis: { url: REDIS_URL, keyPrefix } })
  const c = await spawnInstance(t, keyPrefix)
  const id = await open(t, a.base)
  const s = stream(c.base, session(id))
  t.equal(await s.status, 200, 'the stream is on the child instance')
  const server = rec.servers[0] as McpServer
  for (let i = 0; i < 3; i++) server.sendToolListChanged()
  await until(() => s.events.length >= 4, 5000, 'three notifications through the child')
  const seen = s.events.map(e => e.id)
  await c.kill()
  await s.ended
  // Messages sent while the client has no stream are kept for it.
  for (let i = 0; i < 4; i++) server.sendToolListChanged()
  const resumed = stream(b.base, session(id, { 'last-event-id': seen.at(-1) as string }))
  t.equal(await resumed.status, 200, 'resumed through another instance (no 409: the dead stream was noticed)')
  await until(() => resumed.events.length >= 4, 5000, 'the missed messages')
  server.sendToolListChanged()
  await until(() => resumed.events.length >= 5, 5000, 'a live one after the replay')
  const all = [...seen, ...resumed.events.map(e => e.id)]
  t.same(all, Array.from({ length: 9 }, (_, n) => `${id}.0.${n}`), 'every event once, in order')
  resumed.close()
  if (eventStore === 'redis') {
    const redis = new Redis(REDIS_URL)
    t.teardown(() => redis.quit())
    t.equal(await redis.xlen(`${keyPrefix}events:${id}`), 8, 'the replay came from Redis, which holds every event')
  }
})
}

t.test('SIGKILL of the owner: its relayed streams end, its sessions answer 404 at once through every instance', async t => {
  const keyPrefix = testPrefix()
  const b = await startInstance(t, { redis: { url: REDIS_URL, keyPrefix } })
  const owner = await spawnInstance(t, keyPrefix)
  const id = await open(t, owner.base)
  const s = stream(b.base, session(id))
  t.equal(await s.status, 200)
  const call = { jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: 'countdown', arguments: { from: 50, intervalMs: 200 }, _meta: { progressToken: 1 } } }
  const pending = request(b.base, 'POST', call, session(id))
  await until(() => s.events.length >= 1, 5000, 'the priming event')
  await new Promise(resolve => setTimeout(resolve, 300))
  await owner.kill()
  const started = Date.now()
  await s.ended
  const answer = await pending
  t.ok(Date.now() - started < 4000, 'both ended within the owner check')
  t.equal(answer.status, 200, 'the POST stream had begun: it ends')
  t.notOk(answer.events.some(e => e.data.includes('"result"')), 'without a result')
  const after = await request(b.base, 'POST', { jsonrpc: '2.0', id: 6, method: 'ping' }, session(id))
  t.equal(after.status, 404, 'then 404')
})

t.test('Redis lost: local sessions keep working, relayed requests answer 503 with Retry-After, and it recovers', async t => {
  const redis = await PrivateRedis.start(t)
  const [a, b] = await pair(t, { }, redis.url)
  const id = await open(t, a.base)
  const ping = (n: number): object => ({ jsonrpc: '2.0', id: n, method: 'ping' })
  t.equal((await request(b.base, 'POST', ping(1), session(id))).status, 200, 'relayed while Redis is up')
  const s = stream(b.base, session(id))
  t.equal(await s.status, 200)
  await redis.down()
  await s.ended
  t.pass('a relayed stream ends when the link goes (the client resumes later)')
  const local = await request(a.base, 'POST', ping(2), session(id))
  t.equal(local.status, 200, 'the owner serves its session')
  await until(() => !(b.app.mcpSessions as unknown as { connected: boolean }).connected, 3000, 'B to notice')
  const remote = await request(b.base, 'POST', ping(3), session(id))
  t.equal(remote.status, 503)
  t.equal(remote.headers['retry-after'], '1')
  t.match(remote.json, { id: 3, error: { data: { type: 'service_unavailable' } } })
  await redis.up()
  await until(() => (b.app.mcpSessions as unknown as { connected: boolean }).connected && (a.app.mcpSessions as unknown as { connected: boolean }).connected, 10_000, 'reconnection')
  // Redis came back empty: the owner re-registers its sessions as soon as its link is
  // back; meanwhile B answers 503 (retry), never 404 (which would end the client's session).
  let back = 0
  const meanwhile: number[] = []
  for (let i = 0; i < 100 && back !== 200; i++) {
    const answer = await request(b.base, 'POST', ping(4), session(id))
    back = answer.status
    if (back !== 200) {
      meanwhile.push(back)
      t.equal(answer.headers['retry-after'], '1', 'a retry is asked for')
      await new Promise(resolve => setTimeout(resolve, 100))
    }
  }
  t.equal(back, 200, 'relayed again once Redis is back')
  t.ok(meanwhile.every(status => status === 503), `only 503 while recovering (${meanwhile.length} retries: ${meanwhile.join(', ') || 'none'})`)
  t.equal(a.app.mcpSessions.size, 1, 'the session was never lost')
})

t.test("eventStore 'redis' needs the redis option, and a Redis that cannot be reached fails register without leaving a connection behind", async t => {
  const Fastify = (await import('fastify')).default
  const app = Fastify()
  await t.rejects(async () => { await app.register(mcpSse, { server: () => buildExampleServer(), eventStore: 'redis' }) }, { code: 'FST_ERR_MCP_SSE_INVALID_OPTION', message: /set redis too/ })
  await app.close()
  const down = Fastify()
  await t.rejects(async () => { await down.register(mcpSse, { server: () => buildExampleServer(), eventStore: 'redis', redis: { url: 'redis://127.0.0.1:1', connectTimeout: 200 } }) }, { code: 'FST_ERR_MCP_SSE_REDIS_UNAVAILABLE' })
  await down.close()
})

t.test('errors of the owner come back as they are: a batch the session\'s revision refuses, an HTTP+SSE session\'s id, a session that ended', async t => {
  const [a, b] = await pair(t)
  const id = await open(t, a.base)
  const batch = await request(b.base, 'POST', [{ jsonrpc: '2.0', id: 1, method: 'ping' }, { jsonrpc: '2.0', id: 2, method: 'ping' }], session(id))
  t.equal(batch.status, 400)
  t.match(batch.json, { error: { code: -32600, message: /batches are not part of protocol revision 2025-11-25/, data: { type: 'invalid_request', sessionId: id } } })
  // An HTTP+SSE session held by A means nothing on /mcp, through B either.
  const sse = await new Promise<string>((resolve, reject) => {
    http.get(`${a.base}/sse`, res => {
      res.setEncoding('utf8')
      res.once('data', (c: string) => { resolve(/sessionId=([\w-]+)/.exec(c)?.[1] ?? ''); res.destroy() })
    }).on('error', reject)
  })
  // (Its stream was closed at once: look it up while the id may still be registered.)
  const viaB = await request(b.base, 'POST', { jsonrpc: '2.0', id: 3, method: 'ping' }, session(sse))
  t.equal(viaB.status, 404)
  // A session that ends between B's lookup (cached) and the relay's arrival.
  t.equal((await request(b.base, 'POST', { jsonrpc: '2.0', id: 4, method: 'ping' }, session(id))).status, 200, 'B has the route cached')
  await a.app.mcpSessions.close(id)
  const late = await request(b.base, 'POST', { jsonrpc: '2.0', id: 5, method: 'ping' }, session(id))
  t.equal(late.status, 404)
  t.match(late.json, { id: 5, error: { data: { type: 'session_not_found' } } })
})

t.test('an owner that stops answering while still subscribed (SIGSTOP): relayed requests answer 503 with Retry-After once redis.relayTimeout passes, and it recovers when the owner wakes', async t => {
  const keyPrefix = testPrefix()
  const b = await startInstance(t, { redis: { url: REDIS_URL, keyPrefix, relayTimeout: 500 } })
  const owner = await spawnInstance(t, keyPrefix)
  const id = await open(t, owner.base)
  t.equal((await request(b.base, 'POST', ping(1), session(id))).status, 200, 'relayed while the owner answers')
  owner.signal('SIGSTOP')
  t.teardown(() => { owner.signal('SIGCONT') })
  for (const [method, body, headers] of [['POST', ping(2), session(id)], ['GET', undefined, session(id, { accept: 'text/event-stream' })]] as const) {
    const started = Date.now()
    const answer = await request(b.base, method, body, headers)
    const took = Date.now() - started
    t.equal(answer.status, 503, `${method}: 503`)
    t.equal(answer.headers['retry-after'], '1', `${method}: Retry-After`)
    t.match(answer.json, { id: method === 'POST' ? 2 : null, error: { code: -32000, message: /did not acknowledge the request within 500 ms \(redis\.relayTimeout\)/, data: { type: 'service_unavailable', sessionId: id } } })
    t.ok(took >= 450 && took < 2500, `${method}: answered at the bound (${took} ms), not left waiting`)
  }
  owner.signal('SIGCONT')
  const back = await request(b.base, 'POST', ping(3), session(id))
  t.equal(back.status, 200, 'the owner awake: relayed again')
  t.match(back.json, { id: 3, result: {} })
  const s = stream(b.base, session(id))
  t.equal(await s.status, 200, 'no stream left behind by the timed-out GET: no 409')
  s.close()
  await owner.kill()
})

t.test('a relayed tool call that takes longer than redis.relayTimeout is not cut short: the owner acknowledged it', async t => {
  const [a, b] = await pair(t, { server: sleepyServer }, REDIS_URL, { relayTimeout: 200 })
  const id = await open(t, a.base)
  const started = Date.now()
  const answer = await request(b.base, 'POST', { jsonrpc: '2.0', id: 4, method: 'tools/call', params: { name: 'sleep', arguments: { ms: 900 } } }, session(id))
  t.equal(answer.status, 200)
  t.match(answer.headers['content-type'], /application\/json/, 'a JSON answer, written only when the tool finished')
  t.match(answer.json, { id: 4, result: { content: [{ text: 'slept 900' }] } })
  t.ok(Date.now() - started >= 900, 'after the tool, well past the 200 ms bound')
})

t.test('app.close() without forceCloseConnections completes promptly with a relayed GET stream and a relayed POST not yet answered open on it', async t => {
  const keyPrefix = testPrefix()
  const a = await startInstance(t, { server: sleepyServer, redis: { url: REDIS_URL, keyPrefix } })
  const b = await startInstance(t, { redis: { url: REDIS_URL, keyPrefix } }, {})
  const id = await open(t, a.base)
  const s = stream(b.base, session(id))
  t.equal(await s.status, 200, 'a relayed GET stream on B')
  await until(() => s.events.length >= 1, 5000, 'the priming event')
  const pending = request(b.base, 'POST', { jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'wait', arguments: {} } }, session(id))
  await new Promise(resolve => setTimeout(resolve, 200))
  const started = Date.now()
  await b.app.close()
  const took = Date.now() - started
  t.ok(took < 2000, `close() took ${took} ms`)
  await s.ended
  t.pass('the stream ended (its client resumes elsewhere)')
  const answer = await pending
  t.equal(answer.status, 503, 'the answer not begun is a 503')
  t.equal(answer.headers['retry-after'], '1')
  t.match(answer.json, { id: 9, error: { data: { type: 'service_unavailable', sessionId: id } } })
  t.equal(a.app.mcpSessions.size, 1, 'the session lives on with its owner')
  const again = stream(a.base, session(id))
  t.equal(await again.status, 200, 'and its stream can be opened again: the owner was told B\'s client left')
  again.close()
})

t.test('a client that leaves a relayed GET before any byte came back is noticed: once the owner answers, the stream is not left open (no 409)', async t => {
  const keyPrefix = testPrefix()
  const b = await startInstance(t, { redis: { url: REDIS_URL, keyPrefix } })
  const owner = await spawnInstance(t, keyPrefix)
  const id = await open(t, owner.base)
  // A stopped owner holds the answer back, so the client leaves before the head.
  owner.signal('SIGSTOP')
  t.teardown(() => { owner.signal('SIGCONT') })
  const early = stream(b.base, session(id))
  await new Promise(resolve => setTimeout(resolve, 200))
  early.close()
  await early.ended
  await new Promise(resolve => setTimeout(resolve, 100))
  owner.signal('SIGCONT')
  // The owner opens the stream it was asked for, then hears its client left.
  await new Promise(resolve => setTimeout(resolve, 300))
  const s = stream(b.base, session(id))
  t.equal(await s.status, 200, 'a new stream opens: the first one ended on the owner')
  s.close()
  await owner.kill()
})

t.test('Redis restarted empty while the owner is slow to come back: other instances answer 503 with Retry-After (never 404) until it re-registers, then relay again', async t => {
  const redis = await PrivateRedis.start(t)
  const keyPrefix = testPrefix()
  const b = await startInstance(t, { redis: { url: redis.url, keyPrefix } })
  const owner = await spawnInstance(t, keyPrefix, { redisUrl: redis.url })
  const id = await open(t, owner.base)
  t.equal((await request(b.base, 'POST', ping(1), session(id))).status, 200, 'relayed while Redis is up')
  await redis.down()
  // The owner is held back while Redis restarts (empty) and B reconnects.
  owner.signal('SIGSTOP')
  t.teardown(() => { owner.signal('SIGCONT') })
  await redis.up()
  const connected = (): boolean => (b.app.mcpSessions as unknown as { connected: boolean }).connected
  await until(() => !connected(), 3000, 'B to notice').catch(() => {})
  await until(connected, 10_000, 'B to reconnect')
  const early = await request(b.base, 'POST', ping(2), session(id))
  t.equal(early.status, 503, 'the registry is empty, but the session is not gone: 503')
  t.equal(early.headers['retry-after'], '1')
  t.match(early.json, { id: 2, error: { data: { type: 'service_unavailable' } }, })
  owner.signal('SIGCONT')
  let back = 0
  const meanwhile: number[] = []
  for (let i = 0; i < 100 && back !== 200; i++) {
    back = (await request(b.base, 'POST', ping(3), session(id))).status
    if (back !== 200) {
      meanwhile.push(back)
      await new Promise(resolve => setTimeout(resolve, 50))
    }
  }
  t.equal(back, 200, 'relayed again once the owner re-registered')
  t.ok(meanwhile.every(status => status === 503), `only 503 meanwhile (${meanwhile.length} retries)`)
  await owner.kill()
})

t.test('Streamable HTTP through the round-robin proxy with 2 instances: SDK clients of both lines, each request on the other instance than the last', async t => {
  const keyPrefix = testPrefix()
  const instances = await Promise.all([0, 1].map(() => startInstance(t, { redis: { url: REDIS_URL, keyPrefix } })))
  const proxy = await startProxy(t, instances.map(i => i.base))
  for (const line of ['v1', 'v2'] as const) {
    const url = new URL(`${proxy.base}/mcp`)
    const client = await connectLine(t, line, url)
    const progress: number[] = []
    const onprogress = (p: { progress: number }): void => { progress.push(p.progress) }
    const args = { name: 'countdown', arguments: { from: 3, intervalMs: 20 } }
    const counted = client instanceof Client ? await client.callTool(args, undefined, { onprogress }) : await client.callTool(args, { onprogress })
    t.equal(text(counted), 'Counted down from 3', `${line}: the result`)
    t.same(progress, [0, 1, 2], `${line}: progress before the result`)
    const got: string[] = []
    for (let i = 0; i < 20; i++) got.push(text(await client.callTool({ name: 'echo', arguments: { text: `m${i}` } })))
    t.same(got, Array.from({ length: 20 }, (_, i) => `m${i}`), `${line}: 20 answers, in order`)
  }
  t.equal(instances.reduce((n, i) => n + i.app.mcpSessions.size, 0), 2, 'one session per client, each on one instance')
  const posts = proxy.log.filter(r => r.method === 'POST')
  t.ok(posts.filter(p => p.upstream === 0).length >= 20 && posts.filter(p => p.upstream === 1).length >= 20, 'POSTs landed on both instances alike')
})

t.test('app.close() deletes the Redis keys of its Streamable HTTP sessions (registry entry and events)', async t => {
  const [a, b, keyPrefix] = await pair(t, { eventStore: 'redis' })
  const id = await open(t, a.base)
  const rec = await request(b.base, 'POST', { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'countdown', arguments: { from: 1, intervalMs: 1 }, _meta: { progressToken: 1 } } }, session(id))
  t.equal(rec.status, 200)
  const redis = new Redis(REDIS_URL)
  t.teardown(() => redis.quit())
  t.equal(await redis.exists(`${keyPrefix}session:${id}`), 1, 'registered')
  t.ok(await redis.xlen(`${keyPrefix}events:${id}`) > 0, 'with events')
  await a.app.close()
  t.equal(await redis.exists(`${keyPrefix}session:${id}`), 0, 'the registry entry is gone')
  await new Promise(resolve => setTimeout(resolve, 50))
  t.equal(await redis.exists(`${keyPrefix}events:${id}`), 0, 'and its events')
  const after = await request(b.base, 'POST', ping(2), session(id))
  t.equal(after.status, 404, 'the other instance no longer finds it')
  t.match(after.json, { id: 2, error: { data: { type: 'session_not_found' } } })
})

t.test('a Streamable HTTP session whose owner died without a word: its entry expires after sessionTtl, then 404 everywhere', async t => {
  const keyPrefix = testPrefix()
  const b = await startInstance(t, { redis: { url: REDIS_URL, keyPrefix } })
  const owner = await spawnInstance(t, keyPrefix, { sessionTtl: 800 })
  const id = await open(t, owner.base)
  const redis = new Redis(REDIS_URL)
  t.teardown(() => redis.quit())
  t.equal(await redis.exists(`${keyPrefix}session:${id}`), 1, 'registered by its owner')
  await owner.kill()
  // Nobody asks for it meanwhile: only the TTL can remove it.
  const died = Date.now()
  for (let i = 0; i < 300 && await redis.exists(`${keyPrefix}session:${id}`) === 1; i++) await new Promise(resolve => setTimeout(resolve, 10))
  const gone = Date.now() - died
  t.equal(await redis.exists(`${keyPrefix}session:${id}`), 0, `the entry expired (${gone} ms after the owner died)`)
  t.ok(gone < 2000, 'within about sessionTtl')
  t.equal(await b.app.mcpSessions.lookup(id), undefined, 'lookup finds nothing')
  const answer = await request(b.base, 'POST', ping(3), session(id))
  t.equal(answer.status, 404)
  t.match(answer.json, { id: 3, error: { code: -32001, data: { type: 'session_not_found', sessionId: id } } })
  t.equal((await request(b.base, 'GET', undefined, session(id, { accept: 'text/event-stream' }))).status, 404, 'GET too')
})
