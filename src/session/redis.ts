import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import { Redis, type RedisOptions } from 'ioredis'
import type { IncomingHttpHeaders } from 'node:http'
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js'
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js'
import { FST_ERR_MCP_SSE_REDIS_UNAVAILABLE } from '../errors.js'
import type { SseSession } from './session.js'
import { MemorySessionStore, type McpSessionInfo } from './store.js'

/** Sharing sessions between instances through Redis. */
export interface McpRedisOptions {
  /** An `ioredis` client you own (the plugin duplicates it for pub/sub and never quits it). */
  client?: Redis
  /** Or a Redis URL, such as "redis://127.0.0.1:6379"; the plugin owns those connections. */
  url?: string
  /** Prefix of every key and channel. @default "mcp:" */
  keyPrefix?: string
  /**
   * How long a session's registry entry lives without a refresh, in ms. Live sessions are
   * refreshed every third of it; an instance that dies leaves entries that expire.
   * @default 60000
   */
  sessionTtl?: number
  /** How long `register` waits for Redis before failing. @default 5000 */
  connectTimeout?: number
}

/** What one instance publishes to another: POSTed messages for a session it holds. */
interface Envelope {
  /** session id */
  s: string
  /** messages, in arrival order */
  m: JSONRPCMessage[]
  /** request headers (extra.requestInfo) */
  h: IncomingHttpHeaders
  /** extra.authInfo, when the POST was authenticated */
  a?: AuthInfo
  /** the principal that posted, when authenticated */
  p?: string
}

export type RouteResult = 'delivered' | 'not_found' | 'forbidden'

/** Who posted a forwarded message, when the POST was authenticated. */
export interface ForwardAuth {
  authInfo: AuthInfo
  principal: string
}

/** Where a session lives, as another instance last looked it up. */
interface Route {
  owner: string
  principal: string | undefined
  until: number
}

/** How long a looked-up owner is reused; ended sessions are also announced at once. */
const ROUTE_CACHE_MS = 5_000
const ROUTE_CACHE_MAX = 100_000

/**
 * The session store of a cluster: sessions live in this process (streams cannot move),
 * and a Redis hash per session says which instance holds it and for whom. A POST that
 * lands on the wrong instance is published to the owner's channel (one channel per
 * instance, not per session) and delivered there in order.
 */
export class RedisSessionStore extends MemorySessionStore {
  readonly instanceId = randomUUID()
  readonly #prefix: string
  readonly #ttl: number
  readonly #channel: string
  readonly #log: FastifyBaseLogger
  readonly #ownsClient: boolean
  readonly #cmd: Redis
  readonly #sub: Redis
  readonly #connectTimeout: number
  #refreshTimer: NodeJS.Timeout | undefined
  #healthy = true
  /** Per-session chains of messages waiting for their session's lookup, in arrival order. */
  #chains = new Map<string, Promise<unknown>>()
  /** Owners (and principals) of sessions held elsewhere, as last looked up. */
  #routes = new Map<string, Route>()
  /** Ended sessions are announced here, so other instances drop their cached routes. */
  readonly #closedChannel: string

  constructor (options: McpRedisOptions, log: FastifyBaseLogger) {
    super()
    this.#prefix = options.keyPrefix ?? 'mcp:'
    this.#ttl = options.sessionTtl ?? 60_000
    this.#connectTimeout = options.connectTimeout ?? 5_000
    this.#channel = `${this.#prefix}instance:${this.instanceId}`
    this.#closedChannel = `${this.#prefix}closed`
    this.#log = log
    // Fail fast while Redis is away (503 to the client) instead of queueing POSTs forever.
    const ours: RedisOptions = {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: this.#connectTimeout,
      retryStrategy: times => Math.min(100 * times, 2000)
    }
    if (options.client !== undefined) {
      this.#ownsClient = false
      this.#cmd = options.client
      this.#sub = options.client.duplicate({ ...ours, enableOfflineQueue: true })
    } else {
      this.#ownsClient = true
      this.#cmd = new Redis(options.url as string, ours)
      this.#sub = new Redis(options.url as string, { ...ours, enableOfflineQueue: true })
    }
    for (const client of [this.#cmd, this.#sub]) {
      client.on('error', this.#onError)
    }
    this.#cmd.on('ready', this.#onReady)
    this.#sub.on('messageBuffer', this.#onMessage)
  }

  #key (id: string): string {
    return `${this.#prefix}session:${id}`
  }

  #onError = (err: Error): void => {
    // ioredis reports every failed reconnect; log the transition, not each attempt.
    if (this.#healthy) {
      this.#healthy = false
      this.#log.warn({ err }, 'fastify-mcp-sse: Redis connection lost; cross-instance messages answer 503 until it is back')
    }
  }

  #onReady = (): void => {
    if (!this.#healthy) {
      this.#healthy = true
      this.#log.info('fastify-mcp-sse: Redis connection back; re-registering this instance\'s sessions')
      void this.#refresh()
    }
  }

  /** Connects, subscribes and starts refreshing; rejects with a clear error if Redis is unreachable. */
  async start (): Promise<void> {
    const connect = async (client: Redis): Promise<void> => {
      if (client.status === 'ready') return
      if (client.status === 'wait') await client.connect()
      else await new Promise<void>((resolve, reject) => {
        client.once('ready', resolve)
        client.once('end', () => reject(new Error('connection ended')))
      })
    }
    let timer: NodeJS.Timeout | undefined
    try {
      await Promise.race([
        Promise.all([connect(this.#cmd), connect(this.#sub)]),
        new Promise((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`no answer within ${this.#connectTimeout} ms`)), this.#connectTimeout) })
      ])
      await this.#sub.subscribe(this.#channel, this.#closedChannel)
    } catch (err) {
      await this.#disconnect()
      throw new FST_ERR_MCP_SSE_REDIS_UNAVAILABLE((err as Error).message)
    } finally {
      clearTimeout(timer)
    }
    this.#refreshTimer = setInterval(() => { void this.#refresh() }, Math.max(50, Math.floor(this.#ttl / 3)))
    this.#refreshTimer.unref()
  }

  /** True while both connections are up. */
  get connected (): boolean {
    return this.#cmd.status === 'ready' && this.#sub.status === 'ready'
  }

  override add (session: SseSession): void {
    super.add(session)
    this.#register(session).catch(err => {
      this.#log.warn({ err, sessionId: session.id }, 'fastify-mcp-sse: could not register the session in Redis (it is retried)')
    })
  }

  override delete (id: string): boolean {
    const had = super.delete(id)
    if (had && this.#cmd.status === 'ready') {
      this.#cmd.del(this.#key(id)).catch(() => {})
      this.#cmd.publish(this.#closedChannel, id).catch(() => {})
    }
    return had
  }

  async #register (session: SseSession): Promise<void> {
    if (this.#cmd.status !== 'ready') return // the refresh re-registers it once Redis is back
    const fields: Record<string, string> = { owner: this.instanceId, createdAt: String(session.createdAt) }
    if (session.principal !== undefined) fields.principal = session.principal
    await this.#cmd.multi().hset(this.#key(session.id), fields).pexpire(this.#key(session.id), this.#ttl).exec()
  }

  /** Keeps the entries of live sessions fresh; re-creates any that Redis lost. */
  async #refresh (): Promise<void> {
    if (this.#cmd.status !== 'ready' || this.size === 0) return
    const sessions = [...this] as SseSession[]
    try {
      const pipeline = this.#cmd.pipeline()
      for (const s of sessions) pipeline.pexpire(this.#key(s.id), this.#ttl)
      const results = await pipeline.exec() ?? []
      const lost = sessions.filter((_s, i) => results[i]?.[1] === 0)
      await Promise.all(lost.map(s => this.#register(s)))
    } catch (err) {
      this.#log.debug({ err }, 'fastify-mcp-sse: refreshing sessions in Redis failed')
    }
  }

  override async lookup (id: string): Promise<McpSessionInfo | undefined> {
    const local = await super.lookup(id)
    if (local !== undefined) return local
    this.#requireReady()
    const entry = await this.#cmd.hgetall(this.#key(id))
    if (entry.owner === undefined) return undefined
    return {
      id,
      local: false,
      owner: entry.owner,
      principal: entry.principal,
      createdAt: Number(entry.createdAt)
    }
  }

  #requireReady (): void {
    if (this.#cmd.status !== 'ready') throw new FST_ERR_MCP_SSE_REDIS_UNAVAILABLE('the connection is down')
  }

  /**
   * Binds a session that was opened without credentials to the first principal that
   * posts to it, cluster-wide. Resolves with the session's principal after the call.
   */
  async bindPrincipal (id: string, principal: string): Promise<string | undefined> {
    this.#requireReady()
    const [, owner] = await this.#cmd.multi().hsetnx(this.#key(id), 'principal', principal).hget(this.#key(id), 'principal').exec() ?? []
    return (owner?.[1] as string | null) ?? undefined
  }

  /**
   * Hands messages for a session this instance does not hold to its owner. Rejects with
   * FST_ERR_MCP_SSE_REDIS_UNAVAILABLE while Redis is down.
   *
   * Order: PUBLISH commands go out on one connection in the order they are issued, and
   * Redis delivers them in that order. So a message is published at once when the
   * session's owner is known (cached) and nothing for that session is still waiting;
   * otherwise it queues behind the session's pending lookup, in arrival order.
   */
  route (id: string, messages: JSONRPCMessage[], headers: IncomingHttpHeaders, auth: ForwardAuth | undefined): Promise<RouteResult> {
    this.#requireReady()
    const cached = this.#routes.get(id)
    if (cached !== undefined && cached.until > Date.now() && !this.#chains.has(id) &&
        (auth === undefined || cached.principal !== undefined)) {
      return this.#publish(id, cached, messages, headers, auth)
    }
    const previous = this.#chains.get(id) ?? Promise.resolve()
    // Resolves once this message's PUBLISH is issued (or it was refused); the boxed
    // promise is its outcome.
    const step = previous.then(async (): Promise<{ outcome: Promise<RouteResult> }> => {
      const route = await this.#resolve(id, auth)
      return { outcome: typeof route === 'string' ? Promise.resolve(route) : this.#publish(id, route, messages, headers, auth) }
    })
    this.#chains.set(id, step)
    const forget = (): void => { if (this.#chains.get(id) === step) this.#chains.delete(id) }
    step.then(forget, forget)
    return step.then(x => x.outcome)
  }

  /** Looks the session up (binding an unbound one to the poster) and caches the answer. */
  async #resolve (id: string, auth: ForwardAuth | undefined): Promise<Route | 'not_found'> {
    this.#requireReady()
    const entry = await this.#cmd.hmget(this.#key(id), 'owner', 'principal')
    const owner = entry[0]
    if (owner === null || owner === undefined) {
      this.#routes.delete(id)
      return 'not_found'
    }
    let principal = entry[1] ?? undefined
    if (auth !== undefined && principal === undefined) principal = await this.bindPrincipal(id, auth.principal)
    if (this.#routes.size >= ROUTE_CACHE_MAX) this.#routes.clear()
    const route: Route = { owner, principal, until: Date.now() + ROUTE_CACHE_MS }
    this.#routes.set(id, route)
    return route
  }

  /** Issues the PUBLISH now (synchronously), checks the principal first. */
  #publish (id: string, route: Route, messages: JSONRPCMessage[], headers: IncomingHttpHeaders, auth: ForwardAuth | undefined): Promise<RouteResult> {
    if (auth !== undefined && route.principal !== auth.principal) return Promise.resolve('forbidden')
    const envelope: Envelope = { s: id, m: messages, h: headers }
    if (auth !== undefined) {
      envelope.a = auth.authInfo
      envelope.p = auth.principal
    }
    return this.#cmd.publish(`${this.#prefix}instance:${route.owner}`, JSON.stringify(envelope)).then(async receivers => {
      if (receivers > 0) return 'delivered'
      // Nobody listens on the owner's channel: that instance is gone. Drop its entry
      // (unless a live owner re-registered it meanwhile) so the id stops resolving.
      this.#routes.delete(id)
      await this.#cmd.eval(
        "if redis.call('hget', KEYS[1], 'owner') == ARGV[1] then return redis.call('del', KEYS[1]) end return 0",
        1, this.#key(id), route.owner)
      return 'not_found'
    })
  }

  #onMessage = (channel: Buffer, payload: Buffer): void => {
    if (channel.length === this.#closedChannel.length && channel.toString() === this.#closedChannel) {
      this.#routes.delete(payload.toString())
      return
    }
    let envelope: Envelope
    try {
      envelope = JSON.parse(payload.toString('utf8')) as Envelope
    } catch {
      return
    }
    const session = this.get(envelope.s) as SseSession | undefined
    if (session === undefined || !session.transport.isOpen) {
      this.#log.debug({ sessionId: envelope.s }, 'fastify-mcp-sse: dropped forwarded messages for a session that has ended')
      return
    }
    if (envelope.p !== undefined && session.principal === undefined && envelope.a !== undefined) {
      session.bindInfo(envelope.p, envelope.a)
    }
    const extra = envelope.a === undefined
      ? { requestInfo: { headers: envelope.h } }
      : { requestInfo: { headers: envelope.h }, authInfo: envelope.a }
    try {
      for (const message of envelope.m) session.transport.receive(message, extra)
    } catch (err) {
      this.#log.error({ err, sessionId: envelope.s }, 'fastify-mcp-sse: the session\'s message handler threw on a forwarded message')
    }
  }

  /** Forgets this instance's sessions in Redis, unsubscribes, and closes its connections. */
  async shutdown (): Promise<void> {
    clearInterval(this.#refreshTimer)
    if (this.#cmd.status === 'ready' && this.size > 0) {
      await this.#cmd.del(...[...this.ids()].map(id => this.#key(id))).catch(() => {})
    }
    await this.#disconnect()
  }

  async #disconnect (): Promise<void> {
    const quit = async (client: Redis): Promise<void> => {
      if (client.status === 'ready') await client.quit().catch(() => client.disconnect())
      else client.disconnect()
    }
    await quit(this.#sub)
    if (this.#ownsClient) await quit(this.#cmd)
    else {
      this.#cmd.off('error', this.#onError)
      this.#cmd.off('ready', this.#onReady)
    }
  }
}
