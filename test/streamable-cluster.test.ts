// Streamable HTTP across instances over a real Redis: requests for a session held by
// another instance are relayed to it, and its answers (JSON, or streams with progress)
// come back on the receiving instance's response. Round-robin proxies, no stickiness.
import { spawn } from 'node:child_process'
import http from 'node:http'
import t from 'tap'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { Client as ClientV2, StreamableHTTPClientTransport as StreamableV2 } from '@modelcontextprotocol/client'
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js'
import { Redis } from 'ioredis'
import { ApiKeyAuthProvider } from '../src/index.js'
import { buildExampleServer } from '../example/mcp-server.js'
import { PrivateRedis, REDIS_URL, startInstance, startProxy, testPrefix, type Instance } from './support/cluster.js'
import { tsNodeArgs, until } from './support/helpers.js'

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
    if (block.trim() === '') continue
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
async function open (t: Tap.Test, base: string, headers: Record<string, string> = {}): Promise<string> {
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

async function pair (t: Tap.Test, extra: Parameters<typeof startInstance>[1] extends infer O ? Partial<O> : never = {}): Promise<[Instance, Instance, string]> {
  const keyPrefix = testPrefix()
  const a = await startInstance(t, { ...extra, redis: { url: REDIS_URL, keyPrefix } })
  const b = await startInstance(t, { ...extra, redis: { url: REDIS_URL, keyPrefix } })
  return [a, b, keyPrefix]
}

t.test('SDK clients of both lines, every request through another instance than the last: tools, progress before results, 100 answers in order', async t => {
  const keyPrefix = testPrefix()
  const instances = await Promise.all([0, 1, 2].map(() => startInstance(t, { redis: { url: REDIS_URL, keyPrefix } })))
  const proxy = await startProxy(t, instances.map(i => i.base))
  for (const line of ['v1', 'v2'] as const) {
    const url = new URL(`${proxy.base}/mcp`)
    const client = line === 'v1' ? new Client({ name: 'c1', version: '1' }) : new ClientV2({ name: 'c2', version: '1' })
    await client.connect(line === 'v1' ? new StreamableHTTPClientTransport(url) : new StreamableV2(url))
    t.teardown(() => client.close())
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
