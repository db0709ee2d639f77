// Both SDK lines on both ends of HTTP+SSE: servers of @modelcontextprotocol/sdk 1.x and of
// @modelcontextprotocol/server 2.x (which ships no SSE server transport of its own), each
// driven by the 1.x Client and by the 2.x Client with their own SSEClientTransport.
import t from 'tap'
import { z } from 'zod'
import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js'
import { SSEClientTransport as SseClientV1 } from '@modelcontextprotocol/sdk/client/sse.js'
import { McpServer as McpServerV1 } from '@modelcontextprotocol/sdk/server/mcp.js'
import { Client as ClientV2, SSEClientTransport as SseClientV2 } from '@modelcontextprotocol/client'
import { McpServer as McpServerV2 } from '@modelcontextprotocol/server'
import { ApiKeyAuthProvider, type McpServerLike } from '../src/index.js'
import { buildExampleServer } from '../example/mcp-server.js'
import { buildExampleServerV2 } from '../example/mcp-server-v2.js'
import { REDIS_URL, startInstance, startProxy, testPrefix } from './support/cluster.js'
import { startApp, until } from './support/helpers.js'

/** What a tool saw of the request that carried its call. */
interface Seen { header: string | null, principal: unknown, token: string | null }

/** A server of either line with the example tools plus `whoami` and `hang`. */
interface ServerLine {
  name: 'v1' | 'v2'
  build: (hooks: { aborted: () => void, started: () => void }) => McpServerLike
}

const SERVERS: ServerLine[] = [
  {
    name: 'v1',
    build: hooks => {
      const server = buildExampleServer()
      server.registerTool('whoami', { inputSchema: {} }, async (_args, extra) => {
        const seen: Seen = {
          header: String(extra.requestInfo?.headers['x-test'] ?? null),
          principal: extra.authInfo?.extra?.principal ?? null,
          token: extra.authInfo?.token ?? null
        }
        return { content: [{ type: 'text', text: JSON.stringify(seen) }] }
      })
      server.registerTool('hang', { inputSchema: {} }, async (_args, extra) => {
        hooks.started()
        await new Promise<void>(resolve => extra.signal.addEventListener('abort', () => { hooks.aborted(); resolve() }))
        return { content: [] }
      })
      return server
    }
  },
  {
    name: 'v2',
    build: hooks => {
      const server = buildExampleServerV2()
      server.registerTool('whoami', { inputSchema: z.object({}) }, async (_args, ctx) => {
        const seen: Seen = {
          header: ctx.http?.req?.headers.get('x-test') ?? null,
          principal: ctx.http?.authInfo?.extra?.principal ?? null,
          token: ctx.http?.authInfo?.token ?? null
        }
        return { content: [{ type: 'text', text: JSON.stringify(seen) }] }
      })
      server.registerTool('hang', { inputSchema: z.object({}) }, async (_args, ctx) => {
        hooks.started()
        await new Promise<void>(resolve => ctx.mcpReq.signal.addEventListener('abort', () => { hooks.aborted(); resolve() }))
        return { content: [] }
      })
      return server
    }
  }
]

interface ToolResult { content: Array<{ type: string, text?: string }> }
type Progress = { progress: number, total?: number }

/** The calls these tests make, on a client of either line. */
interface AnyClient {
  listTools: () => Promise<{ tools: Array<{ name: string }> }>
  callTool: (params: { name: string, arguments?: Record<string, unknown> }, options?: { onprogress?: (p: Progress) => void, signal?: AbortSignal, timeout?: number }) => Promise<ToolResult>
  close: () => Promise<void>
}

interface ClientLine {
  name: 'v1' | 'v2'
  connect: (url: string, headers: Record<string, string>) => Promise<AnyClient>
}

const CLIENTS: ClientLine[] = [
  {
    name: 'v1',
    connect: async (url, headers) => {
      const client = new ClientV1({ name: 'client-v1', version: '1.0.0' })
      await client.connect(new SseClientV1(new URL(url), { requestInit: { headers } }))
      return {
        listTools: () => client.listTools(),
        callTool: async (params, options) => await client.callTool(params, undefined, options) as ToolResult,
        close: () => client.close()
      }
    }
  },
  {
    name: 'v2',
    connect: async (url, headers) => {
      const client = new ClientV2({ name: 'client-v2', version: '1.0.0' })
      await client.connect(new SseClientV2(new URL(url), { requestInit: { headers } }))
      return {
        listTools: () => client.listTools(),
        callTool: async (params, options) => await client.callTool(params, options) as ToolResult,
        close: () => client.close()
      }
    }
  }
]

const text = (r: ToolResult): string => r.content[0]?.text ?? ''
const API_KEY = 'k-sdk-lines-0123456789'

for (const serverLine of SERVERS) {
  for (const clientLine of CLIENTS) {
    t.test(`a ${serverLine.name} server with a ${clientLine.name} client`, async t => {
      let aborted = 0
      let started: () => void = () => {}
      const hooks = { aborted: () => { aborted++ }, started: () => { started() } }
      const { base, app } = await startApp(t, {
        server: () => serverLine.build(hooks),
        auth: { provider: new ApiKeyAuthProvider({ keys: [{ key: API_KEY, principal: 'alice' }] }) }
      })
      const connect = async (): Promise<AnyClient> => {
        const client = await clientLine.connect(`${base}/sse`, { 'x-api-key': API_KEY, 'x-test': `${clientLine.name}-header` })
        t.teardown(() => client.close())
        return client
      }

      t.test('lists the tools and calls them', async t => {
        const client = await connect()
        const { tools } = await client.listTools()
        t.same(tools.map(x => x.name).sort(), ['countdown', 'echo', 'hang', 'whoami'])
        t.equal(text(await client.callTool({ name: 'echo', arguments: { text: 'héllo' } })), 'héllo')
      })

      t.test('progress arrives before the result, in order', async t => {
        const client = await connect()
        const seen: number[] = []
        const result = await client.callTool({ name: 'countdown', arguments: { from: 5, intervalMs: 5 } }, { onprogress: p => { seen.push(p.progress) } })
        t.equal(text(result), 'Counted down from 5')
        t.same(seen, [0, 1, 2, 3, 4])
      })

      t.test('the tool sees the request headers and who is calling', async t => {
        const client = await connect()
        const seen = JSON.parse(text(await client.callTool({ name: 'whoami', arguments: {} }))) as Seen
        t.same(seen, { header: `${clientLine.name}-header`, principal: 'alice', token: API_KEY })
      })

      t.test('ten concurrent clients each get their own answers', async t => {
        const clients = await Promise.all(Array.from({ length: 10 }, () => connect()))
        const answers = await Promise.all(clients.flatMap((c, i) => Array.from({ length: 5 }, (_, j) =>
          c.callTool({ name: 'echo', arguments: { text: `c${i}-m${j}` } }).then(r => [`c${i}-m${j}`, text(r)]))))
        for (const [sent, got] of answers) t.equal(got, sent)
      })

      t.test('a cancelled call is aborted on the server', async t => {
        const client = await connect()
        const running = new Promise<void>(resolve => { started = resolve })
        const abort = new AbortController()
        const call = client.callTool({ name: 'hang', arguments: {} }, { signal: abort.signal })
        await running
        const before = aborted
        abort.abort()
        await t.rejects(call)
        await until(() => aborted === before + 1, 5000, 'the server-side abort')
        t.equal(text(await client.callTool({ name: 'echo', arguments: { text: 'still here' } })), 'still here', 'the session goes on')
      })

      t.test('closing the client ends its session and closes its server', async t => {
        const client = await connect()
        const size = app.mcpSessions.size
        await client.close()
        await until(() => app.mcpSessions.size === size - 1, 5000, 'the session to end')
        t.pass('session removed')
      })
    })
  }
}

t.test('a v2 server and a v2 client across two instances behind a round-robin proxy', async t => {
  const keyPrefix = testPrefix()
  const options = { server: () => buildExampleServerV2(), redis: { url: REDIS_URL, keyPrefix } }
  const a = await startInstance(t, options)
  const b = await startInstance(t, options)
  const proxy = await startProxy(t, [a.base, b.base])
  const client = new ClientV2({ name: 'client-v2', version: '1.0.0' })
  await client.connect(new SseClientV2(new URL(`${proxy.base}/sse`)))
  t.teardown(() => client.close())
  const got: string[] = []
  for (let i = 0; i < 20; i++) got.push(text(await client.callTool({ name: 'echo', arguments: { text: `m${i}` } }) as ToolResult))
  t.same(got, Array.from({ length: 20 }, (_, i) => `m${i}`))
  const progress: number[] = []
  const done = await client.callTool({ name: 'countdown', arguments: { from: 4, intervalMs: 5 } }, { onprogress: p => { progress.push(p.progress) } }) as ToolResult
  t.equal(text(done), 'Counted down from 4')
  t.same(progress, [0, 1, 2, 3])
  const upstreams = new Set(proxy.log.filter(r => r.method === 'POST').map(r => r.upstream))
  t.same([...upstreams].sort(), [0, 1], 'POSTs landed on both instances')
  t.equal(a.app.mcpSessions.size + b.app.mcpSessions.size, 1)
})

// The public server type takes either line's McpServer without a cast.
t.test('servers of both lines satisfy the plugin\'s server type', async t => {
  const servers: McpServerLike[] = [new McpServerV1({ name: 'a', version: '1' }), new McpServerV2({ name: 'b', version: '1' })]
  for (const s of servers) {
    t.type(s.connect, 'function')
    t.type(s.close, 'function')
  }
})
