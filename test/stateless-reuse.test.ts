// Stateless Streamable HTTP with kept servers (`stateless: { reuseServers }`): a
// principal's POSTs are served by servers kept from its earlier ones, one POST at a time,
// and never by a server built for another principal or still busy with another request.
import http from 'node:http'
import t from 'tap'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { z } from 'zod'
import Fastify from 'fastify'
import mcpSse, { ApiKeyAuthProvider, type McpSseOptions } from '../src/index.js'
import { startApp, until } from './support/helpers.js'

const ACCEPT = 'application/json, text/event-stream'
const ALICE = 'alice-key-0123456789'
const BOB = 'bob-key-9876543210'

interface Seen { server: number, builtFor: string | null, caller: string | null, text: string }

/** Servers numbered as the factory makes them; each tool answers with what it sees. */
function numberedServers (): { factory: McpSseOptions['server'], made: () => number, closed: () => number } {
  let made = 0
  let closed = 0
  // `hold` calls in progress, across every server: a call waits until `count` are, so that
  // that many are served at the same time whatever the machine's speed.
  let holding = 0
  return {
    factory: ({ auth }) => {
      const n = ++made
      const builtFor = auth?.principal ?? null
      const server = new McpServer({ name: 'numbered', version: '1.0.0' })
      const seen = (extra: { authInfo?: { extra?: Record<string, unknown> } }, text: string): { content: Array<{ type: 'text', text: string }> } => {
        const caller = (extra.authInfo?.extra?.principal as string | undefined) ?? null
        return { content: [{ type: 'text', text: JSON.stringify({ server: n, builtFor, caller, text } satisfies Seen) }] }
      }
      server.registerTool('whoami', { inputSchema: { text: z.string(), waitMs: z.number().optional() } }, async ({ text, waitMs }, extra) => {
        if (waitMs !== undefined) await new Promise(resolve => setTimeout(resolve, waitMs))
        return seen(extra, text)
      })
      server.registerTool('hold', { inputSchema: { text: z.string(), count: z.number() } }, async ({ text, count }, extra) => {
        holding++
        const deadline = Date.now() + 5000
        while (holding < count && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 5))
        return seen(extra, text)
      })
      server.registerTool('slow', { inputSchema: { text: z.string() } }, async ({ text }, extra) => {
        const token = extra._meta?.progressToken
        if (token !== undefined) await extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress: 0 } })
        await new Promise(resolve => setTimeout(resolve, 300))
        return seen(extra, text)
      })
      server.server.onclose = () => { closed++ }
      return server
    },
    made: () => made,
    closed: () => closed
  }
}

const call = (id: number, name: string, args: Record<string, unknown>, meta?: Record<string, unknown>): unknown =>
  ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args, ...(meta === undefined ? {} : { _meta: meta }) } })

async function whoami (base: string, id: number, text: string, opts: { key?: string, waitMs?: number, hold?: number } = {}): Promise<Seen> {
  const args = opts.hold !== undefined ? { text, count: opts.hold } : { text, ...(opts.waitMs === undefined ? {} : { waitMs: opts.waitMs }) }
  const res = await fetch(`${base}/mcp`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: ACCEPT, 'mcp-protocol-version': '2025-11-25', ...(opts.key === undefined ? {} : { 'x-api-key': opts.key }) },
    body: JSON.stringify(call(id, opts.hold !== undefined ? 'hold' : 'whoami', args))
  })
  const body = await res.json() as { id: number, result: { content: Array<{ text: string }> } }
  if (res.status !== 200 || body.id !== id) throw new Error(`unexpected answer ${res.status} ${JSON.stringify(body)}`)
  return JSON.parse(body.result.content[0]!.text) as Seen
}

t.test('one server serves a principal\'s POSTs one after another: the factory runs once, and the server is closed with the app', async t => {
  const servers = numberedServers()
  const app = Fastify({ forceCloseConnections: true })
  await app.register(mcpSse, { stateless: { reuseServers: 2 }, server: servers.factory })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  for (let i = 1; i <= 30; i++) {
    const seen = await whoami(base, i, `call ${i}`)
    t.equal(seen.text, `call ${i}`)
    t.equal(seen.server, 1, `POST ${i} served by the kept server`)
  }
  t.equal(servers.made(), 1, 'the factory ran once')
  t.equal(servers.closed(), 0, 'the kept server stays open between POSTs')
  t.equal(app.mcpSessions.size, 0, 'no session is held')
  await app.close()
  t.equal(servers.closed(), 1, 'app.close() closed the kept server')
})

t.test('concurrent POSTs each get a server of their own; at most reuseServers stay idle, the rest are closed', async t => {
  const servers = numberedServers()
  const { base } = await startApp(t, { stateless: { reuseServers: 3 }, server: servers.factory })
  // Each call of the burst waits until all ten are being served.
  const burst = await Promise.all(Array.from({ length: 10 }, (_, i) => whoami(base, i + 1, `b${i}`, { hold: 10 })))
  t.same(burst.map(s => s.text), Array.from({ length: 10 }, (_, i) => `b${i}`), 'each POST got its own answer')
  t.equal(new Set(burst.map(s => s.server)).size, 10, 'no server served two of them at once')
  t.equal(servers.made(), 10)
  await until(() => servers.closed() === 7, 2000, 'the 7 servers that do not fit to close')
  const later = []
  for (let i = 0; i < 6; i++) later.push(await whoami(base, 100 + i, `l${i}`))
  t.equal(servers.made(), 10, 'later POSTs are served by kept servers')
  t.ok(later.every(s => burst.some(b => b.server === s.server)), 'by servers of the burst')
})

t.test('two principals\' concurrent POSTs never share a server, and each sees only its own auth', async t => {
  const servers = numberedServers()
  const { base } = await startApp(t, {
    stateless: { reuseServers: 4 },
    server: servers.factory,
    auth: { provider: new ApiKeyAuthProvider({ keys: [{ key: ALICE, principal: 'alice' }, { key: BOB, principal: 'bob' }] }) }
  })
  const byPrincipal = new Map<string, Set<number>>([['alice', new Set()], ['bob', new Set()]])
  let id = 0
  for (let round = 0; round < 4; round++) {
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => {
      const who = i % 2 === 0 ? 'alice' : 'bob'
      return whoami(base, ++id, `${who} ${round}.${i}`, { key: who === 'alice' ? ALICE : BOB, waitMs: 5 * (i % 3) }).then(seen => ({ who, seen }))
    }))
    for (const { who, seen } of answers) {
      t.equal(seen.caller, who, `${seen.text}: the tool saw its caller's auth`)
      t.equal(seen.builtFor, who, `${seen.text}: served by a server built for its caller`)
      t.ok(seen.text.startsWith(who), `${seen.text}: its own answer`)
      byPrincipal.get(who)!.add(seen.server)
    }
  }
  const alice = byPrincipal.get('alice')!
  const bob = byPrincipal.get('bob')!
  t.same([...alice].filter(n => bob.has(n)), [], 'no server served both principals')
  t.ok(servers.made() < 48, `servers were reused (${servers.made()} built for 48 POSTs)`)
})

t.test('a POST whose client leaves before its answer does not give its server back: it is closed, and the next POST with the same id gets its own answer', async t => {
  const servers = numberedServers()
  const { base } = await startApp(t, { stateless: { reuseServers: 2 }, server: servers.factory })
  // A call with progress answers as an event stream: leave after its first event.
  await new Promise<void>((resolve, reject) => {
    const req = http.request(`${base}/mcp`, { method: 'POST', headers: { 'content-type': 'application/json', accept: ACCEPT } }, res => {
      res.once('data', () => { req.destroy(); resolve() })
    })
    req.on('error', err => { if (!req.destroyed) reject(err) })
    req.end(JSON.stringify(call(7, 'slow', { text: 'left' }, { progressToken: 1 })))
  })
  await until(() => servers.closed() === 1, 2000, 'the left server to close')
  const seen = await whoami(base, 7, 'after')
  t.equal(seen.text, 'after', 'the answer is the new request\'s')
  t.equal(seen.server, 2, 'from a new server')
  t.equal(servers.made(), 2)
})

t.test('the SDK client works against kept servers', async t => {
  const servers = numberedServers()
  const { base } = await startApp(t, { stateless: { reuseServers: 1 }, server: servers.factory })
  const client = new Client({ name: 'reuse-client', version: '1.0.0' })
  await client.connect(new StreamableHTTPClientTransport(new URL(`${base}/mcp`)))
  t.teardown(() => client.close())
  t.same((await client.listTools()).tools.map(x => x.name).sort(), ['hold', 'slow', 'whoami'])
  for (let i = 0; i < 5; i++) {
    const result = await client.callTool({ name: 'whoami', arguments: { text: `sdk ${i}` } }) as { content: Array<{ text: string }> }
    t.equal((JSON.parse(result.content[0]!.text) as Seen).text, `sdk ${i}`)
  }
  t.equal(servers.made(), 1, 'initialize, initialized, tools/list and the calls: one server')
})

t.test('stateless takes true, false or { reuseServers } (an integer of at least 0)', async t => {
  for (const stateless of [{ reuseServers: -1 }, { reuseServers: 1.5 }, 'yes', null]) {
    const app = Fastify()
    await t.rejects(async () => { await app.register(mcpSse, { server: () => new McpServer({ name: 'x', version: '1' }), stateless: stateless as never }) },
      { code: 'FST_ERR_MCP_SSE_INVALID_OPTION' }, `stateless: ${JSON.stringify(stateless)} is refused`)
    await app.close()
  }
  const servers = numberedServers()
  const { base } = await startApp(t, { stateless: { }, server: servers.factory })
  await whoami(base, 1, 'a')
  await whoami(base, 2, 'b')
  t.equal(servers.made(), 2, '{ } keeps none: a server per POST, as with true')
  await until(() => servers.closed() === 2, 1000, 'both closed')
})
