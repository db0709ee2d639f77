// Scale-out over a real Redis: instances behind a round-robin proxy with no stickiness.
// REDIS_URL (default redis://127.0.0.1:6379) must be reachable; these tests never skip.
import t from 'tap'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js'
import mcpSse, { ApiKeyAuthProvider, type McpRedisOptions } from '../src/index.js'
import { PrivateRedis, REDIS_URL, spawnInstance, startInstance, startProxy, testPrefix } from './support/cluster.js'
import { connectClient, exampleServer, initialize, post, RawStream, until } from './support/helpers.js'

const text = (r: unknown): string => {
  const first = (r as CallToolResult).content[0]
  return first?.type === 'text' ? first.text : ''
}

function redisClient (t: { teardown: (fn: () => unknown) => void }, url = REDIS_URL): Redis {
  const client = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 1 })
  t.teardown(() => client.quit().catch(() => client.disconnect()))
  return client
}

const sessionIdOf = (url: string): string => new URL(url).searchParams.get('sessionId') ?? ''

t.test('two instances behind a round-robin proxy run a full SDK session, every response in order', async t => {
  const keyPrefix = testPrefix()
  const a = await startInstance(t, { redis: { url: REDIS_URL, keyPrefix } })
  const b = await startInstance(t, { redis: { url: REDIS_URL, keyPrefix } })
  const proxy = await startProxy(t, [a.base, b.base])
  const client = await connectClient(t, `${proxy.base}/sse`)
  const { tools } = await client.listTools()
  t.same(tools.map(x => x.name).sort(), ['countdown', 'echo'])
  const got: string[] = []
  for (let i = 0; i < 40; i++) got.push(text(await client.callTool({ name: 'echo', arguments: { text: `m${i}` } })))
  t.same(got, Array.from({ length: 40 }, (_, i) => `m${i}`))
  const burst = await Promise.all(Array.from({ length: 40 }, (_, i) => client.callTool({ name: 'echo', arguments: { text: `b${i}` } })))
  t.same(burst.map(text), Array.from({ length: 40 }, (_, i) => `b${i}`))
  t.equal(a.app.mcpSessions.size + b.app.mcpSessions.size, 1)
  const posts = proxy.log.filter(r => r.method === 'POST')
  t.ok(posts.some(r => r.upstream === 0) && posts.some(r => r.upstream === 1), 'POSTs landed on both instances')
})

t.test('messages forwarded to another instance arrive in the order they reached it', async t => {
  const keyPrefix = testPrefix()
  const owner = await startInstance(t, { redis: { url: REDIS_URL, keyPrefix } })
  const order: number[] = []
  const otherApp = Fastify()
  // Root preHandler runs right before the plugin's handler: it records handler order.
  otherApp.addHook('preHandler', async request => {
    const body = request.body as { id?: number } | undefined
    if (typeof body?.id === 'number') order.push(body.id)
  })
  await otherApp.register(mcpSse, { server: () => exampleServer(), redis: { url: REDIS_URL, keyPrefix } })
  await otherApp.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => otherApp.close())
  const other = { base: `http://127.0.0.1:${(otherApp.server.address() as { port: number }).port}` }
  const s = await RawStream.open(`${owner.base}/sse`)
  t.teardown(() => s.close())
  const url = `${other.base}/messages?sessionId=${sessionIdOf(await s.endpoint(owner.base))}`
  t.equal((await post(url, initialize(0))).status, 202)
  t.equal(JSON.parse((await s.next('message')).data).id, 0)
  await post(url, { jsonrpc: '2.0', method: 'notifications/initialized' })
  order.length = 0
  const N = 100
  const answers = await Promise.all(Array.from({ length: N }, (_, i) => post(url, { jsonrpc: '2.0', id: i + 1, method: 'ping' })))
  t.ok(answers.every(a => a.status === 202))
  const replies: number[] = []
  for (let i = 0; i < N; i++) replies.push(JSON.parse((await s.next('message')).data).id)
  t.equal(order.length, N)
  t.same(replies, order, 'replies come back in the order the POSTs reached the forwarding instance')
})

t.test('many concurrent sessions spread over three instances each get their own answers', async t => {
  const keyPrefix = testPrefix()
  const instances = await Promise.all([0, 1, 2].map(() => startInstance(t, { redis: { url: REDIS_URL, keyPrefix } })))
  const proxy = await startProxy(t, instances.map(i => i.base))
  const clients = await Promise.all(Array.from({ length: 24 }, () => connectClient(t, `${proxy.base}/sse`)))
  t.same(instances.map(i => i.app.mcpSessions.size), [8, 8, 8], 'streams spread evenly by the round robin')
  const results = await Promise.all(clients.flatMap((c, i) => Array.from({ length: 8 }, (_, j) =>
    c.callTool({ name: 'echo', arguments: { text: `c${i}-${j}` } }).then(r => text(r) === `c${i}-${j}`))))
  t.equal(results.length, 192)
  t.ok(results.every(Boolean), 'every reply matched its request')
})

t.test('a session is looked up cluster-wide, and the registry entry carries owner, principal and a TTL', async t => {
  const keyPrefix = testPrefix()
  const provider = new ApiKeyAuthProvider({ keys: [{ key: 'k-alice', principal: 'alice' }] })
  const a = await startInstance(t, { redis: { url: REDIS_URL, keyPrefix, sessionTtl: 30_000 }, auth: { provider } })
  const b = await startInstance(t, { redis: { url: REDIS_URL, keyPrefix, sessionTtl: 30_000 }, auth: { provider } })
  const s = await RawStream.open(`${a.base}/sse`, { 'x-api-key': 'k-alice' })
  t.teardown(() => s.close())
  const id = sessionIdOf(await s.endpoint(a.base))
  const redis = redisClient(t)
  await until(() => a.app.mcpSessions.has(id), 1000, 'local')
  const entry = await redis.hgetall(`${keyPrefix}session:${id}`)
  t.equal(entry.principal, 'alice')
  t.ok(entry.owner !== undefined && entry.owner.length > 0)
  const ttl = await redis.pttl(`${keyPrefix}session:${id}`)
  t.ok(ttl > 20_000 && ttl <= 30_000, `ttl ${ttl}`)
  t.match(await a.app.mcpSessions.lookup(id), { id, local: true, principal: 'alice' })
  t.match(await b.app.mcpSessions.lookup(id), { id, local: false, owner: entry.owner, principal: 'alice' })
  t.equal(b.app.mcpSessions.get(id), undefined, 'get() is local only')
  t.equal(await b.app.mcpSessions.lookup('no-such-session'), undefined)

  s.close()
  await until(() => a.app.mcpSessions.size === 0, 5000, 'close')
  await until(() => false, 100, 'a moment').catch(() => {})
  t.equal(await redis.exists(`${keyPrefix}session:${id}`), 0, 'removed from Redis on disconnect')
})

t.test('a hijack from another principal through another instance answers like an unknown session', async t => {
  const keyPrefix = testPrefix()
  const provider = new ApiKeyAuthProvider({ keys: [{ key: 'k-alice', principal: 'alice' }, { key: 'k-bob', principal: 'bob' }] })
  const a = await startInstance(t, { redis: { url: REDIS_URL, keyPrefix }, auth: { provider } })
  const b = await startInstance(t, { redis: { url: REDIS_URL, keyPrefix }, auth: { provider } })
  const s = await RawStream.open(`${a.base}/sse`, { 'x-api-key': 'k-alice' })
  t.teardown(() => s.close())
  const id = sessionIdOf(await s.endpoint(a.base))
  const hijack = await post(`${b.base}/messages?sessionId=${id}`, initialize(1), { 'x-api-key': 'k-bob' })
  t.equal(hijack.status, 404)
  t.match(hijack.body, { error: { code: -32001, data: { type: 'session_not_found', connectionActive: false } } })
  const anonymous = await post(`${b.base}/messages?sessionId=${id}`, initialize(1))
  t.equal(anonymous.status, 401, 'no credentials: refused before any lookup')
  await t.rejects(s.next('message', 300), /timed out/, 'nothing reached alice\'s session')
  const own = await post(`${b.base}/messages?sessionId=${id}`, initialize(2), { 'x-api-key': 'k-alice' })
  t.equal(own.status, 202)
  t.equal(JSON.parse((await s.next('message')).data).id, 2)
})

t.test('with endpoints.sse false, the first poster through any instance owns the session cluster-wide', async t => {
  const keyPrefix = testPrefix()
  const provider = new ApiKeyAuthProvider({ keys: [{ key: 'k-alice', principal: 'alice' }, { key: 'k-bob', principal: 'bob' }] })
  const auth = { provider, endpoints: { sse: false } }
  const a = await startInstance(t, { redis: { url: REDIS_URL, keyPrefix }, auth })
  const b = await startInstance(t, { redis: { url: REDIS_URL, keyPrefix }, auth })
  const s = await RawStream.open(`${a.base}/sse`)
  t.teardown(() => s.close())
  const id = sessionIdOf(await s.endpoint(a.base))
  t.equal((await post(`${b.base}/messages?sessionId=${id}`, initialize(1), { 'x-api-key': 'k-bob' })).status, 202)
  await s.next('message')
  t.equal((await post(`${a.base}/messages?sessionId=${id}`, { jsonrpc: '2.0', id: 2, method: 'ping' }, { 'x-api-key': 'k-alice' })).status, 404, 'alice cannot take it on the owner instance')
  t.equal((await post(`${a.base}/messages?sessionId=${id}`, { jsonrpc: '2.0', id: 3, method: 'ping' }, { 'x-api-key': 'k-bob' })).status, 202)
  t.equal(JSON.parse((await s.next('message')).data).id, 3)
})

t.test('a session bound elsewhere is refused on its owner instance even before the owner hears of the binding', async t => {
  const keyPrefix = testPrefix()
  const provider = new ApiKeyAuthProvider({ keys: [{ key: 'k-alice', principal: 'alice' }] })
  const a = await startInstance(t, { redis: { url: REDIS_URL, keyPrefix }, auth: { provider, endpoints: { sse: false } } })
  const s = await RawStream.open(`${a.base}/sse`)
  t.teardown(() => s.close())
  const id = sessionIdOf(await s.endpoint(a.base))
  // The registry already names another owner (bound through another instance), while
  // A's own copy of the session is still unbound.
  const redis = redisClient(t)
  await until(() => a.app.mcpSessions.has(id), 1000, 'local')
  await redis.hset(`${keyPrefix}session:${id}`, 'principal', 'mallory')
  const res = await post(`${a.base}/messages?sessionId=${id}`, initialize(1), { 'x-api-key': 'k-alice' })
  t.equal(res.status, 404)
  t.equal(a.app.mcpSessions.get(id)?.principal, undefined, 'not bound to the refused caller')
  await t.rejects(s.next('message', 300), /timed out/, 'nothing delivered')
})

t.test('when the owner instance closes, its sessions leave Redis and POSTs elsewhere answer 404', async t => {
  const keyPrefix = testPrefix()
  const a = await startInstance(t, { redis: { url: REDIS_URL, keyPrefix } })
  const b = await startInstance(t, { redis: { url: REDIS_URL, keyPrefix } })
  const streams = await Promise.all([0, 1, 2].map(() => RawStream.open(`${a.base}/sse`)))
  const ids = await Promise.all(streams.map(async s => sessionIdOf(await s.endpoint(a.base))))
  const redis = redisClient(t)
  t.equal((await post(`${b.base}/messages?sessionId=${ids[0]}`, initialize(1))).status, 202)
  await a.app.close()
  t.equal(await redis.exists(...ids.map(id => `${keyPrefix}session:${id}`)), 0, 'entries removed')
  t.same(await redis.pubsub('NUMSUB', `${keyPrefix}instance:${(a.app.mcpSessions as unknown as { instanceId: string }).instanceId}`), [`${keyPrefix}instance:${(a.app.mcpSessions as unknown as { instanceId: string }).instanceId}`, 0], 'unsubscribed')
  for (const id of ids) {
    const res = await post(`${b.base}/messages?sessionId=${id}`, { jsonrpc: '2.0', id: 2, method: 'ping' })
    t.equal(res.status, 404)
  }
})

t.test('a session that ends is refused at once through an instance that had routed to it', async t => {
  const keyPrefix = testPrefix()
  const a = await startInstance(t, { redis: { url: REDIS_URL, keyPrefix } })
  const b = await startInstance(t, { redis: { url: REDIS_URL, keyPrefix } })
  const s = await RawStream.open(`${a.base}/sse`)
  const id = sessionIdOf(await s.endpoint(a.base))
  // B looks the owner up once and reuses it for the following POSTs.
  for (let i = 1; i <= 3; i++) t.equal((await post(`${b.base}/messages?sessionId=${id}`, initialize(i))).status, 202)
  s.close()
  await until(() => a.app.mcpSessions.size === 0, 5000, 'the session to end on A')
  // The end is announced on the closed channel; B drops its cached route on it.
  await until(() => false, 100, 'the announcement').catch(() => {})
  const res = await post(`${b.base}/messages?sessionId=${id}`, { jsonrpc: '2.0', id: 9, method: 'ping' })
  t.equal(res.status, 404)
})

t.test('an instance that dies leaves nothing that accepts POSTs: 404 at once, entries expire', async t => {
  const keyPrefix = testPrefix()
  const child = await spawnInstance(t, keyPrefix, { sessionTtl: 600 })
  const dead = child.base
  const b = await startInstance(t, { redis: { url: REDIS_URL, keyPrefix } })
  const s1 = await RawStream.open(`${dead}/sse`)
  const s2 = await RawStream.open(`${dead}/sse`)
  const id1 = sessionIdOf(await s1.endpoint(dead))
  const id2 = sessionIdOf(await s2.endpoint(dead))
  t.equal((await post(`${b.base}/messages?sessionId=${id1}`, initialize(1))).status, 202, 'forwarded while alive')
  t.equal(JSON.parse((await s1.next('message')).data).id, 1)

  const redis = redisClient(t)
  const { owner } = await redis.hgetall(`${keyPrefix}session:${id1}`)
  await child.kill()
  await s1.waitEnd()
  // Redis notices the dead subscriber's closed socket on its next loop turn.
  const listeners = async (): Promise<number> => Number(((await redis.pubsub('NUMSUB', `${keyPrefix}instance:${owner}`)) as [string, number])[1])
  for (let i = 0; i < 100 && await listeners() > 0; i++) await new Promise(resolve => setTimeout(resolve, 10))
  t.equal(await redis.exists(`${keyPrefix}session:${id1}`), 1, 'the dead instance could not clean up')
  const res = await post(`${b.base}/messages?sessionId=${id1}`, { jsonrpc: '2.0', id: 2, method: 'ping' })
  t.equal(res.status, 404, `nobody listens on the owner channel: 404 at once (${res.text})`)
  t.equal(await redis.exists(`${keyPrefix}session:${id1}`), 0, 'and the stale entry is removed')
  // The other session's entry expires by itself (TTL 600 ms, no refresh from the dead owner).
  await until(() => false, 800, 'the TTL').catch(() => {})
  t.equal(await redis.exists(`${keyPrefix}session:${id2}`), 0, 'expired')
  t.equal((await post(`${b.base}/messages?sessionId=${id2}`, initialize(1))).status, 404)
})

t.test('Redis lost while running: local sessions keep working, cross-instance POSTs answer 503, and it recovers', async t => {
  const redis = await PrivateRedis.start(t)
  const keyPrefix = testPrefix()
  const a = await startInstance(t, { redis: { url: redis.url, keyPrefix, sessionTtl: 1500 } })
  const b = await startInstance(t, { redis: { url: redis.url, keyPrefix, sessionTtl: 1500 } })
  const s = await RawStream.open(`${a.base}/sse`)
  t.teardown(() => s.close())
  const id = sessionIdOf(await s.endpoint(a.base))
  t.equal((await post(`${b.base}/messages?sessionId=${id}`, initialize(1))).status, 202)
  await s.next('message')

  const unhandled: unknown[] = []
  const onUnhandled = (err: unknown): void => { unhandled.push(err) }
  process.on('unhandledRejection', onUnhandled)
  t.teardown(() => { process.off('unhandledRejection', onUnhandled) })

  await redis.down()
  const local = await post(`${a.base}/messages?sessionId=${id}`, { jsonrpc: '2.0', id: 2, method: 'ping' })
  t.equal(local.status, 202, 'the owner still serves its own session')
  t.equal(JSON.parse((await s.next('message')).data).id, 2)
  await until(() => !(b.app.mcpSessions as unknown as { connected: boolean }).connected, 3000, 'b to notice')
  const remote = await post(`${b.base}/messages?sessionId=${id}`, { jsonrpc: '2.0', id: 3, method: 'ping' })
  t.equal(remote.status, 503)
  t.equal(remote.headers.get('retry-after'), '1')
  t.match(remote.body, { jsonrpc: '2.0', id: 3, error: { code: -32000, data: { type: 'service_unavailable' } } })
  const fresh = await RawStream.open(`${a.base}/sse`)
  t.teardown(() => fresh.close())
  t.equal(fresh.res.statusCode, 200, 'new streams still open on an instance while Redis is away')
  const freshId = sessionIdOf(await fresh.endpoint(a.base))

  await redis.up()
  await until(() => (b.app.mcpSessions as unknown as { connected: boolean }).connected && (a.app.mcpSessions as unknown as { connected: boolean }).connected, 10_000, 'reconnection')
  // The empty Redis is refilled by the owner's refresh within a third of the TTL.
  const back = new Redis(redis.url)
  t.teardown(() => back.quit())
  await until(() => false, 700, 'a refresh').catch(() => {})
  t.equal(await back.exists(`${keyPrefix}session:${id}`, `${keyPrefix}session:${freshId}`), 2, 'sessions re-registered')
  const again = await post(`${b.base}/messages?sessionId=${id}`, { jsonrpc: '2.0', id: 4, method: 'ping' })
  t.equal(again.status, 202)
  t.equal(JSON.parse((await s.next('message')).data).id, 4)
  t.equal((await post(`${b.base}/messages?sessionId=${freshId}`, initialize(5))).status, 202)
  t.equal(JSON.parse((await fresh.next('message')).data).id, 5)
  t.same(unhandled, [], 'no unhandled rejection')
})

t.test('Redis unreachable at start fails register with a clear coded error', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  app.register(mcpSse, { server: () => exampleServer(), redis: { url: 'redis://127.0.0.1:1', connectTimeout: 500 } })
  await t.rejects(async () => { await app.ready() }, { code: 'FST_ERR_MCP_SSE_REDIS_UNAVAILABLE', message: /Redis is unavailable/ })
})

t.test('a user-supplied ioredis client is used and left open on close', async t => {
  const keyPrefix = testPrefix()
  const client = new Redis(REDIS_URL)
  t.teardown(() => client.quit())
  const a = await startInstance(t, { redis: { client, keyPrefix } })
  const b = await startInstance(t, { redis: { url: REDIS_URL, keyPrefix } })
  const s = await RawStream.open(`${a.base}/sse`)
  t.teardown(() => s.close())
  const id = sessionIdOf(await s.endpoint(a.base))
  t.equal((await post(`${b.base}/messages?sessionId=${id}`, initialize(1))).status, 202)
  t.equal(JSON.parse((await s.next('message')).data).id, 1)
  s.close()
  await a.app.close()
  t.equal(client.status, 'ready', 'the user\'s client is still open')
  t.equal(await client.ping(), 'PONG')
})

t.test('redis options are checked at register', async t => {
  for (const [redis, match] of [
    [{}, /redis/],
    [{ url: 'http://x' }, /redis\.url/],
    [{ url: REDIS_URL, client: new Redis({ lazyConnect: true }) }, /redis/],
    [{ url: REDIS_URL, sessionTtl: 5 }, /redis\.sessionTtl/],
    [{ url: REDIS_URL, keyPrefix: '' }, /redis\.keyPrefix/]
  ] as const) {
    const app = Fastify()
    app.register(mcpSse, { server: () => exampleServer(), redis: redis as McpRedisOptions })
    await t.rejects(async () => { await app.ready() }, { code: 'FST_ERR_MCP_SSE_INVALID_OPTION', message: match })
    await app.close()
  }
})
