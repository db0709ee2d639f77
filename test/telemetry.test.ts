// Operating it: Prometheus metrics scraped over HTTP and checked against what the test
// did, OpenTelemetry spans collected with the SDK's in-memory exporter, and the health
// view. The OpenTelemetry globals are set once for this file (its own process).
import http from 'node:http'
import t from 'tap'
import { context, propagation, trace } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js'
import { z } from 'zod'
import { ApiKeyAuthProvider } from '../src/index.js'
import { buildExampleServerV2 } from '../example/mcp-server-v2.js'
import { PrivateRedis, REDIS_URL, startInstance, testPrefix } from './support/cluster.js'
import { RawStream, startApp, until } from './support/helpers.js'

const exporter = new InMemorySpanExporter()
trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }))
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())
propagation.setGlobalPropagator(new W3CTraceContextPropagator())

/** A v1 server with echo, a tool that reports the span it runs in, and a tool that fails. */
function server (): McpServer {
  const s = new McpServer({ name: 'telemetry', version: '1' }, { capabilities: { logging: {} } })
  s.registerTool('echo', { inputSchema: { text: z.string() } }, async ({ text }) => ({ content: [{ type: 'text', text }] }))
  s.registerTool('span', {}, async () => ({ content: [{ type: 'text', text: trace.getActiveSpan()?.spanContext().spanId ?? 'none' }] }))
  s.registerTool('fail', {}, async () => ({ isError: true, content: [{ type: 'text', text: 'no' }] }))
  return s
}

/** Parses the Prometheus text format into `name{labels}` -> value. */
function parse (text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const i = line.lastIndexOf(' ')
    out.set(line.slice(0, i), Number(line.slice(i + 1)))
  }
  return out
}

/** The value of the one series of `name` whose labels include all of `labels` (0 if none). */
function value (metrics: Map<string, number>, name: string, labels: Record<string, string> = {}): number {
  let found = 0
  for (const [key, v] of metrics) {
    const brace = key.indexOf('{')
    if ((brace === -1 ? key : key.slice(0, brace)) !== name) continue
    if (Object.entries(labels).every(([k, want]) => key.includes(`${k}="${want}"`))) found += v
  }
  return found
}

async function scrape (base: string, path = '/metrics'): Promise<Map<string, number>> {
  const res = await fetch(`${base}${path}`)
  if (res.status !== 200) throw new Error(`scrape: ${res.status}`)
  return parse(await res.text())
}

t.test('metrics: scraped over HTTP, every value what the test did', async t => {
  const auth = { provider: new ApiKeyAuthProvider({ keys: [{ key: 'k', principal: 'p' }] }), endpoints: { sse: false, messages: false, mcp: true } }
  const { app, base } = await startApp(t, { server, metrics: { path: '/metrics' }, auth })
  t.ok(app.mcpMetrics, 'the registry is on the instance')
  const headers = { 'x-api-key': 'k' }
  const a = new Client({ name: 'a', version: '1' })
  await a.connect(new StreamableHTTPClientTransport(new URL(`${base}/mcp`), { requestInit: { headers } }))
  const b = new Client({ name: 'b', version: '1' })
  await b.connect(new StreamableHTTPClientTransport(new URL(`${base}/mcp`), { requestInit: { headers } }))
  const c = new Client({ name: 'c', version: '1' })
  await c.connect(new SSEClientTransport(new URL(`${base}/sse`)))
  t.teardown(() => c.close())
  for (let i = 0; i < 3; i++) await a.callTool({ name: 'echo', arguments: { text: 'x' } })
  await b.callTool({ name: 'echo', arguments: { text: 'y' } })
  await c.callTool({ name: 'echo', arguments: { text: 'z' } })
  await a.callTool({ name: 'fail', arguments: {} })
  await a.callTool({ name: 'no-such-tool', arguments: {} }).catch(() => {})
  t.equal((await fetch(`${base}/mcp`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: '{}' })).status, 401)
  await (a.transport as StreamableHTTPClientTransport).terminateSession()
  await a.close()
  await until(() => app.mcpSessions.size === 2, 5000, 'a to end')

  const m = await scrape(base)
  t.equal(value(m, 'mcp_sessions_opened_total', { mcp_transport: 'streamable' }), 2)
  t.equal(value(m, 'mcp_sessions_opened_total', { mcp_transport: 'sse' }), 1)
  t.equal(value(m, 'mcp_sessions_closed_total', { mcp_transport: 'streamable', reason: 'deleted_by_client' }), 1)
  t.equal(value(m, 'mcp_sessions_open', { mcp_transport: 'streamable' }), 1)
  t.equal(value(m, 'mcp_sessions_open', { mcp_transport: 'sse' }), 1)
  t.equal(value(m, 'mcp_streams_open', { mcp_transport: 'sse' }), 1)
  t.equal(value(m, 'mcp_server_operation_duration_seconds_count', { mcp_method_name: 'tools/call', gen_ai_tool_name: 'echo', error_type: '' }), 5, 'five echo calls, both transports')
  t.equal(value(m, 'mcp_server_operation_duration_seconds_count', { gen_ai_tool_name: 'fail', error_type: 'tool_error' }), 1, 'a tool result with isError')
  t.equal(value(m, 'mcp_server_operation_duration_seconds_count', { gen_ai_tool_name: 'no-such-tool' }), 1)
  t.equal(value(m, 'mcp_server_operation_duration_seconds_count', { mcp_method_name: 'initialize', mcp_protocol_version: '2025-11-25' }), 3, 'the protocol version as a label (three sessions)')
  t.equal(value(m, 'mcp_server_session_duration_seconds_count', { reason: 'deleted_by_client' }), 1)
  t.equal(value(m, 'mcp_http_errors_total', { type: 'authentication_error', status: '401' }), 1, 'the auth failure')
  t.equal(value(m, 'mcp_messages_received_total', { mcp_transport: 'streamable' }), 10, 'a: initialize, initialized, five calls; b: initialize, initialized, one call')
  t.ok(value(m, 'mcp_bytes_written_total', { mcp_transport: 'sse' }) > 0)
  t.equal(value(m, 'mcp_redis_up'), 0, 'no Redis, no series')
  t.notOk([...m.keys()].some(k => k.startsWith('mcp_redis_up')), 'no mcp_redis_up series at all without Redis (a 0 would fire Redis-down alerts)')
  t.equal(value(m, 'mcp_auth_failures_total', { reason: 'missing_credentials' }), 1, 'the auth failure, by reason')
  t.equal(value(m, 'mcp_messages_sent_total', { mcp_transport: 'streamable' }), 8, 'a: initialize and five call answers; b: initialize and one call answer')
  t.equal(value(m, 'mcp_messages_sent_total', { mcp_transport: 'sse' }), 2, 'c: initialize and one call answer')
  t.equal(value(m, 'mcp_messages_received_total', { mcp_transport: 'sse' }), 3, 'c: initialize, initialized, one call')
  t.equal(value(m, 'mcp_streams_open', { mcp_transport: 'streamable' }), 1, 'b\'s standalone GET stream (a\'s ended with it)')
  t.equal(value(m, 'mcp_streams_open', { mcp_transport: 'modern' }), 0, 'no listen stream')
  t.notOk([...m.keys()].some(k => k.startsWith('mcp_cluster_forwards_total')), 'without Redis nothing is forwarded')
  for (const key of m.keys()) t.notMatch(key, /[0-9a-f]{8}-[0-9a-f]{4}-/, `no session id in a label: ${key.slice(0, 60)}`)
  await b.close()
})

t.test('metrics: a client that stopped reading is counted as a backpressure close; unknown methods and tool names stay bounded', async t => {
  const servers: McpServer[] = []
  const { app, base } = await startApp(t, {
    maxBufferedBytes: 64 * 1024,
    server: () => { const s = server(); servers.push(s); return s }
  })
  const reg = app.mcpMetrics
  if (reg === null) throw new Error('no registry')
  const init = await fetch(`${base}/mcp`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } } }) })
  const sessionId = init.headers.get('mcp-session-id') as string
  await init.text()
  const req = http.get(`${base}/mcp`, { headers: { accept: 'text/event-stream', 'mcp-session-id': sessionId } })
  req.on('response', res => { res.pause() })
  req.on('error', () => {})
  t.teardown(() => req.destroy())
  await until(() => app.mcpSessions.get(sessionId)?.transport !== undefined && (app.mcpSessions.get(sessionId)?.transport as { hasStream?: boolean }).hasStream === true, 5000, 'the stream')
  const s = servers[0] as McpServer
  for (let i = 0; i < 400 && app.mcpSessions.has(sessionId); i++) {
    await Promise.race([
      s.server.notification({ method: 'notifications/message', params: { level: 'info', data: 'x'.repeat(16 * 1024) } }).catch(() => {}),
      new Promise(resolve => setTimeout(resolve, 5))
    ])
  }
  await until(() => !app.mcpSessions.has(sessionId), 5000, 'the session to be cut off')
  const m = parse(await reg.metrics())
  t.equal(value(m, 'mcp_sessions_closed_total', { reason: 'buffer_overflow' }), 1)

  // Methods and tool names clients make up do not become labels beyond a bound.
  const init2 = await fetch(`${base}/mcp`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } } }) })
  const id2 = init2.headers.get('mcp-session-id') as string
  await init2.text()
  const send = async (body: object): Promise<void> => {
    await (await fetch(`${base}/mcp`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-session-id': id2, 'mcp-protocol-version': '2025-11-25' }, body: JSON.stringify(body) })).text()
  }
  await send({ jsonrpc: '2.0', id: 1, method: 'made/up' })
  for (let i = 0; i < 120; i++) await send({ jsonrpc: '2.0', id: 10 + i, method: 'tools/call', params: { name: `random-${i}`, arguments: {} } })
  const after = parse(await reg.metrics())
  t.equal(value(after, 'mcp_server_operation_duration_seconds_count', { mcp_method_name: 'other' }), 1, 'an unknown method is "other"')
  const toolLabels = new Set([...after.keys()].filter(k => k.startsWith('mcp_server_operation_duration_seconds_count')).map(k => /gen_ai_tool_name="([^"]*)"/.exec(k)?.[1]))
  t.ok(toolLabels.size <= 102, `tool names are bounded (${toolLabels.size} label values)`)
  t.ok(toolLabels.has('other'))
})

const spans = (): ReadableSpan[] => exporter.getFinishedSpans()

t.test('traces: a SERVER span per message, named and attributed by the conventions, parented on _meta.traceparent or the request header, the tool running inside it', async t => {
  exporter.reset()
  const { base } = await startApp(t, { server })
  const client = new Client({ name: 'a', version: '1' })
  const transport = new StreamableHTTPClientTransport(new URL(`${base}/mcp`), { requestInit: { headers: { traceparent: '00-11111111111111111111111111111111-2222222222222222-01' } } })
  await client.connect(transport)
  t.teardown(() => client.close())
  const inner = await client.callTool({ name: 'span', arguments: {} })
  await client.callTool({ name: 'fail', arguments: {} })
  await client.callTool({ name: 'echo', arguments: { text: 'x' }, _meta: { traceparent: '00-33333333333333333333333333333333-4444444444444444-01' } })
  await until(() => spans().some(s => s.name === 'tools/call echo'), 5000, 'the echo span')

  const spanCall = spans().find(s => s.name === 'tools/call span')
  t.ok(spanCall, 'named "{method} {tool}"')
  t.equal(spanCall?.kind, 1, 'SERVER')
  t.match(spanCall?.attributes, {
    'mcp.method.name': 'tools/call',
    'gen_ai.tool.name': 'span',
    'gen_ai.operation.name': 'execute_tool',
    'mcp.session.id': String,
    'jsonrpc.request.id': String,
    'mcp.protocol.version': '2025-11-25',
    'network.transport': 'tcp'
  })
  t.equal(spanCall?.spanContext().traceId, '11111111111111111111111111111111', 'parented on the HTTP request\'s traceparent')
  t.equal(spanCall?.parentSpanContext?.spanId, '2222222222222222')
  const first = (inner as { content: Array<{ text: string }> }).content[0]
  t.equal(first?.text, spanCall?.spanContext().spanId, 'the tool ran inside the span (its context is the active one)')

  const failed = spans().find(s => s.name === 'tools/call fail')
  t.equal(failed?.status.code, 2, 'ERROR status')
  t.equal(failed?.attributes['error.type'], 'tool_error')
  const echo = spans().find(s => s.name === 'tools/call echo')
  t.equal(echo?.spanContext().traceId, '33333333333333333333333333333333', '_meta.traceparent wins over the header')
  t.equal(echo?.parentSpanContext?.spanId, '4444444444444444')
  t.ok(spans().some(s => s.name === 'notifications/initialized'), 'notifications get spans too')
  t.ok(spans().some(s => s.name === 'initialize'))
})

t.test('traces and metrics of 2026-07-28 requests; tracing and metrics off', async t => {
  exporter.reset()
  const { app, base } = await startApp(t, { server: () => buildExampleServerV2() })
  const res = await fetch(`${base}/mcp`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'echo' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: { text: 'm' }, _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': {}, traceparent: '00-55555555555555555555555555555555-6666666666666666-01' } } })
  })
  t.equal(res.status, 200)
  await res.text()
  await until(() => spans().some(s => s.name === 'tools/call echo'), 5000, 'the span')
  const span = spans().find(s => s.name === 'tools/call echo')
  t.equal(span?.spanContext().traceId, '55555555555555555555555555555555')
  t.equal(span?.attributes['mcp.protocol.version'], '2026-07-28')
  const m = parse(await (app.mcpMetrics as NonNullable<typeof app.mcpMetrics>).metrics())
  t.equal(value(m, 'mcp_server_operation_duration_seconds_count', { gen_ai_tool_name: 'echo', mcp_protocol_version: '2026-07-28' }), 1)
  t.equal(value(m, 'mcp_messages_received_total', { mcp_transport: 'modern' }), 1)

  exporter.reset()
  const off = await startApp(t, { server, tracing: false, metrics: false })
  t.equal(off.app.mcpMetrics, null)
  const client = new Client({ name: 'a', version: '1' })
  await client.connect(new StreamableHTTPClientTransport(new URL(`${off.base}/mcp`)))
  await client.callTool({ name: 'echo', arguments: { text: 'x' } })
  await client.close()
  t.same(spans(), [], 'no spans with tracing: false')
  t.equal((await fetch(`${off.base}/metrics`)).status, 404, 'no metrics route unless asked')
})

t.test('cluster forwards are counted and timed; health answers 503 while Redis is away', async t => {
  const redis = await PrivateRedis.start(t)
  const keyPrefix = testPrefix()
  const a = await startInstance(t, { server, redis: { url: redis.url, keyPrefix }, health: { path: '/health' } })
  const b = await startInstance(t, { server, redis: { url: redis.url, keyPrefix }, health: { path: '/health' }, metrics: { path: '/metrics' } })
  const init = await fetch(`${a.base}/mcp`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } } }) })
  const id = init.headers.get('mcp-session-id') as string
  await init.text()
  const ping = await fetch(`${b.base}/mcp`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-session-id': id, 'mcp-protocol-version': '2025-11-25' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }) })
  t.equal(ping.status, 200)
  const m = await scrape(b.base)
  t.equal(value(m, 'mcp_cluster_forwards_total', { kind: 'relay', outcome: 'delivered' }), 1)
  t.equal(value(m, 'mcp_cluster_forward_duration_seconds_count', { kind: 'relay' }), 1)
  t.equal(value(m, 'mcp_redis_up'), 1)
  const healthy = await fetch(`${b.base}/health`)
  t.equal(healthy.status, 200)
  t.match(await healthy.json(), { ready: true, redis: 'up', sessions: { sse: 0, streamable: 0 }, modern: { inFlight: 0, listening: 0 } })
  t.match(a.app.mcpHealth(), { ready: true, sessions: { streamable: 1 } })
  await redis.down()
  await until(() => b.app.mcpHealth().redis === 'down', 5000, 'B to notice')
  const down = await fetch(`${b.base}/health`)
  t.equal(down.status, 503, 'not ready while Redis is away')
  t.match(await down.json(), { ready: false, redis: 'down' })
  t.equal(value(await scrape(b.base), 'mcp_redis_up'), 0)
  void REDIS_URL
})

t.test('the metrics route takes the auth provider when asked; options are checked', async t => {
  const auth = { provider: new ApiKeyAuthProvider({ keys: [{ key: 'k', principal: 'p' }] }) }
  const { base } = await startApp(t, { server, auth, metrics: { path: '/metrics', auth: true } })
  t.equal((await fetch(`${base}/metrics`)).status, 401)
  t.equal((await fetch(`${base}/metrics`, { headers: { 'x-api-key': 'k' } })).status, 200)
  const open = await startApp(t, { server, auth, metrics: { path: '/metrics' } })
  t.equal((await fetch(`${open.base}/metrics`)).status, 200, 'outside the MCP routes\' auth by default')
  const Fastify = (await import('fastify')).default
  const mcpSse = (await import('../src/index.js')).default
  for (const [opts, option] of [[{ metrics: { path: 'metrics' } }, 'metrics.path'], [{ metrics: 'yes' }, 'metrics'], [{ tracing: 1 }, 'tracing'], [{ health: { path: 'x' } }, 'health.path'], [{ health: true }, 'health']] as const) {
    const app = Fastify()
    await t.rejects(async () => { await app.register(mcpSse, { server, ...(opts as object) }) }, { code: 'FST_ERR_MCP_SSE_INVALID_OPTION', message: new RegExp(option.replace('.', '\\.')) })
    await app.close()
  }
})

const ACCEPT = 'application/json, text/event-stream'
const META = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': {} }

/** A 2026-07-28 request over fetch; its body read to the end. */
async function modernPost (base: string, id: number, method: string, params: Record<string, unknown> = {}, meta: Record<string, unknown> = META, signal?: AbortSignal): Promise<{ status: number, text: string }> {
  const res = await fetch(`${base}/mcp`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: ACCEPT, 'mcp-protocol-version': '2026-07-28', 'mcp-method': method, ...(typeof params.name === 'string' ? { 'mcp-name': params.name } : {}) },
    body: JSON.stringify({ jsonrpc: '2.0', id, method, params: { ...params, _meta: meta } }),
    ...(signal === undefined ? {} : { signal })
  })
  return { status: res.status, text: await res.text() }
}

/** The label values of one label across the series of `name`. */
function labelValues (m: Map<string, number>, name: string, label: string): Set<string> {
  const out = new Set<string>()
  for (const key of m.keys()) {
    if (!key.startsWith(name + '{')) continue
    const v = new RegExp(`${label}="([^"]*)"`).exec(key)?.[1]
    if (v !== undefined) out.add(v)
  }
  return out
}

t.test('metrics: unknown tools (JSON-RPC errors) and over-long names take no label slot, listed tools do; made-up protocol versions are "other"', async t => {
  const { Server } = await import('@modelcontextprotocol/sdk/server/index.js')
  const { CallToolRequestSchema, ListToolsRequestSchema, McpError, ErrorCode } = await import('@modelcontextprotocol/sdk/types.js')
  const long = 'l'.repeat(80)
  const lowLevel = (): InstanceType<typeof Server> => {
    const s = new Server({ name: 'low', version: '1' }, { capabilities: { tools: {} } })
    s.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: [{ name: 'listed', inputSchema: { type: 'object' as const } }] }))
    s.setRequestHandler(CallToolRequestSchema, async req => {
      if (['real', 'listed', long].includes(req.params.name)) return { content: [] }
      throw new McpError(ErrorCode.InvalidParams, `Tool ${req.params.name} not found`)
    })
    return s
  }
  const { app, base } = await startApp(t, { server: lowLevel, metrics: { path: '/metrics' } })
  const client = new Client({ name: 'a', version: '1' })
  await client.connect(new StreamableHTTPClientTransport(new URL(`${base}/mcp`)))
  t.teardown(() => client.close())
  for (let i = 0; i < 120; i++) await t.rejects(client.callTool({ name: `made-up-${i}`, arguments: {} }), { code: -32602 })
  await client.callTool({ name: 'real', arguments: {} })
  await client.callTool({ name: long, arguments: {} })
  await client.listTools()
  await client.callTool({ name: 'listed', arguments: {} })
  const m = await scrape(base)
  t.same([...labelValues(m, 'mcp_server_operation_duration_seconds_count', 'gen_ai_tool_name')].sort(), ['', 'listed', 'other', 'real'], 'only the tools the server has (and "" for other methods)')
  t.equal(value(m, 'mcp_server_operation_duration_seconds_count', { gen_ai_tool_name: 'other', error_type: '-32602' }), 120, 'the unknown tools, as "other"')
  t.equal(value(m, 'mcp_server_operation_duration_seconds_count', { gen_ai_tool_name: 'other', error_type: '' }), 1, 'the over-long name, as "other"')

  // A 2026-07-28 request with a made-up version in _meta: the label is "other", never the client's string.
  const v2 = await startApp(t, { server: () => buildExampleServerV2(), metrics: { path: '/metrics' } })
  await modernPost(v2.base, 1, 'tools/list', {}, { ...META, 'io.modelcontextprotocol/protocolVersion': 'x-made-up-9' })
  await modernPost(v2.base, 2, 'tools/list')
  const text = await (await fetch(`${v2.base}/metrics`)).text()
  t.notMatch(text, /x-made-up-9/, 'the client\'s string is in no label')
  const mv = parse(text)
  t.equal(value(mv, 'mcp_server_operation_duration_seconds_count', { mcp_method_name: 'tools/list', mcp_protocol_version: 'other' }), 1)
  t.equal(value(mv, 'mcp_server_operation_duration_seconds_count', { mcp_method_name: 'tools/list', mcp_protocol_version: '2026-07-28' }), 1)
  void app
})

t.test('a cancelled request ends its operation and span at once (the SDK never answers it), in a session and in 2026-07-28', async t => {
  exporter.reset()
  let started = 0
  const hanging = (): McpServer => {
    const s = server()
    s.registerTool('hang', {}, async extra => {
      started++
      await new Promise(resolve => { extra.signal.addEventListener('abort', resolve, { once: true }) })
      return { content: [] }
    })
    return s
  }
  const { app, base } = await startApp(t, { server: hanging, metrics: { path: '/metrics' } })
  const client = new Client({ name: 'a', version: '1' })
  await client.connect(new StreamableHTTPClientTransport(new URL(`${base}/mcp`)))
  t.teardown(() => client.close())
  const ac = new AbortController()
  const call = client.callTool({ name: 'hang', arguments: {} }, undefined, { signal: ac.signal })
  await until(() => started === 1, 5000, 'the tool to start')
  ac.abort()
  await t.rejects(call)
  await until(() => spans().some(s => s.name === 'tools/call hang'), 5000, 'the span to end')
  const span = spans().find(s => s.name === 'tools/call hang')
  t.equal(span?.attributes['error.type'], 'cancelled')
  t.equal(span?.status.code, 2)
  t.equal(app.mcpSessions.size, 1, 'while the session goes on')
  const m = await scrape(base)
  t.equal(value(m, 'mcp_server_operation_duration_seconds_count', { mcp_method_name: 'tools/call', error_type: 'cancelled' }), 1)

  // 2026-07-28: the request's stream closing is its cancellation.
  const v2 = await startApp(t, { server: () => buildExampleServerV2(), metrics: { path: '/metrics' } })
  const abort = new AbortController()
  const res = fetch(`${v2.base}/mcp`, {
    method: 'POST',
    signal: abort.signal,
    headers: { 'content-type': 'application/json', accept: ACCEPT, 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'countdown' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'countdown', arguments: { from: 50, intervalMs: 200 }, _meta: { ...META, progressToken: 'p' } } })
  })
  const head = await res
  const reader = (head.body as ReadableStream<Uint8Array>).getReader()
  await reader.read()
  abort.abort()
  await reader.read().catch(() => {})
  await until(() => spans().some(s => s.name === 'tools/call countdown'), 5000, 'the modern span to end')
  t.equal(spans().find(s => s.name === 'tools/call countdown')?.attributes['error.type'], 'cancelled')
  const mv = await scrape(v2.base)
  t.equal(value(mv, 'mcp_server_operation_duration_seconds_count', { mcp_method_name: 'tools/call', error_type: 'cancelled' }), 1)
})

t.test('metrics: HTTP+SSE sessions carry the negotiated protocol version; bytes written are the bytes the client read', async t => {
  const { app, base } = await startApp(t, { server, metrics: { path: '/metrics' }, keepAliveInterval: 0 })
  const stream = await RawStream.open(`${base}/sse`)
  let bytes = 0
  stream.res.on('data', (chunk: string) => { bytes += Buffer.byteLength(chunk) })
  const url = await stream.endpoint(base)
  // The endpoint event is the stream's head, not a message: counting starts after it.
  bytes = 0
  const postJson = async (body: object): Promise<number> => (await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })).status
  t.equal(await postJson({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }), 202)
  await stream.next('message')
  t.equal(await postJson({ jsonrpc: '2.0', method: 'notifications/initialized' }), 202)
  t.equal(await postJson({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'echo', arguments: { text: 'y'.repeat(1000) } } }), 202)
  await stream.next('message')
  const m = await scrape(base)
  t.equal(value(m, 'mcp_bytes_written_total', { mcp_transport: 'sse' }), bytes, `every byte of the two answers the client read (${bytes})`)
  t.ok(bytes > 1000, 'the echo of 1000 characters among them')
  stream.close()
  await until(() => app.mcpSessions.size === 0, 5000, 'the session to end')
  const after = await scrape(base)
  t.equal(value(after, 'mcp_server_session_duration_seconds_count', { mcp_transport: 'sse', mcp_protocol_version: '2025-06-18' }), 1, 'the version the server answered initialize with')
  t.equal(value(after, 'mcp_server_session_duration_seconds_count', { mcp_protocol_version: '' }), 0)
})

t.test('2026-07-28: a JSON-RPC error inside a 200 and a tool\'s isError are the error type; a listen stream is a modern stream', async t => {
  const { app, base } = await startApp(t, { server: () => buildExampleServerV2(), metrics: { path: '/metrics' } })
  const unknown = await modernPost(base, 1, 'tools/call', { name: 'nope', arguments: {} })
  t.equal(unknown.status, 200, unknown.text.slice(0, 200))
  const code = String((JSON.parse(unknown.text.startsWith('{') ? unknown.text : (/data: (.*)/.exec(unknown.text)?.[1] ?? '{}')) as { error?: { code?: number } }).error?.code)
  t.equal(code, '-32602', 'SDK v2 answers an unknown tool with a JSON-RPC error, inside a 200')
  const bad = await modernPost(base, 2, 'tools/call', { name: 'countdown', arguments: { from: 500 } })
  t.equal(bad.status, 200)
  const ok = await modernPost(base, 3, 'tools/call', { name: 'countdown', arguments: { from: 1, intervalMs: 0 }, _meta: undefined }, { ...META, progressToken: 'p' })
  t.equal(ok.status, 200)
  const m = await scrape(base)
  t.equal(value(m, 'mcp_server_operation_duration_seconds_count', { mcp_method_name: 'tools/call', gen_ai_tool_name: 'other', error_type: '-32602' }), 1, 'error_type -32602, and the unknown tool took no label slot')
  t.equal(value(m, 'mcp_server_operation_duration_seconds_count', { gen_ai_tool_name: 'countdown', error_type: 'tool_error' }), 1, 'invalid arguments: a tool result with isError')
  t.equal(value(m, 'mcp_server_operation_duration_seconds_count', { gen_ai_tool_name: 'countdown', error_type: '' }), 1, 'a streamed answer with progress that succeeded')

  const listen = await fetch(`${base}/mcp`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: ACCEPT, 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'subscriptions/listen' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'subscriptions/listen', params: { notifications: { toolsListChanged: true }, _meta: META } })
  })
  t.equal(listen.status, 200)
  await until(() => app.mcpEvents.listening === 1, 5000, 'the listen stream')
  t.equal(value(await scrape(base), 'mcp_streams_open', { mcp_transport: 'modern' }), 1)
  await listen.body?.cancel()
})

t.test('auth failures are counted by reason: missing, invalid, expired, insufficient scope, provider error', async t => {
  const { McpAuthError } = await import('../src/index.js')
  const provider = {
    authenticate (request: { headers: Record<string, unknown> }): boolean | { principal: string } {
      const key = request.headers['x-api-key']
      if (key === undefined) return false
      if (key === 'good') return { principal: 'p' }
      if (key === 'old') throw new McpAuthError({ status: 401, message: 'Unauthorized: the token has expired.' })
      if (key === 'narrow') throw new McpAuthError({ status: 403, message: 'Forbidden: needs scope mcp.' })
      if (key === 'broken') throw new Error('the provider is down')
      return false
    }
  }
  const { base } = await startApp(t, { server, auth: { provider }, metrics: { path: '/metrics' } })
  const hit = async (key?: string): Promise<number> => (await fetch(`${base}/sse`, { headers: { accept: 'text/event-stream', ...(key === undefined ? {} : { 'x-api-key': key }) } })).status
  t.equal(await hit(), 401)
  t.equal(await hit(), 401)
  t.equal(await hit('wrong'), 401)
  t.equal(await hit('old'), 401)
  t.equal(await hit('narrow'), 403)
  t.equal(await hit('broken'), 401)
  const m = await scrape(base)
  t.equal(value(m, 'mcp_auth_failures_total', { reason: 'missing_credentials' }), 2)
  t.equal(value(m, 'mcp_auth_failures_total', { reason: 'invalid_credentials' }), 1)
  t.equal(value(m, 'mcp_auth_failures_total', { reason: 'expired' }), 1)
  t.equal(value(m, 'mcp_auth_failures_total', { reason: 'insufficient_scope' }), 1)
  t.equal(value(m, 'mcp_auth_failures_total', { reason: 'provider_error' }), 1)
  t.equal(value(m, 'mcp_http_errors_total', { type: 'authentication_error' }), 6, 'and each as an HTTP error')
})

t.test('metrics.auth without an auth option fails at register, naming the option', async t => {
  const Fastify = (await import('fastify')).default
  const mcpSse = (await import('../src/index.js')).default
  const app = Fastify()
  await t.rejects(async () => { await app.register(mcpSse, { server, metrics: { path: '/metrics', auth: true } }) }, { code: 'FST_ERR_MCP_SSE_INVALID_OPTION', message: /metrics\.auth/ })
  await app.close()
})

t.test('traces: resource URIs are attributes, not names; an active (HTTP) span is the parent over the header; a JSON-RPC error is ERROR', async t => {
  exporter.reset()
  const withResource = (): McpServer => {
    const s = server()
    s.registerResource('doc', 'file:///private/report.txt', {}, async uri => ({ contents: [{ uri: uri.href, text: 'r' }] }))
    s.registerPrompt('hello', {}, async () => ({ messages: [{ role: 'user', content: { type: 'text', text: 'hi' } }] }))
    return s
  }
  const httpTracer = trace.getTracer('http-instrumentation-stand-in')
  const httpSpans: string[] = []
  // What an HTTP instrumentation does: a SERVER span per request, parented on its
  // traceparent header, active while the request is handled.
  const { base } = await startApp(t, { server: withResource }, {
    fastify: {
      forceCloseConnections: true,
      serverFactory: handler => http.createServer((req, res) => {
        const span = httpTracer.startSpan(`${req.method ?? ''} http`, { kind: 1 }, propagation.extract(context.active(), req.headers))
        httpSpans.push(span.spanContext().spanId)
        res.on('close', () => span.end())
        context.with(trace.setSpan(context.active(), span), () => { handler(req, res) })
      })
    }
  })
  const client = new Client({ name: 'a', version: '1' })
  await client.connect(new StreamableHTTPClientTransport(new URL(`${base}/mcp`), { requestInit: { headers: { traceparent: '00-77777777777777777777777777777777-8888888888888888-01' } } }))
  t.teardown(() => client.close())
  await client.readResource({ uri: 'file:///private/report.txt' })
  await t.rejects(client.getPrompt({ name: 'nope' }))
  await client.callTool({ name: 'echo', arguments: { text: 'x' } })
  await until(() => spans().some(s => s.name === 'tools/call echo'), 5000, 'the echo span')
  t.notOk(spans().some(s => s.name.includes('file://')), 'no URI in any span name')
  const read = spans().find(s => s.attributes['mcp.method.name'] === 'resources/read')
  t.equal(read?.name, 'resources/read')
  t.equal(read?.attributes['mcp.resource.uri'], 'file:///private/report.txt')
  const echo = spans().find(s => s.name === 'tools/call echo')
  t.equal(echo?.spanContext().traceId, '77777777777777777777777777777777', 'the trace the header started')
  t.not(echo?.parentSpanContext?.spanId, '8888888888888888', 'not the header\'s span directly')
  t.ok(httpSpans.includes(echo?.parentSpanContext?.spanId ?? ''), 'the HTTP server span is the parent')
  const failed = spans().find(s => s.name === 'prompts/get nope')
  t.equal(failed?.status.code, 2, 'ERROR status from a JSON-RPC error response')
  t.equal(failed?.attributes['error.type'], '-32602')
})

t.test('under a rate limit on HTTP+SSE every POST that got 202 is answered on the stream; each refusal is counted as rate_limited', async t => {
  const { base } = await startApp(t, { server, metrics: { path: '/metrics' }, keepAliveInterval: 0, rateLimit: { open: false, messages: { max: 10, timeWindow: '1 minute' } } })
  const stream = await RawStream.open(`${base}/sse`)
  t.teardown(() => stream.close())
  const url = await stream.endpoint(base)
  const postJson = async (body: object): Promise<number> => (await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })).status
  t.equal(await postJson({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }), 202)
  await stream.next('message')
  t.equal(await postJson({ jsonrpc: '2.0', method: 'notifications/initialized' }), 202)
  const posts = await Promise.all(Array.from({ length: 20 }, async (_, i) => ({ id: 100 + i, status: await postJson({ jsonrpc: '2.0', id: 100 + i, method: 'tools/call', params: { name: 'echo', arguments: { text: `m${i}` } } }) })))
  const accepted = posts.filter(p => p.status === 202).map(p => p.id).sort()
  t.equal(accepted.length, 8, 'ten messages a minute: initialize, initialized and eight calls')
  t.equal(posts.filter(p => p.status === 429).length, 12)
  const answered: number[] = []
  while (answered.length < accepted.length) {
    const answer = JSON.parse((await stream.next('message')).data) as { id: number, result?: { content: Array<{ text: string }> } }
    t.equal(answer.result?.content[0]?.text, `m${answer.id - 100}`, `call ${answer.id} answered with its own echo`)
    answered.push(answer.id)
  }
  t.same(answered.sort(), accepted, 'every accepted call answered, none of the refused')
  const m = await scrape(base)
  t.equal(value(m, 'mcp_http_errors_total', { type: 'rate_limited', status: '429' }), 12)
  t.equal(value(m, 'mcp_messages_received_total', { mcp_transport: 'sse' }), 10, 'the refused never reached the session')
  t.equal(value(m, 'mcp_messages_sent_total', { mcp_transport: 'sse' }), 9, 'initialize and the eight answers, nothing more')
})

t.test('cluster forwards by kind and outcome on a Redis pair: an HTTP+SSE message forwarded, a Streamable request relayed, an unknown session', async t => {
  const keyPrefix = testPrefix()
  const a = await startInstance(t, { server, redis: { url: REDIS_URL, keyPrefix }, keepAliveInterval: 0 })
  const b = await startInstance(t, { server, redis: { url: REDIS_URL, keyPrefix }, metrics: { path: '/metrics' } })
  const stream = await RawStream.open(`${a.base}/sse`)
  t.teardown(() => stream.close())
  await stream.endpoint(a.base)
  const sessionId = [...a.app.mcpSessions.ids()][0] as string
  const viaB = await fetch(`${b.base}/messages?sessionId=${sessionId}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }) })
  t.equal(viaB.status, 202)
  t.match(JSON.parse((await stream.next('message')).data), { id: 1, result: { protocolVersion: '2025-11-25' } }, 'the answer on A\'s stream')
  const init = await fetch(`${a.base}/mcp`, { method: 'POST', headers: { 'content-type': 'application/json', accept: ACCEPT }, body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } } }) })
  const streamable = init.headers.get('mcp-session-id') as string
  await init.text()
  const ping = await fetch(`${b.base}/mcp`, { method: 'POST', headers: { 'content-type': 'application/json', accept: ACCEPT, 'mcp-session-id': streamable, 'mcp-protocol-version': '2025-11-25' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }) })
  t.equal(ping.status, 200)
  await ping.text()
  const unknown = await fetch(`${b.base}/messages?sessionId=00000000-0000-4000-8000-000000000000`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'ping' }) })
  t.equal(unknown.status, 404)
  const m = await scrape(b.base)
  t.equal(value(m, 'mcp_cluster_forwards_total', { kind: 'forward', outcome: 'delivered' }), 1, 'the HTTP+SSE message, forwarded to A')
  t.equal(value(m, 'mcp_cluster_forwards_total', { kind: 'relay', outcome: 'delivered' }), 1, 'the Streamable request, relayed to A')
  t.equal(value(m, 'mcp_cluster_forwards_total', { kind: 'forward', outcome: 'not_found' }), 1, 'the unknown session: looked up in the cluster, no owner')
  t.equal(value(m, 'mcp_cluster_forward_duration_seconds_count', { kind: 'forward' }), 2)
  t.equal(value(m, 'mcp_cluster_forward_duration_seconds_count', { kind: 'relay' }), 1)
  t.equal(value(m, 'mcp_redis_up'), 1)
})
