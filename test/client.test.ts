import t from 'tap'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js'
import { z } from 'zod'
import { connectClient, initialize, post, RawStream, startApp, until } from './support/helpers.js'

function text (result: unknown): string {
  const content = (result as CallToolResult).content
  const first = content[0]
  return first !== undefined && first.type === 'text' ? first.text : ''
}

t.test('the SDK client initializes, lists tools and calls them', async t => {
  const { base, app } = await startApp(t)
  const client = await connectClient(t, `${base}/sse`)
  t.equal(client.getServerVersion()?.name, 'fastify-mcp-sse-example')
  const { tools } = await client.listTools()
  t.same(tools.map(x => x.name).sort(), ['countdown', 'echo'])
  t.equal(text(await client.callTool({ name: 'echo', arguments: { text: 'hello' } })), 'hello')
  t.equal(app.mcpSessions.size, 1)
})

t.test('progress notifications of a long tool call reach the client before its result', async t => {
  const { base } = await startApp(t)
  const client = await connectClient(t, `${base}/sse`)
  const progress: number[] = []
  const result = await client.callTool(
    { name: 'countdown', arguments: { from: 3, intervalMs: 10 } },
    undefined,
    { onprogress: p => { progress.push(p.progress) } }
  )
  t.same(progress, [0, 1, 2])
  t.equal(text(result), 'Counted down from 3')
})

t.test('many concurrent clients get their own answers, with no cross-talk', async t => {
  const { base, app } = await startApp(t)
  const clients = await Promise.all(Array.from({ length: 20 }, () => connectClient(t, `${base}/sse`)))
  t.equal(app.mcpSessions.size, 20)
  // Every client uses the same JSON-RPC ids (each SDK client counts from 0), so a reply
  // routed to the wrong stream would resolve the wrong promise with the wrong text.
  const results = await Promise.all(clients.flatMap((c, i) =>
    Array.from({ length: 10 }, (_, j) => c.callTool({ name: 'echo', arguments: { text: `c${i}-m${j}` } })
      .then(r => [text(r), `c${i}-m${j}`]))))
  t.equal(results.length, 200)
  t.ok(results.every(([got, want]) => got === want), 'every reply matched its own request')
})

t.test('two raw sessions using the same request id each get only their own reply', async t => {
  const { base } = await startApp(t)
  const a = await RawStream.open(`${base}/sse`)
  const b = await RawStream.open(`${base}/sse`)
  t.teardown(() => { a.close(); b.close() })
  const urlA = await a.endpoint(base)
  const urlB = await b.endpoint(base)
  t.not(urlA, urlB)
  t.equal((await post(urlA, initialize(7))).status, 202)
  t.equal((await post(urlB, initialize(7))).status, 202)
  const ra = JSON.parse((await a.next('message')).data)
  const rb = JSON.parse((await b.next('message')).data)
  t.equal(ra.id, 7)
  t.equal(rb.id, 7)
  t.equal((await post(urlA, { jsonrpc: '2.0', id: 8, method: 'ping' })).status, 202)
  t.same(JSON.parse((await a.next('message')).data), { jsonrpc: '2.0', id: 8, result: {} })
  await t.rejects(b.next('message', 200), /timed out/, 'b never sees a\'s reply')
})

t.test('a batch is delivered in order and every reply arrives on the stream', async t => {
  const { base } = await startApp(t)
  const s = await RawStream.open(`${base}/sse`)
  t.teardown(() => s.close())
  const url = await s.endpoint(base)
  const res = await post(url, [
    initialize(1),
    { jsonrpc: '2.0', method: 'notifications/initialized' },
    { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'echo', arguments: { text: 'one' } } },
    { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'echo', arguments: { text: 'two' } } }
  ])
  t.equal(res.status, 202)
  t.equal(res.text, '')
  const replies = [JSON.parse((await s.next('message')).data), JSON.parse((await s.next('message')).data), JSON.parse((await s.next('message')).data)]
  t.same(replies.map(r => r.id), [1, 2, 3])
  t.equal(replies[1].result.content[0].text, 'one')
  t.equal(replies[2].result.content[0].text, 'two')
})

t.test('tool handlers see the POST request headers as extra.requestInfo', async t => {
  let seen: string | undefined
  const { base } = await startApp(t, {
    server: () => {
      const server = new McpServer({ name: 'headers', version: '1.0.0' })
      server.registerTool('whoami', { inputSchema: { x: z.string().optional() } }, async (_args, extra) => {
        const h = extra.requestInfo?.headers['x-trace-id']
        seen = typeof h === 'string' ? h : undefined
        return { content: [{ type: 'text', text: seen ?? '' }] }
      })
      return server
    }
  })
  const client = await connectClient(t, `${base}/sse`, { requestInit: { headers: { 'x-trace-id': 'trace-42' } } })
  t.equal(text(await client.callTool({ name: 'whoami', arguments: {} })), 'trace-42')
  t.equal(seen, 'trace-42')
})

t.test('the server factory gets the session id and the opening request, once per session', async t => {
  const calls: Array<{ sessionId: string, ua: string | undefined }> = []
  const { base, app } = await startApp(t, {
    server: ({ sessionId, request }) => {
      calls.push({ sessionId, ua: request.headers['user-agent'] })
      return new McpServer({ name: 'factory', version: '1.0.0' })
    }
  })
  const s1 = await RawStream.open(`${base}/sse`, { 'user-agent': 'one' })
  const s2 = await RawStream.open(`${base}/sse`, { 'user-agent': 'two' })
  t.teardown(() => { s1.close(); s2.close() })
  const u1 = new URL(await s1.endpoint(base))
  const u2 = new URL(await s2.endpoint(base))
  t.same(calls.map(c => c.ua), ['one', 'two'])
  t.equal(u1.searchParams.get('sessionId'), calls[0]?.sessionId)
  t.equal(u2.searchParams.get('sessionId'), calls[1]?.sessionId)
  t.ok(app.mcpSessions.has(calls[0]?.sessionId ?? ''))
})

t.test('session ids are random UUIDs (122 random bits)', async t => {
  const { base } = await startApp(t)
  const ids = new Set<string>()
  for (let i = 0; i < 5; i++) {
    const s = await RawStream.open(`${base}/sse`)
    ids.add(new URL(await s.endpoint(base)).searchParams.get('sessionId') ?? '')
    s.close()
  }
  t.equal(ids.size, 5)
  for (const id of ids) t.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
})

t.test('a client that disconnects leaves no session behind and its server is closed', async t => {
  let closed = 0
  const { base, app } = await startApp(t, {
    server: () => {
      const server = new McpServer({ name: 'closing', version: '1.0.0' })
      server.server.onclose = () => { closed++ }
      return server
    }
  })
  const client = await connectClient(t, `${base}/sse`)
  const streams = await Promise.all(Array.from({ length: 5 }, () => RawStream.open(`${base}/sse`)))
  await Promise.all(streams.map(s => s.endpoint(base)))
  t.equal(app.mcpSessions.size, 6)
  for (const s of streams) s.close()
  await client.close()
  await until(() => app.mcpSessions.size === 0, 5000, 'sessions to be removed')
  await until(() => closed === 6, 5000, 'servers to close')
  t.equal(closed, 6)
})

t.test('in-flight tool calls of a session that goes away are cancelled', async t => {
  let aborted = false
  let started!: () => void
  const running = new Promise<void>(resolve => { started = resolve })
  const { base, app } = await startApp(t, {
    server: () => {
      const server = new McpServer({ name: 'abort', version: '1.0.0' })
      server.registerTool('hang', { inputSchema: { x: z.string().optional() } }, async (_args, extra) => {
        started()
        await new Promise<void>(resolve => extra.signal.addEventListener('abort', () => { aborted = true; resolve() }))
        return { content: [] }
      })
      return server
    }
  })
  const s = await RawStream.open(`${base}/sse`)
  const url = await s.endpoint(base)
  await post(url, initialize(1))
  await s.next('message')
  await post(url, { jsonrpc: '2.0', method: 'notifications/initialized' })
  await post(url, { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'hang', arguments: {} } })
  await running
  s.close()
  await until(() => aborted, 5000, 'the abort signal')
  t.ok(aborted)
  t.equal(app.mcpSessions.size, 0)
})
