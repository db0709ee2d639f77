import { randomUUID } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import type { FastifyBaseLogger } from 'fastify'
import { Redis, type RedisOptions } from 'ioredis'
import { toAuthInfo } from '../auth/types.js'
import { FST_ERR_MCP_SSE_REDIS_UNAVAILABLE } from '../errors.js'
import type { JsonRpcMessage, McpAuthInfo } from '../mcp.js'
import type { ResolvedRedis } from '../options.js'
import type { AuthResult } from '../auth/types.js'
import { ChangeListeners, type ChangeEvent, type ClusterHost, type Delivery, type DeliveryResult, type SessionCluster, type StreamableOp } from './cluster.js'
import { RelayedAnswer, RelaySink, type AnswerFrame } from './relay.js'
import type { Session } from './session.js'
import type { McpSessionInfo } from './types.js'

/** What one instance publishes to another: HTTP+SSE messages for a session it holds. */
interface Envelope {
  t: 'm'
  /** session id */
  s: string
  /** messages, in arrival order */
  m: JsonRpcMessage[]
  /** request headers (extra.requestInfo) */
  h: IncomingHttpHeaders
  /** path and query of the POST */
  u: string
  /** extra.authInfo, when the POST was authenticated */
  a?: McpAuthInfo
  /** the principal that posted, when authenticated */
  p?: string
}

/** A Streamable HTTP request relayed to the session's owner. */
interface RelayRequest {
  t: 'q'
  /** the instance the client is talking to, where the answer goes */
  r: string
  /** that instance's key of the request */
  k: number
  s: string
  q: StreamableOp
  a?: McpAuthInfo
  p?: string
}

/** Part of the answer to a relayed request, back to the instance the client is talking to. */
interface Answer extends AnswerFrame {
  t: 'a'
  k: number
}

/** The client of a relayed request left before its answer was complete (`o`: cut off for not reading). */
interface ClientGone {
  t: 'c'
  r: string
  k: number
  o?: 1
}

type Frame = Envelope | RelayRequest | Answer | ClientGone

/** How often an instance waiting on relayed answers checks that their owners are still there. */
const OWNER_CHECK_MS = 1_000

/**
 * How long, after this instance's link to Redis comes back, a session missing from the
 * registry is taken for one not re-registered yet (Redis may have restarted empty, and
 * its owner's link may come back later than ours): 503 with Retry-After, not 404, and
 * no entry is deleted for an owner that does not listen yet.
 */
const RECOVERY_GRACE_MS = 5_000

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
 * The cluster part of the store when instances share sessions: a Redis hash per session
 * says which instance holds it and for whom. Messages for a session held elsewhere are
 * published to the owner's channel (one channel per instance, not per session) and
 * delivered there in order.
 */
export class RedisCluster implements SessionCluster {
  readonly instanceId = randomUUID()
  readonly #prefix: string
  readonly #ttl: number
  readonly #channel: string
  readonly #log: FastifyBaseLogger
  readonly #ownsClient: boolean
  readonly #cmd: Redis
  readonly #sub: Redis
  readonly #connectTimeout: number
  readonly #relayTimeout: number
  #host: ClusterHost | undefined
  #refreshTimer: NodeJS.Timeout | undefined
  #healthy = true
  /** The command connection closed since it was last ready (set only once started). */
  #linkLost = false
  #recoveredAt = 0
  /** Per-session chains of messages waiting for their session's lookup, in arrival order. */
  #chains = new Map<string, Promise<unknown>>()
  /** Owners (and principals) of sessions held elsewhere, as last looked up. */
  #routes = new Map<string, Route>()
  /** Ended sessions are announced here, so other instances drop their cached routes. */
  readonly #closedChannel: string
  /** Relayed requests of this instance's clients, waiting on answers, by key. */
  readonly #relays = new Map<number, RelayedAnswer>()
  #relayKey = 0
  #ownerCheck: NodeJS.Timeout | undefined
  /** Answers this instance is writing for other instances' clients, by `<instance>:<key>`. */
  readonly #sinks = new Map<string, RelaySink>()
  /** Change events for listen streams: published here, delivered on every instance. */
  readonly #changesChannel: string
  readonly #changes: ChangeListeners

  constructor (options: ResolvedRedis, log: FastifyBaseLogger) {
    this.#prefix = options.keyPrefix
    this.#ttl = options.sessionTtl
    this.#connectTimeout = options.connectTimeout
    this.#relayTimeout = options.relayTimeout
    this.#channel = `${this.#prefix}instance:${this.instanceId}`
    this.#closedChannel = `${this.#prefix}closed`
    this.#changesChannel = `${this.#prefix}changes`
    this.#log = log
    this.#changes = new ChangeListeners(err => { log.error({ err }, 'fastify-mcp-sse: a change listener threw') })
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
    this.#cmd.on('close', this.#onCommandClosed)
    this.#sub.on('messageBuffer', this.#onMessage)
    this.#sub.on('close', this.#onSubscriberLost)
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

  #onCommandClosed = (): void => {
    if (this.#refreshTimer !== undefined) this.#linkLost = true
  }

  #onReady = (): void => {
    if (!this.#healthy || this.#linkLost) {
      this.#healthy = true
      this.#linkLost = false
      this.#recoveredAt = Date.now()
      this.#log.info('fastify-mcp-sse: Redis connection back; re-registering this instance\'s sessions')
      // At once: Redis may have restarted empty, and others look our sessions up now.
      void this.#refresh()
    }
  }

  /** Within the grace after our link came back: a registry miss may be an owner not re-registered yet. */
  get #recovering (): boolean {
    return this.#recoveredAt !== 0 && Date.now() - this.#recoveredAt < RECOVERY_GRACE_MS
  }

  #notYetRegistered (): Error {
    return new FST_ERR_MCP_SSE_REDIS_UNAVAILABLE('the connection is back and the session\'s owner has not re-registered it yet')
  }

  /** Connects, subscribes and starts refreshing; rejects with a clear error if Redis is unreachable. */
  async start (host: ClusterHost): Promise<void> {
    this.#host = host
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
      await this.#sub.subscribe(this.#channel, this.#closedChannel, this.#changesChannel)
    } catch (err) {
      await this.#disconnect()
      throw new FST_ERR_MCP_SSE_REDIS_UNAVAILABLE((err as Error).message)
    } finally {
      clearTimeout(timer)
    }
    this.#refreshTimer = setInterval(() => { void this.#refresh() }, Math.max(50, Math.floor(this.#ttl / 3)))
    this.#refreshTimer.unref()
    this.#log.info({ instanceId: this.instanceId }, 'fastify-mcp-sse: sharing sessions through Redis')
  }

  /** True while both connections are up. */
  get connected (): boolean {
    return this.#cmd.status === 'ready' && this.#sub.status === 'ready'
  }

  /** The command connection, for others that keep state in the same Redis (rate limits). */
  get commandClient (): Redis {
    return this.#cmd
  }

  added (session: Session): void {
    this.#register(session).catch(err => {
      this.#log.warn({ err, sessionId: session.id }, 'fastify-mcp-sse: could not register the session in Redis (it is retried)')
    })
  }

  removed (id: string): void {
    if (this.#cmd.status === 'ready') {
      this.#cmd.del(this.#key(id)).catch(() => {})
      this.#cmd.publish(this.#closedChannel, id).catch(() => {})
    }
  }

  async #register (session: Session): Promise<void> {
    if (this.#cmd.status !== 'ready') return // the refresh re-registers it once Redis is back
    const fields: Record<string, string> = { owner: this.instanceId, createdAt: String(session.createdAt) }
    if (session.principal !== undefined) fields.principal = session.principal
    await this.#cmd.multi().hset(this.#key(session.id), fields).pexpire(this.#key(session.id), this.#ttl).exec()
  }

  /** Keeps the entries of live sessions fresh; re-creates any that Redis lost. */
  async #refresh (): Promise<void> {
    const sessions = this.#host === undefined ? [] : [...this.#host.sessions()]
    if (this.#cmd.status !== 'ready' || sessions.length === 0) return
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

  async lookup (id: string): Promise<McpSessionInfo | undefined> {
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

  async claim (id: string, principal: string): Promise<string | undefined> {
    this.#requireReady()
    const [, owner] = await this.#cmd.multi().hsetnx(this.#key(id), 'principal', principal).hget(this.#key(id), 'principal').exec() ?? []
    return (owner?.[1] as string | null) ?? undefined
  }

  /**
   * Hands HTTP+SSE messages for a session this instance does not hold to its owner.
   * Rejects with FST_ERR_MCP_SSE_REDIS_UNAVAILABLE while Redis is down.
   */
  forward (id: string, delivery: Delivery): Promise<DeliveryResult> {
    const auth = delivery.auth
    return this.#toOwner(id, auth?.principal, route => {
      const envelope: Envelope = { t: 'm', s: id, m: delivery.messages, h: delivery.headers, u: delivery.url }
      if (auth !== undefined) {
        envelope.a = toAuthInfo(auth)
        envelope.p = auth.principal
      }
      return this.#publish(id, route, envelope).then(received => received ? 'delivered' : 'not_found')
    })
  }

  /**
   * Relays a Streamable HTTP request to the owner of its session; its answer comes back
   * on this instance's channel. Rejects with FST_ERR_MCP_SSE_REDIS_UNAVAILABLE while Redis is down.
   */
  relay (id: string, op: StreamableOp, auth: AuthResult | undefined): Promise<RelayedAnswer | DeliveryResult> {
    return this.#toOwner(id, auth?.principal, route => {
      const key = ++this.#relayKey
      const ownerChannel = `${this.#prefix}instance:${route.owner}`
      const answer = new RelayedAnswer(key, route.owner, cutOff => {
        const gone: ClientGone = { t: 'c', r: this.instanceId, k: key }
        if (cutOff) gone.o = 1
        this.#cmd.publish(ownerChannel, JSON.stringify(gone)).catch(() => {})
      }, () => { this.#relays.delete(key) }, this.#relayTimeout)
      // Registered before the request goes out: its answer can come before PUBLISH returns.
      this.#relays.set(key, answer)
      this.#watchOwners()
      const request: RelayRequest = { t: 'q', r: this.instanceId, k: key, s: id, q: op }
      if (auth !== undefined) {
        request.a = toAuthInfo(auth)
        request.p = auth.principal
      }
      return this.#publish(id, route, request).then(received => {
        if (received) return answer
        answer.drop()
        return 'not_found'
      }, (err: unknown) => {
        answer.drop()
        throw err
      })
    })
  }

  /**
   * Sends something to the owner of session `id`, after the principal check.
   *
   * Order: PUBLISH commands go out on one connection in the order they are issued, and
   * Redis delivers them in that order. So a message is published at once when the
   * session's owner is known (cached) and nothing for that session is still waiting;
   * otherwise it queues behind the session's pending lookup, in arrival order.
   */
  #toOwner<T> (id: string, principal: string | undefined, send: (route: Route) => Promise<T | DeliveryResult>): Promise<T | DeliveryResult> {
    this.#requireReady()
    const checked = (route: Route): Promise<T | DeliveryResult> =>
      principal !== undefined && route.principal !== principal ? Promise.resolve('forbidden') : send(route)
    const cached = this.#routes.get(id)
    if (cached !== undefined && cached.until > Date.now() && !this.#chains.has(id) &&
        (principal === undefined || cached.principal !== undefined)) {
      return checked(cached)
    }
    const previous = this.#chains.get(id) ?? Promise.resolve()
    // Resolves once this message's PUBLISH is issued (or it was refused); the boxed
    // promise is its outcome.
    const step = previous.then(async (): Promise<{ outcome: Promise<T | DeliveryResult> }> => {
      const route = await this.#resolve(id, principal)
      if (route === 'not_found' && this.#recovering) throw this.#notYetRegistered()
      return { outcome: typeof route === 'string' ? Promise.resolve(route) : checked(route) }
    })
    this.#chains.set(id, step)
    const forget = (): void => { if (this.#chains.get(id) === step) this.#chains.delete(id) }
    step.then(forget, forget)
    return step.then(x => x.outcome)
  }

  /** Looks the session up (binding an unbound one to the poster) and caches the answer. */
  async #resolve (id: string, poster: string | undefined): Promise<Route | 'not_found'> {
    this.#requireReady()
    const entry = await this.#cmd.hmget(this.#key(id), 'owner', 'principal')
    const owner = entry[0]
    if (owner === null || owner === undefined) {
      this.#routes.delete(id)
      return 'not_found'
    }
    let principal = entry[1] ?? undefined
    if (poster !== undefined && principal === undefined) principal = await this.claim(id, poster)
    if (this.#routes.size >= ROUTE_CACHE_MAX) this.#routes.clear()
    const route: Route = { owner, principal, until: Date.now() + ROUTE_CACHE_MS }
    this.#routes.set(id, route)
    return route
  }

  /** Issues the PUBLISH now (synchronously); resolves false when the owner is gone. */
  #publish (id: string, route: Route, frame: Envelope | RelayRequest): Promise<boolean> {
    return this.#cmd.publish(`${this.#prefix}instance:${route.owner}`, JSON.stringify(frame)).then(async receivers => {
      if (receivers > 0) return true
      // The owner's subscription may not be back yet: neither gone nor to be deleted.
      if (this.#recovering) throw this.#notYetRegistered()
      await this.#ownerGone(id, route.owner)
      return false
    })
  }

  /**
   * Nobody listens on an owner's channel: that instance is gone. Drop its entry (unless a
   * live owner re-registered it meanwhile) so the id stops resolving.
   */
  async #ownerGone (id: string, owner: string): Promise<void> {
    this.#routes.delete(id)
    await this.#cmd.eval(
      "if redis.call('hget', KEYS[1], 'owner') == ARGV[1] then return redis.call('del', KEYS[1]) end return 0",
      1, this.#key(id), owner)
  }

  /** While answers are awaited, checks now and then that their owners still listen. */
  #watchOwners (): void {
    if (this.#ownerCheck !== undefined) return
    this.#ownerCheck = setInterval(() => { void this.#checkOwners() }, OWNER_CHECK_MS)
    this.#ownerCheck.unref()
  }

  async #checkOwners (): Promise<void> {
    if (this.#relays.size === 0) {
      clearInterval(this.#ownerCheck)
      this.#ownerCheck = undefined
      return
    }
    if (this.#cmd.status !== 'ready' || this.#recovering) return
    const owners = [...new Set(Array.from(this.#relays.values(), a => a.owner))]
    try {
      const counts = await this.#cmd.pubsub('NUMSUB', ...owners.map(o => `${this.#prefix}instance:${o}`)) as Array<string | number>
      const gone = new Set(owners.filter((_o, i) => Number(counts[2 * i + 1]) === 0))
      if (gone.size === 0) return
      for (const answer of [...this.#relays.values()]) if (gone.has(answer.owner)) answer.ownerGone()
    } catch (err) {
      this.#log.debug({ err }, 'fastify-mcp-sse: checking the owners of relayed requests failed')
    }
  }

  /**
   * The subscription is lost: answers can no longer arrive, nor word of clients that left.
   * Relayed answers end (a stream's client resumes later); answers written for other
   * instances end too.
   */
  #onSubscriberLost = (): void => {
    for (const answer of [...this.#relays.values()]) answer.linkLost()
    for (const sink of [...this.#sinks.values()]) sink.gone()
  }

  /**
   * Publishes a change to every instance; this one delivers it when it comes back from
   * Redis, like everyone else. While Redis is away only this instance's listeners get it.
   */
  publishChange (event: ChangeEvent): void {
    if (this.#cmd.status !== 'ready') {
      this.#log.warn({ event }, 'fastify-mcp-sse: Redis is unavailable; a change event reached this instance\'s listen streams only')
      this.#changes.emit(event)
      return
    }
    this.#cmd.publish(this.#changesChannel, JSON.stringify(event)).catch((err: unknown) => {
      this.#log.warn({ err, event }, 'fastify-mcp-sse: publishing a change event failed; it reached this instance\'s listen streams only')
      this.#changes.emit(event)
    })
  }

  onChange (listener: (event: ChangeEvent) => void): () => void {
    return this.#changes.add(listener)
  }

  #onMessage = (channel: Buffer, payload: Buffer): void => {
    if (channel.length === this.#closedChannel.length && channel.toString() === this.#closedChannel) {
      this.#routes.delete(payload.toString())
      return
    }
    if (channel.length === this.#changesChannel.length && channel.toString() === this.#changesChannel) {
      this.#receiveChange(payload)
      return
    }
    let frame: Frame
    try {
      frame = JSON.parse(payload.toString('utf8')) as Frame
    } catch {
      return
    }
    switch (frame.t) {
      case 'm':
        this.#host?.receiveForwarded(frame.s, { messages: frame.m, headers: frame.h, url: frame.u }, frame.p, frame.a)
        break
      case 'a':
        this.#relays.get(frame.k)?.receive(frame)
        break
      case 'q':
        this.#receiveRelayed(frame)
        break
      case 'c':
        this.#sinks.get(`${frame.r}:${frame.k}`)?.gone(frame.o === 1)
        break
    }
  }

  #receiveChange (payload: Buffer): void {
    let event: ChangeEvent
    try {
      event = JSON.parse(payload.toString('utf8')) as ChangeEvent
    } catch {
      return
    }
    this.#changes.emit(event)
  }

  /** A request another instance relayed for a session held here: its answer goes back there. */
  #receiveRelayed (request: RelayRequest): void {
    const sinkKey = `${request.r}:${request.k}`
    const channel = `${this.#prefix}instance:${request.r}`
    // Acknowledged before it is served: the receiving instance bounds only this wait, so
    // a long tool call (whose JSON answer comes when it is done) never times out.
    const ack: Answer = { t: 'a', k: request.k, a: 1 }
    this.#cmd.publish(channel, JSON.stringify(ack)).catch(() => {})
    const sink = new RelaySink(
      frame => this.#cmd.publish(channel, JSON.stringify({ t: 'a', k: request.k, ...frame })).then(n => n > 0),
      () => { this.#sinks.delete(sinkKey) }
    )
    this.#sinks.set(sinkKey, sink)
    this.#host?.receiveRelayed(request.s, request.q, request.p, request.a, sink)
  }

  /**
   * Ends the answers this instance writes for sessions held elsewhere (at close): a stream
   * ends, so its client resumes on another instance; an answer not begun is a 503.
   */
  endRelayed (): void {
    for (const answer of [...this.#relays.values()]) answer.shutdown()
  }

  /** Forgets this instance's sessions in Redis, unsubscribes, and closes its connections. */
  async shutdown (localIds: string[]): Promise<void> {
    clearInterval(this.#refreshTimer)
    clearInterval(this.#ownerCheck)
    this.#sub.off('close', this.#onSubscriberLost)
    this.endRelayed()
    if (this.#cmd.status === 'ready' && localIds.length > 0) {
      await this.#cmd.del(...localIds.map(id => this.#key(id))).catch(() => {})
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
      this.#cmd.off('close', this.#onCommandClosed)
    }
  }
}
