// The Redis event store against a real Redis (REDIS_URL, default redis://127.0.0.1:6379):
// the same answers as the memory store, shared between instances, bounded, and failing
// fast (503) while Redis is away. These tests never skip.
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { Redis } from 'ioredis'
import { RedisEventStore, type RedisEventStoreOptions } from '../src/transports/redis-event-store.js'
import { PrivateRedis, REDIS_URL, testPrefix } from './support/cluster.js'

type Test = { teardown: (fn: () => unknown) => void }

const message = (n: number) => ({ jsonrpc: '2.0' as const, method: 'm', params: { n } })
const event = (id: string) => ({ id, message: message(Number(id.slice(id.lastIndexOf('.') + 1))) })
const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms))
/** Waits (up to 3 s) until `ok` answers true. */
async function until (ok: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 3000
  while (!await ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(10)
  }
}
const ids = (r: { events: Array<{ id: string }> } | undefined) => r?.events.map(e => e.id)

/** A connection of the test's own, for looking at keys behind the store's back. */
const admin = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 })
t.teardown(() => admin.quit())

/** A key prefix and a session id of the test's own; their keys are deleted at its end. */
function scope (t: Test): { keyPrefix: string, sid: string, key: (sid?: string) => string } {
  const keyPrefix = testPrefix()
  const sid = randomUUID()
  t.teardown(async () => {
    const keys = await admin.keys(`${keyPrefix}*`)
    if (keys.length > 0) await admin.del(...keys)
  })
  return { keyPrefix, sid, key: (s = sid) => `${keyPrefix}events:${s}` }
}

/** A client the test owns (and quits), connected. */
async function client (t: Test): Promise<Redis> {
  const c = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 })
  t.teardown(() => c.quit().catch(() => c.disconnect()))
  await c.ping()
  return c
}

/** A store on a connection of its own (`url`), once that connection is up. */
async function ownedStore (t: Test, opts: Omit<RedisEventStoreOptions, 'url' | 'client'> = {}): Promise<RedisEventStore> {
  const store = new RedisEventStore({ url: REDIS_URL, ...opts })
  t.teardown(() => store.close())
  await until(() => store.after('probe.0.0').then(() => true, () => false), 'the store to connect')
  return store
}

t.test('replays only the asked stream, only what came after, oldest first; appends reach Redis in call order', async t => {
  const { keyPrefix, sid, key } = scope(t)
  const store = new RedisEventStore({ client: await client(t), keyPrefix })
  // Fire-and-forget, as the transport does: an after() issued next still sees them all.
  for (const id of ['0.1', '1.1', '0.2', '2.1', '1.2', '0.3']) void store.append(`${sid}.${id.split('.')[0]}`, event(`${sid}.${id}`))
  t.same(await store.after(`${sid}.0.1`), {
    streamId: `${sid}.0`,
    events: [event(`${sid}.0.2`), event(`${sid}.0.3`)]
  }, 'events and their messages come back as they were appended')
  t.same(ids(await store.after(`${sid}.1.0`)), [`${sid}.1.1`, `${sid}.1.2`], 'from the priming event: the whole stream')
  t.same(ids(await store.after(`${sid}.2.0`)), [`${sid}.2.1`])
  t.same(await store.after(`${sid}.0.3`), { streamId: `${sid}.0`, events: [] }, 'nothing missed')
  t.equal(await admin.xlen(key()), 6, 'one Redis stream holds every stream of the session')
  const pttl = await admin.pttl(key())
  t.ok(pttl > 290_000 && pttl <= 300_000, `default ttl 300000 ms (pttl ${pttl})`)
})

t.test('a stream nobody wrote to replays nothing; an id that is not an event id gets undefined', async t => {
  const { keyPrefix, sid, key } = scope(t)
  const store = new RedisEventStore({ client: await client(t), keyPrefix })
  t.same(await store.after(`${sid}.4.7`), { streamId: `${sid}.4`, events: [] }, 'unknown session')
  await store.append(`${sid}.0`, event(`${sid}.0.1`))
  t.same(await store.after(`${sid}.1.0`), { streamId: `${sid}.1`, events: [] }, 'known session, unknown stream')
  for (const bad of ['not-an-id', `${sid}.1`, `${sid}.1.x`, `${sid}.1.-1`, '.1.2']) {
    t.equal(await store.after(bad), undefined, bad)
  }
  await store.append(`${sid}.0`, { id: 'not-an-id', message: message(0) })
  t.equal(await admin.xlen(key()), 1, 'an event whose id is not an event id is not kept')
})

t.test('at most maxEvents per session (exact trim); a replay that would skip dropped events is refused', async t => {
  const { keyPrefix, sid, key } = scope(t)
  const store = new RedisEventStore({ client: await client(t), keyPrefix, maxEvents: 3 })
  for (let i = 1; i <= 5; i++) await store.append(`${sid}.1`, event(`${sid}.1.${i}`))
  t.equal(await admin.xlen(key()), 3, 'exactly maxEvents kept (MAXLEN ~ would have kept all 5)')
  t.same(ids(await store.after(`${sid}.1.2`)), [`${sid}.1.3`, `${sid}.1.4`, `${sid}.1.5`])
  t.equal(await store.after(`${sid}.1.1`), undefined, 'event 2 is gone: no exact replay after 1')
  t.equal(await store.after(`${sid}.1.0`), undefined, 'nor from the priming event')
  // The bound is per session, over all its streams.
  await store.append(`${sid}.2`, event(`${sid}.2.1`))
  t.equal(await store.after(`${sid}.1.2`), undefined, 'event 3 was pushed out by another stream\'s event')
  t.same(ids(await store.after(`${sid}.1.3`)), [`${sid}.1.4`, `${sid}.1.5`])
})

t.test('a session\'s events expire ttl ms after its last event', async t => {
  const { keyPrefix, sid, key } = scope(t)
  const store = new RedisEventStore({ client: await client(t), keyPrefix, ttl: 400 })
  await store.append(`${sid}.1`, event(`${sid}.1.1`))
  await sleep(200)
  await store.append(`${sid}.1`, event(`${sid}.1.2`))
  const pttl = await admin.pttl(key())
  t.ok(pttl > 200 && pttl <= 400, `each append pushes the expiry back (pttl ${pttl})`)
  t.same(ids(await store.after(`${sid}.1.0`)), [`${sid}.1.1`, `${sid}.1.2`])
  await until(async () => await admin.exists(key()) === 0, 'the key to expire')
  t.pass('the key is gone')
  t.same(await store.after(`${sid}.1.0`), { streamId: `${sid}.1`, events: [] })
})

t.test('dropSession forgets every stream of that session, and only of that one', async t => {
  const { keyPrefix, sid, key } = scope(t)
  const other = randomUUID()
  const store = new RedisEventStore({ client: await client(t), keyPrefix })
  await store.append(`${sid}.0`, event(`${sid}.0.1`))
  await store.append(`${sid}.1`, event(`${sid}.1.1`))
  await store.append(`${other}.0`, event(`${other}.0.1`))
  await store.dropSession(sid)
  t.equal(await admin.exists(key()), 0)
  t.same(await store.after(`${sid}.0.0`), { streamId: `${sid}.0`, events: [] })
  t.same(ids(await store.after(`${other}.0.0`)), [`${other}.0.1`])
})

t.test('two stores on two connections share events: one appends, the other replays', async t => {
  const { keyPrefix, sid } = scope(t)
  const a = await ownedStore(t, { keyPrefix })
  const b = new RedisEventStore({ client: await client(t), keyPrefix })
  for (let i = 1; i <= 3; i++) await a.append(`${sid}.1`, event(`${sid}.1.${i}`))
  t.same(await b.after(`${sid}.1.1`), { streamId: `${sid}.1`, events: [event(`${sid}.1.2`), event(`${sid}.1.3`)] })
  await b.dropSession(sid)
  t.same(await a.after(`${sid}.1.1`), { streamId: `${sid}.1`, events: [] })
})

t.test('defaults: keys under "mcp:"', async t => {
  const sid = `test-${randomUUID()}`
  const c = await client(t)
  t.teardown(() => admin.del(`mcp:events:${sid}`))
  const store = new RedisEventStore({ client: c })
  await store.append(`${sid}.0`, event(`${sid}.0.1`))
  t.equal(await admin.exists(`mcp:events:${sid}`), 1)
})

t.test('close() quits only a connection the store opened', async t => {
  const { keyPrefix, sid } = scope(t)
  const c = await client(t)
  const borrowed = new RedisEventStore({ client: c, keyPrefix })
  await borrowed.close()
  t.equal(c.status, 'ready', 'a client passed in stays open')
  t.equal(await c.ping(), 'PONG')
  t.same(await borrowed.after(`${sid}.1.0`), { streamId: `${sid}.1`, events: [] }, 'and the store still works')

  const owned = await ownedStore(t, { keyPrefix })
  await owned.close()
  await t.rejects(owned.after(`${sid}.1.0`), { code: 'FST_ERR_MCP_SSE_REDIS_UNAVAILABLE' }, 'closed: after() answers 503')
  await owned.close() // twice is fine
})

t.test('the store needs exactly one of client and url', async t => {
  t.throws(() => new RedisEventStore({}), { code: 'FST_ERR_MCP_SSE_INVALID_OPTION' })
  const c = await client(t)
  t.throws(() => new RedisEventStore({ client: c, url: REDIS_URL }), { code: 'FST_ERR_MCP_SSE_INVALID_OPTION' })
})

t.test('Redis unreachable: after() rejects with FST_ERR_MCP_SSE_REDIS_UNAVAILABLE, append and dropSession fail at once', async t => {
  const store = new RedisEventStore({ url: 'redis://127.0.0.1:1' })
  t.teardown(() => store.close())
  const started = Date.now()
  await t.rejects(store.after('s.1.0'), { code: 'FST_ERR_MCP_SSE_REDIS_UNAVAILABLE', statusCode: 503 })
  await t.rejects(store.append('s.1', event('s.1.1')), { code: 'FST_ERR_MCP_SSE_REDIS_UNAVAILABLE' })
  await t.rejects(store.dropSession('s'), { code: 'FST_ERR_MCP_SSE_REDIS_UNAVAILABLE' })
  t.ok(Date.now() - started < 500, 'nothing waited for a connection')
  await sleep(50) // a reconnect attempt or two happened; the errors are swallowed
  await store.close()
})

t.test('a client whose Redis went away: nothing is queued for later, after() rejects', async t => {
  const redis = await PrivateRedis.start(t)
  const c = new Redis(redis.url, { maxRetriesPerRequest: 1, retryStrategy: () => 20 }) // offline queue on
  t.teardown(() => c.disconnect())
  c.on('error', () => {})
  await c.ping()
  const store = new RedisEventStore({ client: c })
  await redis.down()
  await until(() => c.status === 'reconnecting', 'the client to notice')
  const started = Date.now()
  await t.rejects(store.append('s.1', event('s.1.1')), { code: 'FST_ERR_MCP_SSE_REDIS_UNAVAILABLE' })
  await t.rejects(store.after('s.1.0'), { code: 'FST_ERR_MCP_SSE_REDIS_UNAVAILABLE' })
  t.ok(Date.now() - started < 500, 'nothing waited for the connection')
  await redis.up()
  await until(() => c.status === 'ready', 'the client to reconnect')
  // The client's offline queue sent nothing; the store kept the event and wrote it once.
  await until(async () => await c.xlen('mcp:events:s') > 0, 'the kept event to be written')
  t.equal(await c.xlen('mcp:events:s'), 1, 'the append was not queued by the client: written once, by the store, when Redis came back')
  t.same(ids(await store.after('s.1.0')), ['s.1.1'], 'and replayed, not lost')
  await store.close()
  t.equal(c.status, 'ready', 'close() left the client alone')
})

t.test('a connection that closes under a command: after() rejects with FST_ERR_MCP_SSE_REDIS_UNAVAILABLE', async t => {
  const c = await client(t)
  const store = new RedisEventStore({ client: c })
  c.disconnect() // the status is still 'ready' until the socket closes
  await t.rejects(store.after('s.1.0'), { code: 'FST_ERR_MCP_SSE_REDIS_UNAVAILABLE', message: /Connection is closed/ })
})

t.test('a command that fails on a ready connection rejects after() with FST_ERR_MCP_SSE_REDIS_UNAVAILABLE', async t => {
  const { keyPrefix, sid, key } = scope(t)
  const store = new RedisEventStore({ client: await client(t), keyPrefix })
  await admin.set(key(), 'not a stream')
  await t.rejects(store.after(`${sid}.1.0`), { code: 'FST_ERR_MCP_SSE_REDIS_UNAVAILABLE', message: /WRONGTYPE/ })
})

t.test('events made while Redis is down are kept, replayed in order and written once it is back; a replay with a hole is refused, never skipped', async t => {
  const redis = await PrivateRedis.start(t)
  const sid = randomUUID()
  const store = new RedisEventStore({ url: redis.url })
  t.teardown(() => store.close())
  const up = (): Promise<boolean> => store.after(`${sid}.9.0`).then(() => true, () => false)
  await until(up, 'the store to connect')
  await store.append(`${sid}.1`, event(`${sid}.1.1`))
  await store.append(`${sid}.1`, event(`${sid}.1.2`))
  await redis.down()
  await until(async () => !await up(), 'the store to notice')
  for (const n of [3, 4]) {
    await t.rejects(store.append(`${sid}.1`, event(`${sid}.1.${n}`)), { code: 'FST_ERR_MCP_SSE_REDIS_UNAVAILABLE' }, `append ${n} fails at once`)
  }
  await t.rejects(store.after(`${sid}.1.2`), { code: 'FST_ERR_MCP_SSE_REDIS_UNAVAILABLE', statusCode: 503 }, 'no replay while Redis is away')
  // Restarted empty: events 1 and 2 went with the old Redis.
  await redis.up()
  await until(up, 'the store to reconnect')
  t.same(await store.after(`${sid}.1.2`), { streamId: `${sid}.1`, events: [event(`${sid}.1.3`), event(`${sid}.1.4`)] }, 'the events made while it was down, in order')
  t.equal(await store.after(`${sid}.1.0`), undefined, 'a replay from before them would skip 1 and 2: refused')
  t.equal(await store.after(`${sid}.1.1`), undefined, 'from 1 too')
  await store.append(`${sid}.1`, event(`${sid}.1.5`))
  t.same(ids(await store.after(`${sid}.1.2`)), [3, 4, 5].map(n => `${sid}.1.${n}`), 'and the ones after, once each')
  const direct = new Redis(redis.url, { maxRetriesPerRequest: 1 })
  t.teardown(() => direct.quit())
  await until(async () => await direct.xlen(`mcp:events:${sid}`) === 3, 'the kept events to be written')
  const other = new RedisEventStore({ client: direct })
  t.same(ids(await other.after(`${sid}.1.2`)), [3, 4, 5].map(n => `${sid}.1.${n}`), 'written to Redis in order: another instance replays them too')
  t.same(ids(await store.after(`${sid}.1.3`)), [4, 5].map(n => `${sid}.1.${n}`), 'nothing twice once written')
})

t.test('a replay whose stream has a hole in the middle is refused', async t => {
  const { keyPrefix, sid } = scope(t)
  const store = new RedisEventStore({ client: await client(t), keyPrefix })
  for (const n of [1, 2, 4]) await store.append(`${sid}.1`, event(`${sid}.1.${n}`))
  t.same(ids(await store.after(`${sid}.1.2`)), undefined, 'event 3 is missing')
  t.same(ids(await store.after(`${sid}.1.3`)), [`${sid}.1.4`], 'after it, exact')
})

t.test('an append that Redis refuses on a ready connection is kept too, the session\'s later ones behind it, at most maxEvents of them; dropSession forgets them', async t => {
  const { keyPrefix, sid, key } = scope(t)
  const store = new RedisEventStore({ client: await client(t), keyPrefix, maxEvents: 2 })
  await admin.set(key(), 'not a stream')
  await t.rejects(store.append(`${sid}.1`, event(`${sid}.1.1`)), { code: 'FST_ERR_MCP_SSE_REDIS_UNAVAILABLE', message: /WRONGTYPE/ })
  for (const n of [2, 3]) {
    await t.rejects(store.append(`${sid}.1`, event(`${sid}.1.${n}`)), { code: 'FST_ERR_MCP_SSE_REDIS_UNAVAILABLE' }, `append ${n} waits behind event 1: kept, not written`)
  }
  await admin.del(key())
  t.same(ids(await store.after(`${sid}.1.1`)), [`${sid}.1.2`, `${sid}.1.3`], 'replayed from the instance that kept them')
  t.equal(await store.after(`${sid}.1.0`), undefined, 'event 1 went past maxEvents: refused, not skipped')
  await store.dropSession(sid)
  t.same(await store.after(`${sid}.1.1`), { streamId: `${sid}.1`, events: [] }, 'a dropped session keeps nothing')
})
