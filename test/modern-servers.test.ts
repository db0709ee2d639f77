// The life of the servers the factory gives for 2026-07-28 requests: each is closed exactly
// once, when the plugin is done with it (after its exchange, or when the pool of kept
// servers lets go of it), none serves after its close, and a server's own onclose still
// runs. Counted on real servers from a factory, over real sockets.
import http from 'node:http'
import t from 'tap'
import { z } from 'zod'
import { McpServer, fromJsonSchema } from '@modelcontextprotocol/server'
import type { McpSessionContext } from '../src/index.js'
import { startApp, until } from './support/helpers.js'

const MODERN = '2026-07-28'
/** `region` is mirrored into `Mcp-Param-Region` (x-mcp-header), checked by the SDK after the factory ran. */
const REGION_SCHEMA = { type: 'object', properties: { region: { type: 'string', 'x-mcp-header': 'Region' } }, required: ['region'] }

/** What a factory's servers went through. */
class Census {
  builds = 0
  /** close() calls, per server (by build number). */
  readonly closes = new Map<number, number>()
  /** The server's own onclose (the end of each exchange it served). */
  ownOnclose = 0
  /** Requests a server served after its close(). */
  servedAfterClose = 0
  /** Which build served each request, by the request's client name. */
  readonly servedBy: Array<{ client: string, build: number }> = []

  get closed (): number {
    let n = 0
    for (const c of this.closes.values()) n += c
    return n
  }

  /** Servers closed more than once. */
  get twice (): number[] {
    return [...this.closes].filter(([, c]) => c > 1).map(([b]) => b)
  }

  factory = (_ctx: McpSessionContext): McpServer => {
    const build = ++this.builds
    const server = new McpServer({ name: 'census', version: '1.0.0' }, { capabilities: { tools: {} } })
    let closed = false
    server.registerTool('hold', { inputSchema: z.object({ ms: z.number() }) }, async ({ ms }, ctx) => {
      if (closed) this.servedAfterClose++
      const client = (ctx.mcpReq.envelope as Record<string, { name?: string } | undefined> | undefined)?.['io.modelcontextprotocol/clientInfo']?.name ?? '?'
      this.servedBy.push({ client, build })
      await new Promise(resolve => setTimeout(resolve, ms))
      return { content: [{ type: 'text', text: String(build) }] }
    })
    server.registerTool('region', { inputSchema: fromJsonSchema<{ region: string }>(REGION_SCHEMA) },
      async ({ region }) => ({ content: [{ type: 'text', text: region }] }))
    server.server.onclose = () => { this.ownOnclose++ }
    const close = server.close.bind(server)
    server.close = async () => {
      closed = true
      this.closes.set(build, (this.closes.get(build) ?? 0) + 1)
      await close()
    }
    return server
  }
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 16 })
t.teardown(() => { agent.destroy() })

/** A raw modern POST, read to its end. */
function post (base: string, body: object, headers: Record<string, string>): Promise<{ status: number, text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}/mcp`, {
      method: 'POST',
      agent,
      headers: { accept: 'application/json, text/event-stream', 'content-type': 'application/json', 'mcp-protocol-version': MODERN, ...headers }
    }, res => {
      let raw = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { raw += c })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, text: raw }) })
    })
    req.on('error', reject)
    req.end(JSON.stringify(body))
  })
}

const meta = (client: string): object => ({
  'io.modelcontextprotocol/protocolVersion': MODERN,
  'io.modelcontextprotocol/clientInfo': { name: client, version: '1' },
  'io.modelcontextprotocol/clientCapabilities': {}
})

const hold = (base: string, client: string, ms = 0): Promise<{ status: number, text: string }> =>
  post(base, { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'hold', arguments: { ms }, _meta: meta(client) } }, { 'mcp-method': 'tools/call', 'mcp-name': 'hold' })

/** Opens a listen stream; resolves once it is acknowledged, with a way to end it. */
function listen (base: string, client: string): Promise<{ end: () => Promise<void> }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}/mcp`, {
      method: 'POST',
      headers: { accept: 'application/json, text/event-stream', 'content-type': 'application/json', 'mcp-protocol-version': MODERN, 'mcp-method': 'subscriptions/listen' }
    }, res => {
      const ended = new Promise<void>(resolve => { res.on('close', () => { resolve() }) })
      res.once('data', () => { resolve({ end: async () => { req.destroy(); await ended } }) })
    })
    req.on('error', reject)
    req.end(JSON.stringify({ jsonrpc: '2.0', id: 'l', method: 'subscriptions/listen', params: { notifications: { toolsListChanged: true }, _meta: meta(client) } }))
  })
}

t.test('a new server per request: each is closed once its exchange ends, and its own onclose runs', async t => {
  const census = new Census()
  const { app, base } = await startApp(t, { server: census.factory })
  for (let i = 0; i < 3; i++) t.equal((await hold(base, 'a')).status, 200)
  await until(() => census.closed === 3, 5000, 'each server to be closed')
  t.equal(census.ownOnclose, 3, 'the server\'s own onclose ran at the end of its exchange')
  const l = await listen(base, 'a')
  await until(() => census.closed === 4, 5000, 'the listen request\'s server to be closed')
  await l.end()
  await app.close()
  t.equal(census.builds, 4)
  t.same(census.twice, [], 'none closed twice')
  t.equal(census.closed, 4, 'every server closed')
})

t.test('kept servers: one the pool has no room for is closed; every server is closed exactly once; none serves after its close', async t => {
  const census = new Census()
  const { app, base } = await startApp(t, { server: census.factory, modern: { reuseServers: 1 } })
  // Three at once for one caller: three servers; one is kept, the pool has no room for two.
  const answers = await Promise.all([hold(base, 'a', 50), hold(base, 'a', 50), hold(base, 'a', 50)])
  t.same(answers.map(a => a.status), [200, 200, 200])
  t.equal(census.builds, 3)
  await until(() => census.closed === 2, 5000, 'the two the pool could not keep to be closed')
  t.equal(census.ownOnclose, 3, 'the server\'s own onclose is chained, not replaced')
  await hold(base, 'a')
  t.equal(census.builds, 3, 'the kept one served the next request')
  t.equal(census.ownOnclose, 4, 'and its own onclose ran again at that exchange\'s end')
  await app.close()
  t.equal(census.closed, 3, 'the kept one closed with the app')
  t.same(census.twice, [], 'none closed twice')
  t.equal(census.servedAfterClose, 0)
})

t.test('kept servers: a listen request takes none of them, and its own server is closed once', async t => {
  const census = new Census()
  const { app, base } = await startApp(t, { server: census.factory, modern: { reuseServers: 2 } })
  await hold(base, 'a')
  await until(() => census.ownOnclose === 1, 5000, 'the first exchange to end')
  t.equal(census.builds, 1)
  const l = await listen(base, 'a')
  t.equal(census.builds, 2, 'the listen request got a server of its own')
  await until(() => census.closes.get(2) === 1, 5000, 'the listen request\'s server to be closed')
  await hold(base, 'a')
  t.equal(census.builds, 2, 'the kept server is still there for the next call')
  t.same(census.servedBy.map(s => s.build), [1, 1])
  await l.end()
  await app.close()
  t.equal(census.closed, 2)
  t.same(census.twice, [])
  t.equal(census.servedAfterClose, 0)
})

t.test('kept servers: a request the SDK refuses after the factory ran (x-mcp-header mismatch) leaves nothing open and nothing reused after close', async t => {
  const census = new Census()
  const { app, base } = await startApp(t, { server: census.factory, modern: { reuseServers: 2 } })
  const region = (value: string, header: string): Promise<{ status: number, text: string }> =>
    post(base, { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'region', arguments: { region: value }, _meta: meta('a') } }, { 'mcp-method': 'tools/call', 'mcp-name': 'region', 'mcp-param-region': header })
  t.equal((await region('eu', 'eu')).status, 200)
  const refused = await region('eu', 'us')
  t.equal(refused.status, 400)
  t.match(JSON.parse(refused.text), { error: { code: -32020 } }, 'HeaderMismatch on Mcp-Param-Region')
  for (let i = 0; i < 3; i++) t.equal((await hold(base, 'a')).status, 200)
  await app.close()
  t.equal(census.closed, census.builds, `all ${census.builds} servers closed`)
  t.same(census.twice, [], 'none closed twice')
  t.equal(census.servedAfterClose, 0, 'none served after its close')
})

t.test('kept servers: the oldest caller\'s servers are closed when a new caller needs room (1000 callers kept)', async t => {
  const census = new Census()
  const { app, base } = await startApp(t, { server: census.factory, modern: { reuseServers: 1 } })
  const callers = 1001
  // The first caller's server is kept first, so it is the oldest.
  await hold(base, 'c0')
  await until(() => census.ownOnclose === 1, 5000, 'the first exchange to end')
  for (let i = 1; i < callers; i += 20) {
    await Promise.all(Array.from({ length: Math.min(20, callers - i) }, (_, j) => hold(base, `c${i + j}`)))
  }
  t.equal(census.builds, callers)
  await until(() => census.ownOnclose === callers, 10000, 'every exchange to end')
  await until(() => census.closed >= 1, 5000, 'the oldest caller\'s server to be closed')
  t.equal(census.closed, 1, 'one caller past the 1000 kept: the oldest let go')
  t.equal(census.closes.get(1), 1, 'and it is the first caller\'s server')
  t.equal(census.servedBy[0]?.client, 'c0')
  await app.close()
  t.equal(census.closed, census.builds)
  t.same(census.twice, [])
})

/** A listen request's status and body, when it is refused (undefined once it streams). */
function listenRefused (base: string): Promise<{ status: number, json: unknown } | { end: () => Promise<void> }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}/mcp`, {
      method: 'POST',
      headers: { accept: 'application/json, text/event-stream', 'content-type': 'application/json', 'mcp-protocol-version': MODERN, 'mcp-method': 'subscriptions/listen' }
    }, res => {
      if (res.statusCode !== 200) {
        let raw = ''
        res.setEncoding('utf8')
        res.on('data', (c: string) => { raw += c })
        res.on('end', () => { resolve({ status: res.statusCode ?? 0, json: JSON.parse(raw) }) })
        return
      }
      const ended = new Promise<void>(resolve => { res.on('close', () => { resolve() }) })
      res.once('data', () => { resolve({ end: async () => { req.destroy(); await ended } }) })
    })
    req.on('error', reject)
    req.end(JSON.stringify({ jsonrpc: '2.0', id: 'l', method: 'subscriptions/listen', params: { notifications: { toolsListChanged: true }, _meta: meta('a') } }))
  })
}

t.test('listen streams count under maxSessions beside sessions: past it, 503 too_many_sessions', async t => {
  const census = new Census()
  const { app, base } = await startApp(t, { server: census.factory, maxSessions: 2 })
  const first = await listenRefused(base)
  t.ok('end' in first, 'a listen stream under the cap')
  // An HTTP+SSE session takes the second place.
  const sse = http.get(`${base}/sse`, { headers: { accept: 'text/event-stream' } })
  sse.on('error', () => {})
  await until(() => app.mcpSessions.size === 1, 5000, 'the HTTP+SSE session')
  const refused = await listenRefused(base)
  t.match(refused, { status: 503, json: { error: { code: -32000, data: { type: 'too_many_sessions' } } } }, 'one listen stream and one session: the cap of 2 is reached')
  t.equal(app.mcpEvents.listening, 1)
  sse.destroy()
  await until(() => app.mcpSessions.size === 0, 5000, 'the session to end')
  const second = await listenRefused(base)
  t.ok('end' in second, 'room again once the session ended')
  const third = await listenRefused(base)
  t.match(third, { status: 503, json: { error: { data: { type: 'too_many_sessions' } } } }, 'two listen streams: the cap')
  if ('end' in first) await first.end()
  await until(() => app.mcpEvents.listening === 1, 5000, 'the first listen stream to be counted out')
  const fourth = await listenRefused(base)
  t.ok('end' in fourth, 'a listen stream that ended leaves its place')
  if ('end' in second) await second.end()
  if ('end' in fourth) await fourth.end()
})

t.test('sessions count listen streams too: with the cap taken by listen streams, initialize and GET /sse answer 503 too_many_sessions', async t => {
  const census = new Census()
  const { app, base } = await startApp(t, { server: census.factory, maxSessions: 2 })
  const streams = [await listenRefused(base), await listenRefused(base)]
  t.ok(streams.every(s => 'end' in s), 'two listen streams take both places')
  const init = await post(base, { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'c', version: '1' } } }, { 'mcp-protocol-version': '2025-11-25' })
  t.equal(init.status, 503, 'initialize is refused')
  t.match(JSON.parse(init.text), { error: { code: -32000, data: { type: 'too_many_sessions' } } })
  const sse = await new Promise<number>(resolve => {
    http.get(`${base}/sse`, { headers: { accept: 'text/event-stream' } }, res => { res.resume(); resolve(res.statusCode ?? 0) })
  })
  t.equal(sse, 503, 'an HTTP+SSE stream is refused')
  t.equal(app.mcpSessions.size, 0, 'no session opened')
  for (const s of streams) if ('end' in s) await s.end()
  await until(() => app.mcpEvents.listening === 0, 5000, 'the listen streams to be counted out')
  const again = await post(base, { jsonrpc: '2.0', id: 2, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'c', version: '1' } } }, { 'mcp-protocol-version': '2025-11-25' })
  t.equal(again.status, 200, 'room again once they ended')
})
