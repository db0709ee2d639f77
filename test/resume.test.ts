// Resumable Streamable HTTP streams: event ids that name their stream, a priming event
// with retry:, and a GET with Last-Event-ID that replays exactly what a stream missed.
import http from 'node:http'
import t from 'tap'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { Client as ClientV2, StreamableHTTPClientTransport as StreamableV2 } from '@modelcontextprotocol/client'
import { McpServer as McpServerV2 } from '@modelcontextprotocol/server'
import { z } from 'zod'
import { MemoryEventStore } from '../src/index.js'
import { startApp } from './support/helpers.js'

const HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }

interface Event { id: string | undefined, event: string | undefined, retry: string | undefined, data: string }

function parse (raw: string): Event {
  const field = (name: string): string | undefined => new RegExp(`^${name}: ?(.*)$`, 'm').exec(raw)?.[1]
  return { id: field('id'), event: field('event'), retry: field('retry'), data: field('data') ?? '' }
}

/** Reads an event-stream response, calling `each` per event; `stop` ends it from our side. */
function readStream (req: http.ClientRequest, each: (e: Event, stop: () => void) => void): Promise<{ status: number, events: Event[] }> {
  return new Promise((resolve, reject) => {
    const events: Event[] = []
    let status = 0
    const stop = (): void => { req.destroy(); resolve({ status, events }) }
    req.on('response', res => {
      status = res.statusCode ?? 0
      res.setEncoding('utf8')
      let buf = ''
      res.on('data', (c: string) => {
        buf += c
        const parts = buf.split('\n\n')
        buf = parts.pop() ?? ''
        for (const p of parts) {
          const e = parse(p)
          if (e.event === 'ping') continue
          events.push(e)
          each(e, stop)
        }
      })
      res.on('end', () => resolve({ status, events }))
      res.on('error', () => resolve({ status, events }))
    })
    req.on('error', err => { if (!req.destroyed) reject(err) })
  })
}

async function session (base: string): Promise<string> {
  const init = await fetch(`${base}/mcp`, { method: 'POST', headers: HEADERS, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'resume', version: '1' } } }) })
  const id = init.headers.get('mcp-session-id') ?? ''
  await init.text()
  await fetch(`${base}/mcp`, { method: 'POST', headers: { ...HEADERS, 'mcp-session-id': id }, body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) })
  return id
}

function countdown (base: string, sid: string, from: number, intervalMs: number): http.ClientRequest {
  const req = http.request(`${base}/mcp`, { method: 'POST', headers: { ...HEADERS, 'mcp-session-id': sid } })
  req.end(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'countdown', arguments: { from, intervalMs }, _meta: { progressToken: 'p' } } }))
  return req
}

function resume (base: string, sid: string, lastEventId: string): http.ClientRequest {
  return http.get(`${base}/mcp`, { headers: { accept: 'text/event-stream', 'mcp-session-id': sid, 'last-event-id': lastEventId } })
}

const progressOf = (e: Event): number | undefined => (JSON.parse(e.data) as { params?: { progress?: number } }).params?.progress

t.test('a POST stream starts with a priming event (an id naming the stream, retry:, no data), and every event has an id of that stream', async t => {
  const { base } = await startApp(t, { retryInterval: 2500 })
  const sid = await session(base)
  const { events } = await readStream(countdown(base, sid, 3, 5), () => {})
  const [priming, ...rest] = events
  t.match(priming, { id: `${sid}.1.0`, retry: '2500', data: '' })
  t.same(rest.map(e => e.id), [`${sid}.1.1`, `${sid}.1.2`, `${sid}.1.3`, `${sid}.1.4`])
  t.same(rest.map(e => progressOf(e)), [0, 1, 2, undefined])
  t.match(JSON.parse(rest[3]?.data ?? '{}'), { id: 2, result: { content: [{ text: 'Counted down from 3' }] } })
})

t.test('a client that drops a POST stream mid-call resumes it with Last-Event-ID: every missed message once, none twice, then the result', async t => {
  const { base, app } = await startApp(t)
  const sid = await session(base)
  const first = await readStream(countdown(base, sid, 6, 60), (e, stop) => { if (e.data !== '' && progressOf(e) === 1) stop() })
  const lastId = first.events.at(-1)?.id ?? ''
  t.equal(lastId, `${sid}.1.2`, 'the client saw the priming event and two progress events')
  await new Promise(resolve => setTimeout(resolve, 150)) // the call goes on meanwhile: leaving is not cancelling
  const second = await readStream(resume(base, sid, lastId), () => {})
  t.equal(second.status, 200)
  const seen = [...first.events, ...second.events].filter(e => e.data !== '')
  t.same(seen.map(e => progressOf(e)), [0, 1, 2, 3, 4, 5, undefined], 'every progress once, in order, then the result')
  t.same(new Set(seen.map(e => e.id)).size, seen.length, 'no event twice')
  t.match(JSON.parse(seen.at(-1)?.data ?? '{}'), { id: 2, result: { content: [{ text: 'Counted down from 6' }] } })
  t.equal(app.mcpSessions.size, 1, 'the session lives on')
})

t.test('the standalone GET stream, lost and resumed, replays what was sent while it was gone, once', async t => {
  const servers: McpServer[] = []
  const { base } = await startApp(t, { server: () => { const s = new McpServer({ name: 'resume', version: '1' }, { capabilities: { tools: { listChanged: true }, logging: {} } }); servers.push(s); return s } })
  const sid = await session(base)
  const server = servers[0] as McpServer
  const firstGet = http.get(`${base}/mcp`, { headers: { accept: 'text/event-stream', 'mcp-session-id': sid } })
  const first = await readStream(firstGet, (e, stop) => {
    if (e.data !== '') stop()
    else server.sendToolListChanged()
  })
  t.equal(first.events[0]?.id, `${sid}.0.0`, 'the standalone stream is stream 0 and starts primed')
  const lastId = first.events.at(-1)?.id ?? ''
  t.equal(lastId, `${sid}.0.1`)
  await new Promise(resolve => setTimeout(resolve, 50))
  await server.server.notification({ method: 'notifications/message', params: { level: 'info', data: 'while away 1' } })
  await server.server.notification({ method: 'notifications/message', params: { level: 'info', data: 'while away 2' } })
  const second = await readStream(resume(base, sid, lastId), (e, stop) => { if (e.data.includes('while away 2')) stop() })
  t.same(second.events.map(e => e.id), [`${sid}.0.2`, `${sid}.0.3`], 'the two missed messages, with their ids')
  t.match(second.events.map(e => JSON.parse(e.data) as unknown), [{ method: 'notifications/message' }, { params: { data: 'while away 2' } }])
})

t.test('a Last-Event-ID of another session opens a fresh stream, replaying nothing of the other', async t => {
  const { base } = await startApp(t)
  const a = await session(base)
  const b = await session(base)
  await readStream(countdown(base, a, 2, 5), () => {})
  const stream = await readStream(resume(base, b, `${a}.1.0`), (_e, stop) => { stop() })
  t.equal(stream.status, 200)
  t.same(stream.events.map(e => e.id), [`${b}.0.0`], 'only the priming event of b\'s own standalone stream')
})

t.test('eventStore: false keeps nothing: no priming event and no ids', async t => {
  const { base } = await startApp(t, { eventStore: false })
  const sid = await session(base)
  const { events } = await readStream(countdown(base, sid, 2, 5), () => {})
  t.same(events.map(e => e.id), [undefined, undefined, undefined])
  t.equal(events.length, 3, 'two progress events and the result')
})

t.test('the memory event store is bounded per session by count, bytes and age, and refuses a replay with a gap', async t => {
  const message = (n: number) => ({ jsonrpc: '2.0' as const, method: 'm', params: { n } })
  const byCount = new MemoryEventStore({ maxEvents: 3 })
  for (let i = 1; i <= 5; i++) byCount.append('s.1', { id: `s.1.${i}`, message: message(i) })
  t.same((await byCount.after('s.1.2'))?.events.map(e => e.id), ['s.1.3', 's.1.4', 's.1.5'])
  t.equal(await byCount.after('s.1.1'), undefined, 'event 2 is gone: no exact replay after 1')
  const byBytes = new MemoryEventStore({ maxBytes: 100 })
  for (let i = 1; i <= 5; i++) byBytes.append('s.1', { id: `s.1.${i}`, message: message(i) })
  t.ok(((await byBytes.after('s.1.4'))?.events.length ?? 0) === 1)
  const byAge = new MemoryEventStore({ ttl: 20 })
  byAge.append('s.1', { id: 's.1.1', message: message(1) })
  await new Promise(resolve => setTimeout(resolve, 40))
  byAge.append('s.1', { id: 's.1.2', message: message(2) })
  t.same((await byAge.after('s.1.1'))?.events.map(e => e.id), ['s.1.2'])
  t.equal(await byAge.after('s.1.0'), undefined, 'event 1 expired: no exact replay from the start')
  byAge.dropSession('s')
  t.same(await byAge.after('s.1.2'), { streamId: 's.1', events: [] })
  t.equal(await byAge.after('not-an-id'), undefined)
})

t.test('a tool that closes its POST stream (SEP-1699 polling) is finished on the client\'s reconnect, by the SDK clients of both lines', async t => {
  const requests: string[] = []
  const v1 = (): McpServer => {
    const server = new McpServer({ name: 'poll', version: '1' })
    server.registerTool('slow', { inputSchema: { steps: z.number() } }, async ({ steps }, extra) => {
      for (let i = 0; i < steps; i++) {
        await extra.sendNotification({ method: 'notifications/progress', params: { progressToken: extra._meta?.progressToken ?? 0, progress: i, total: steps } })
        if (i === 0) extra.closeSSEStream?.()
        await new Promise(resolve => setTimeout(resolve, 30))
      }
      return { content: [{ type: 'text', text: `done after ${steps}` }] }
    })
    return server
  }
  const v2 = (): McpServerV2 => {
    const server = new McpServerV2({ name: 'poll', version: '1' })
    server.registerTool('slow', { inputSchema: z.object({ steps: z.number() }) }, async ({ steps }, ctx) => {
      for (let i = 0; i < steps; i++) {
        await ctx.mcpReq.notify({ method: 'notifications/progress', params: { progressToken: ctx.mcpReq._meta?.progressToken ?? 0, progress: i, total: steps } })
        if (i === 0) ctx.http?.closeSSE?.()
        await new Promise(resolve => setTimeout(resolve, 30))
      }
      return { content: [{ type: 'text', text: `done after ${steps}` }] }
    })
    return server
  }
  for (const [line, factory] of [['v1', v1], ['v2', v2]] as const) {
    const { base } = await startApp(t, { server: factory, retryInterval: 20 }, {
      before: app => { app.addHook('onRequest', async request => { requests.push(`${line} ${request.method} ${request.headers['last-event-id'] === undefined ? '' : 'resume'}`.trim()) }) }
    })
    const progress: number[] = []
    let text: string | undefined
    if (line === 'v1') {
      const client = new Client({ name: 'poll', version: '1' })
      await client.connect(new StreamableHTTPClientTransport(new URL(`${base}/mcp`)))
      t.teardown(() => client.close())
      const r = await client.callTool({ name: 'slow', arguments: { steps: 4 } }, undefined, { onprogress: p => { progress.push(p.progress) } })
      text = (r.content as Array<{ text?: string }>)[0]?.text
    } else {
      const client = new ClientV2({ name: 'poll', version: '1' })
      await client.connect(new StreamableV2(new URL(`${base}/mcp`)))
      t.teardown(() => client.close())
      const r = await client.callTool({ name: 'slow', arguments: { steps: 4 } }, { onprogress: p => { progress.push(p.progress) } })
      text = (r.content as Array<{ text?: string }>)[0]?.text
    }
    t.equal(text, 'done after 4', `${line}: the result arrived`)
    t.same(progress, [0, 1, 2, 3], `${line}: every progress once, in order`)
    t.ok(requests.includes(`${line} GET resume`), `${line}: the client came back with Last-Event-ID`)
  }
})
