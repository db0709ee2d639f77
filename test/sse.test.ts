// The wire protocol of `GET {endpoint}`, read from a real socket: headers, the endpoint
// event, message frames, keep-alive pings, prefixes and custom paths, and streams that
// outlive Node's request timeouts.
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import Fastify from 'fastify'
import mcpSse from '../src/index.js'
import { connectClient, exampleServer, initialize, post, RawStream, startApp, until } from './support/helpers.js'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** Opens a raw stream and closes it when the test ends. */
async function open (t: { teardown: (fn: () => unknown) => void }, url: string, headers: http.OutgoingHttpHeaders = {}): Promise<RawStream> {
  const s = await RawStream.open(url, headers)
  t.teardown(() => s.close())
  return s
}

/** A plain GET that reads the whole answer (for routes that are not streams). */
function get (url: string): Promise<{ status: number, body: string }> {
  return new Promise((resolve, reject) => {
    http.get(url, res => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    }).on('error', reject)
  })
}

t.test('the stream answers 200 with the event-stream content type', async t => {
  const { base } = await startApp(t)
  const s = await open(t, `${base}/sse`)
  t.equal(s.res.statusCode, 200)
  t.match(s.res.headers['content-type'], /^text\/event-stream(;|$)/)
})

t.test('the stream is marked uncacheable and unbuffered for proxies', async t => {
  const { base } = await startApp(t)
  const s = await open(t, `${base}/sse`)
  t.equal(s.res.headers['cache-control'], 'no-cache, no-transform')
  t.equal(s.res.headers['x-accel-buffering'], 'no')
})

t.test('the headers option adds its headers to the stream response', async t => {
  const { base } = await startApp(t, { headers: { 'X-Custom-Header': 'value', 'X-Other': 'two' } })
  const s = await open(t, `${base}/sse`)
  t.equal(s.res.headers['x-custom-header'], 'value')
  t.equal(s.res.headers['x-other'], 'two')
})

t.test('a custom Cache-Control header overrides the default one', async t => {
  const { base } = await startApp(t, { headers: { 'Cache-Control': 'no-store' } })
  const s = await open(t, `${base}/sse`)
  t.equal(s.res.headers['cache-control'], 'no-store')
})

t.test('a custom Content-Type header cannot change the stream content type', async t => {
  const { base } = await startApp(t, { headers: { 'Content-Type': 'application/json' } })
  const s = await open(t, `${base}/sse`)
  t.match(s.res.headers['content-type'], /^text\/event-stream(;|$)/)
  await s.next('endpoint')
})

t.test('the first event is the endpoint event with a relative message path and a session id', async t => {
  const { base } = await startApp(t)
  const s = await open(t, `${base}/sse`)
  const first = await s.next()
  t.equal(first.event, 'endpoint')
  const match = /^\/messages\?sessionId=(.+)$/.exec(first.data)
  t.ok(match, `endpoint data is a server-relative path: ${first.data}`)
  t.match(match?.[1], UUID)
})

t.test('replies travel as message events carrying the JSON-RPC reply', async t => {
  const { base } = await startApp(t)
  const s = await open(t, `${base}/sse`)
  const url = await s.endpoint(base)
  t.equal((await post(url, initialize(42))).status, 202)
  const ev = await s.next()
  t.equal(ev.event, 'message')
  const reply = JSON.parse(ev.data)
  t.equal(reply.jsonrpc, '2.0')
  t.equal(reply.id, 42)
  t.equal(reply.result.serverInfo.name, 'fastify-mcp-sse-example')
})

t.test('keep-alive pings carry an ISO 8601 timestamp and repeat', async t => {
  const { base } = await startApp(t, { keepAliveInterval: 50 })
  const s = await open(t, `${base}/sse`)
  await s.next('endpoint')
  const stamps: string[] = []
  for (let i = 0; i < 3; i++) {
    const ev = await s.next('ping', 2000)
    const data = JSON.parse(ev.data) as { timestamp: string }
    t.same(Object.keys(data), ['timestamp'])
    t.equal(new Date(data.timestamp).toISOString(), data.timestamp, 'timestamp is ISO 8601')
    stamps.push(data.timestamp)
  }
  t.ok(stamps[0]! < stamps[2]!, 'timestamps advance')
})

t.test('keepAliveInterval 0 sends no pings', async t => {
  const { base } = await startApp(t, { keepAliveInterval: 0 })
  const s = await open(t, `${base}/sse`)
  await s.next('endpoint')
  await t.rejects(s.next('ping', 300), /timed out/)
  t.notOk(s.ended)
})

t.test('a route prefix applies to both paths and to the announced message path', async t => {
  const { base } = await startApp(t, {}, { prefix: '/mcp' })
  const s = await open(t, `${base}/mcp/sse`)
  const ev = await s.next('endpoint')
  t.match(ev.data, /^\/mcp\/messages\?sessionId=[0-9a-f-]{36}$/)
  const url = new URL(ev.data, base).toString()
  t.equal((await post(url, initialize(1))).status, 202)
  t.equal(JSON.parse((await s.next('message')).data).id, 1)
  t.equal((await get(`${base}/sse`)).status, 404, 'the unprefixed path is not served')
})

t.test('the prefix of a host plugin is honoured in the announced message path', async t => {
  const app = Fastify({ forceCloseConnections: true })
  await app.register(async api => {
    await api.register(mcpSse, { server: () => exampleServer() })
  }, { prefix: '/api' })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`

  const s = await open(t, `${base}/api/sse`)
  const ev = await s.next('endpoint')
  t.match(ev.data, /^\/api\/messages\?sessionId=[0-9a-f-]{36}$/)
  t.equal((await post(new URL(ev.data, base).toString(), initialize(1))).status, 202)
  t.equal(JSON.parse((await s.next('message')).data).id, 1)
})

t.test('a host plugin prefix and the plugin prefix combine', async t => {
  const app = Fastify({ forceCloseConnections: true })
  await app.register(async api => {
    await api.register(mcpSse, { server: () => exampleServer(), prefix: '/mcp' })
  }, { prefix: '/api' })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`

  const s = await open(t, `${base}/api/mcp/sse`)
  const ev = await s.next('endpoint')
  t.match(ev.data, /^\/api\/mcp\/messages\?sessionId=[0-9a-f-]{36}$/)
  t.equal((await post(new URL(ev.data, base).toString(), initialize(1))).status, 202)
  t.equal(JSON.parse((await s.next('message')).data).id, 1)
})

t.test('a prefix with a trailing slash announces a message path that works', async t => {
  const { base } = await startApp(t, {}, { prefix: '/mcp/' })
  const s = await open(t, `${base}/mcp/sse`)
  const ev = await s.next('endpoint')
  t.match(ev.data, /^\/mcp\/messages\?sessionId=[0-9a-f-]{36}$/)
  t.equal((await post(new URL(ev.data, base).toString(), initialize(1))).status, 202)
})

t.test('custom endpoint and messageEndpoint paths are served and announced', async t => {
  const { base } = await startApp(t, { endpoint: '/events', messageEndpoint: '/rpc' })
  const s = await open(t, `${base}/events`)
  const ev = await s.next('endpoint')
  t.match(ev.data, /^\/rpc\?sessionId=[0-9a-f-]{36}$/)
  t.equal((await post(new URL(ev.data, base).toString(), initialize(1))).status, 202)
  t.equal(JSON.parse((await s.next('message')).data).id, 1)
})

t.test('with custom paths the default paths answer 404', async t => {
  const { base } = await startApp(t, { endpoint: '/events', messageEndpoint: '/rpc' })
  const s = await open(t, `${base}/events`)
  const sessionId = new URL(await s.endpoint(base)).searchParams.get('sessionId')
  t.equal((await get(`${base}/sse`)).status, 404)
  t.equal((await post(`${base}/messages?sessionId=${sessionId}`, initialize(1))).status, 404)
})

const shortTimeouts = { connectionTimeout: 300, requestTimeout: 300, keepAliveTimeout: 300, forceCloseConnections: true }

t.test('a stream with pings outlives the server connection and request timeouts', async t => {
  const { base } = await startApp(t, { keepAliveInterval: 100 }, { fastify: shortTimeouts })
  const s = await open(t, `${base}/sse`)
  const url = await s.endpoint(base)
  await new Promise(resolve => setTimeout(resolve, 1200))
  t.notOk(s.ended, 'still open after four times the timeouts')
  await s.next('ping', 500)
  t.equal((await post(url, { jsonrpc: '2.0', id: 5, method: 'ping' })).status, 202)
  t.same(JSON.parse((await s.next('message')).data), { jsonrpc: '2.0', id: 5, result: {} })
})

t.test('an idle stream without pings outlives the server connection timeout', async t => {
  const { base } = await startApp(t, { keepAliveInterval: 0 }, { fastify: shortTimeouts })
  const s = await open(t, `${base}/sse`)
  const url = await s.endpoint(base)
  await new Promise(resolve => setTimeout(resolve, 1200))
  t.notOk(s.ended, 'still open after 1.2 s of silence')
  t.equal((await post(url, { jsonrpc: '2.0', id: 6, method: 'ping' })).status, 202)
  t.same(JSON.parse((await s.next('message')).data), { jsonrpc: '2.0', id: 6, result: {} })
})

t.test('a HEAD request answers its headers at once and opens no session', async t => {
  const { base, app } = await startApp(t)
  const req = http.request(`${base}/sse`, { method: 'HEAD' })
  req.on('error', () => {})
  t.teardown(() => req.destroy())
  req.end()
  const status = await Promise.race([
    new Promise<number>(resolve => req.on('response', res => { res.resume(); resolve(res.statusCode ?? 0) })),
    new Promise<string>(resolve => setTimeout(() => resolve('no response within 1 s'), 1000))
  ])
  t.type(status, 'number', 'HEAD gets a response')
  t.equal(app.mcpSessions.size, 0, 'HEAD opens no session')
})

t.test('the SDK client works end to end against a prefixed app', async t => {
  const { base, app } = await startApp(t, {}, { prefix: '/mcp' })
  const client = await connectClient(t, `${base}/mcp/sse`)
  const { tools } = await client.listTools()
  t.same(tools.map(x => x.name).sort(), ['countdown', 'echo'])
  await until(() => app.mcpSessions.size === 1, 1000, 'one session')
  t.equal(app.mcpSessions.size, 1)
})
