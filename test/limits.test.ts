import { Writable } from 'node:stream'
import t from 'tap'
import Fastify from 'fastify'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { z } from 'zod'
import mcpSse from '../src/index.js'
import { connectClient, exampleServer, initialize, post, RawStream, startApp, until } from './support/helpers.js'

/** A logger destination that keeps every line, to check what the plugin logged. */
function logCapture (): { stream: Writable, lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = []
  const stream = new Writable({
    write (chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) if (line !== '') lines.push(JSON.parse(line))
      cb()
    }
  })
  return { stream, lines }
}

const CHUNK = 'x'.repeat(64 * 1024)

/** An echo tool plus two that push 64 KiB log notifications: fire-and-forget, or awaited. */
function floodServer (state: { sent: number }): McpServer {
  const server = new McpServer({ name: 'flood', version: '1.0.0' }, { capabilities: { logging: {} } })
  server.registerTool('echo', { inputSchema: { text: z.string() } }, async ({ text }) => ({ content: [{ type: 'text', text }] }))
  server.registerTool('flood', { inputSchema: { count: z.number() } }, async ({ count }, extra) => {
    // Does not wait for the client: the backlog is the transport's to bound.
    const sends = Array.from({ length: count }, () => extra.sendNotification({ method: 'notifications/message', params: { level: 'info', data: CHUNK } }))
    await Promise.allSettled(sends)
    return { content: [{ type: 'text', text: 'flooded' }] }
  })
  server.registerTool('stream', { inputSchema: { count: z.number() } }, async ({ count }, extra) => {
    for (let i = 0; i < count; i++) {
      await extra.sendNotification({ method: 'notifications/message', params: { level: 'info', data: CHUNK } })
      state.sent++
    }
    return { content: [{ type: 'text', text: 'streamed' }] }
  })
  return server
}

async function openSession (base: string): Promise<{ stream: RawStream, url: string }> {
  const stream = await RawStream.open(`${base}/sse`)
  const url = await stream.endpoint(base)
  await post(url, initialize(0))
  await stream.next('message')
  await post(url, { jsonrpc: '2.0', method: 'notifications/initialized' })
  return { stream, url }
}

t.test('a client that stops reading is cut off at maxBufferedBytes, with a logged reason, and others are unaffected', async t => {
  const logs = logCapture()
  const state = { sent: 0 }
  const { base, app } = await startApp(t, { server: () => floodServer(state), maxBufferedBytes: '256kb' }, {
    fastify: { forceCloseConnections: true, logger: { level: 'info', stream: logs.stream } }
  })
  const other = await connectClient(t, `${base}/sse`)
  const { stream, url } = await openSession(base)
  t.teardown(() => stream.close())
  stream.res.pause()
  const flooded = post(url, { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'flood', arguments: { count: 400 } } })
  t.equal((await flooded).status, 202)

  // The other session keeps working while the flood is on.
  const echo = await other.callTool({ name: 'echo', arguments: { text: 'still here' } })
  t.same(echo.content, [{ type: 'text', text: 'still here' }])

  await until(() => app.mcpSessions.size === 1, 10_000, 'the stuck session to be closed')
  const line = logs.lines.find(l => typeof l.msg === 'string' && l.msg.includes('stopped reading'))
  t.ok(line, 'the reason is logged')
  t.equal(line?.maxBufferedBytes, 256 * 1024)
  t.equal(line?.level, 40, 'as a warning')

  const after = await other.callTool({ name: 'echo', arguments: { text: 'after' } })
  t.same(after.content, [{ type: 'text', text: 'after' }])
  t.ok(app.mcpSessions.has(String(new URL(url).searchParams.get('sessionId'))) === false)
})

t.test('a tool that awaits its sends is held back by a slow reader, and finishes when it reads again', async t => {
  const state = { sent: 0 }
  const { base, app } = await startApp(t, { server: () => floodServer(state), maxBufferedBytes: '256kb' })
  const { stream, url } = await openSession(base)
  t.teardown(() => stream.close())
  stream.res.pause()
  await post(url, { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'stream', arguments: { count: 400 } } })

  // Wait until sending stalls: the kernel's buffers are full and the tool waits for 'drain'.
  let last = -1
  await until(() => {
    const stalled = state.sent === last && state.sent > 0
    last = state.sent
    return stalled
  }, 10_000, 'the tool to stall')
  await new Promise(resolve => setTimeout(resolve, 200))
  const session = [...app.mcpSessions][0]
  t.ok(session, 'the session is still open: backpressure, not a cut-off')
  t.ok(state.sent < 400, `the tool is paused (${state.sent} of 400 sent)`)
  t.ok((session?.transport.bufferedBytes ?? Infinity) <= 256 * 1024 + 2 * CHUNK.length, 'the backlog stays within the bound')

  stream.res.resume()
  for (;;) {
    const ev = await stream.next('message', 10_000)
    const msg = JSON.parse(ev.data)
    if (msg.id === 1) {
      t.equal(msg.result.content[0].text, 'streamed')
      break
    }
  }
  t.equal(state.sent, 400)
  t.equal(app.mcpSessions.size, 1)
})

t.test('app.close() ends every open stream promptly and closes every server, without forcing connections', async t => {
  let serversClosed = 0
  const app = Fastify() // default forceCloseConnections: streams must end by themselves
  await app.register(mcpSse, {
    keepAliveInterval: 50,
    server: () => {
      const server = exampleServer()
      server.server.onclose = () => { serversClosed++ }
      return server
    }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  const streams = await Promise.all(Array.from({ length: 5 }, () => RawStream.open(`${base}/sse`)))
  await Promise.all(streams.map(s => s.endpoint(base)))
  t.equal(app.mcpSessions.size, 5)

  const started = Date.now()
  await app.close()
  t.ok(Date.now() - started < 2000, `closed in ${Date.now() - started} ms`)
  await Promise.all(streams.map(s => s.waitEnd()))
  t.ok(streams.every(s => s.res.complete), 'each stream ended cleanly (not reset)')
  t.equal(app.mcpSessions.size, 0)
  t.equal(serversClosed, 5)
})

t.test('keep-alive timers are unref\'d, one per stream, and cleared when sessions end', async t => {
  // Watch the intervals the plugin creates (it calls the global setInterval).
  const created: NodeJS.Timeout[] = []
  const original = globalThis.setInterval
  globalThis.setInterval = ((...args: Parameters<typeof setInterval>) => {
    const timer = original(...args)
    created.push(timer)
    return timer
  }) as typeof setInterval
  t.teardown(() => { globalThis.setInterval = original })
  const { base, app } = await startApp(t, { keepAliveInterval: 60_000 })
  const streams = await Promise.all(Array.from({ length: 10 }, () => RawStream.open(`${base}/sse`)))
  await Promise.all(streams.map(s => s.endpoint(base)))
  const ours = created.filter(x => (x as unknown as { _idleTimeout: number })._idleTimeout === 60_000)
  t.equal(ours.length, 10, 'one timer per stream')
  t.ok(ours.every(x => !x.hasRef()), 'none keeps the process alive')
  for (const s of streams) s.close()
  await until(() => app.mcpSessions.size === 0, 5000, 'sessions to end')
  t.ok(ours.every(x => (x as unknown as { _destroyed: boolean })._destroyed), 'all cleared')
})

t.test('the session cap answers 503 until a session ends, then admits again', async t => {
  const { base, app } = await startApp(t, { maxSessions: 2 })
  const a = await RawStream.open(`${base}/sse`)
  const b = await RawStream.open(`${base}/sse`)
  await a.endpoint(base)
  await b.endpoint(base)
  const refused = await fetch(`${base}/sse`)
  t.equal(refused.status, 503)
  t.equal(((await refused.json()) as { error: { data: { type: string } } }).error.data.type, 'too_many_sessions')
  a.close()
  await until(() => app.mcpSessions.size === 1, 5000, 'a to end')
  const c = await RawStream.open(`${base}/sse`)
  t.equal(c.res.statusCode, 200)
  await c.endpoint(base)
  t.equal(app.mcpSessions.size, 2)
  b.close()
  c.close()
})

t.test('app.mcpSessions lists, finds and closes sessions', async t => {
  const { base, app } = await startApp(t)
  const s1 = await RawStream.open(`${base}/sse`)
  const s2 = await RawStream.open(`${base}/sse`)
  t.teardown(() => { s1.close(); s2.close() })
  const id1 = new URL(await s1.endpoint(base)).searchParams.get('sessionId') ?? ''
  const id2 = new URL(await s2.endpoint(base)).searchParams.get('sessionId') ?? ''
  t.same([...app.mcpSessions.ids()].sort(), [id1, id2].sort())
  t.same([...app.mcpSessions].map(s => s.id).sort(), [id1, id2].sort())
  const session = app.mcpSessions.get(id1)
  t.equal(session?.id, id1)
  t.equal(session?.remoteAddress, '127.0.0.1')
  t.ok(typeof session?.createdAt === 'number' && session.createdAt <= Date.now())
  t.ok(app.mcpSessions.has(id2))
  t.equal(app.mcpSessions.get('nope'), undefined)

  t.equal(await app.mcpSessions.close(id1), true)
  await s1.waitEnd()
  t.equal(app.mcpSessions.has(id1), false)
  t.equal(await app.mcpSessions.close(id1), false)
  const res = await post(`${base}/messages?sessionId=${id1}`, { jsonrpc: '2.0', id: 1, method: 'ping' })
  t.equal(res.status, 404)
  t.equal(app.mcpSessions.size, 1)
})

t.test('a server whose close() rejects is logged, and the session still goes away', async t => {
  const logs = logCapture()
  const { base, app } = await startApp(t, {
    server: () => {
      const server = exampleServer()
      const close = server.close.bind(server)
      server.close = async () => { await close(); throw new Error('close failed') }
      return server
    }
  }, { fastify: { forceCloseConnections: true, logger: { level: 'info', stream: logs.stream } } })
  const s = await RawStream.open(`${base}/sse`)
  await s.endpoint(base)
  s.close()
  await until(() => app.mcpSessions.size === 0, 5000, 'the session to end')
  await until(() => logs.lines.some(l => l.msg === 'fastify-mcp-sse: the MCP server failed to close'), 5000, 'the log line')
  t.pass('logged')
})

t.test('a client that leaves while the server factory runs leaves nothing behind', async t => {
  let release!: () => void
  const gate = new Promise<void>(resolve => { release = resolve })
  let closed = 0
  const { base, app } = await startApp(t, {
    server: async () => {
      await gate
      const server = new McpServer({ name: 'slow-factory', version: '1.0.0' })
      server.server.onclose = () => { closed++ }
      const close = server.close.bind(server)
      server.close = async () => { closed++; await close() }
      return server
    }
  })
  const controller = new AbortController()
  const pending = fetch(`${base}/sse`, { signal: controller.signal }).catch(() => undefined)
  await new Promise(resolve => setTimeout(resolve, 100))
  controller.abort()
  await pending
  await new Promise(resolve => setTimeout(resolve, 50))
  release()
  await until(() => closed > 0, 5000, 'the unused server to be closed')
  t.equal(app.mcpSessions.size, 0)
})
