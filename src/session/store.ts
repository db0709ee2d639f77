import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import type { Redis } from 'ioredis'
import { FST_ERR_MCP_SSE_HANDLER_ERROR, FST_ERR_MCP_SSE_SESSION_NOT_FOUND, FST_ERR_MCP_SSE_TOO_MANY_SESSIONS } from '../errors.js'
import { toAuthInfo, type AuthResult } from '../auth/types.js'
import { MessageExtra, type JsonRpcMessage, type McpAuthInfo, type McpServerLike } from '../mcp.js'
import type { McpSessionContext } from '../options.js'
import type { IncomingHttpHeaders } from 'node:http'
import type { CloseReason, ReplyChannel, SessionTransport } from '../transports/transport.js'
import type { ChangeEvent, ClusterHost, Delivery, DeliveryResult, ServeStreamable, SessionCluster, StreamableOp } from './cluster.js'
import type { RelayedAnswer, RelaySink } from './relay.js'
import type { Telemetry } from '../telemetry.js'
import { Session } from './session.js'
import type { McpSessionInfo, McpSessionStore } from './types.js'

export interface SessionStoreOptions {
  /** Factory of one session's MCP server. */
  server: (context: McpSessionContext) => McpServerLike | Promise<McpServerLike>
  maxSessions: number
  /** Places under `maxSessions` held by what is not a session (2026-07-28 listen streams). */
  othersUnderCap?: () => number
  maxBufferedBytes: number
  cluster: SessionCluster
  /** Metrics and traces of every session's traffic. */
  telemetry: Telemetry
}

/** The revision a session negotiated, where its transport knows it (Streamable HTTP). */
function protocolVersionOf (transport: SessionTransport): string | undefined {
  return (transport as { protocolVersion?: string }).protocolVersion
}

/**
 * The one owner of sessions: it creates them (under the cap), decides who may post to
 * them (principal binding, here and across the cluster), delivers messages to them or
 * forwards them to the instance that holds them, and ends them, always in one place.
 * Routes ask; the store answers.
 */
export class SessionStore implements McpSessionStore, ClusterHost {
  readonly #sessions = new Map<string, Session>()
  readonly #opts: SessionStoreOptions
  readonly #cluster: SessionCluster
  readonly #log: FastifyBaseLogger
  /**
   * Sessions whose factory is still running count against the cap, so a burst of
   * connections cannot overshoot it.
   */
  #pending = 0
  /** Serves Streamable HTTP requests relayed from other instances (set by the entry). */
  #serveRelayed: ServeStreamable | undefined

  constructor (opts: SessionStoreOptions, log: FastifyBaseLogger) {
    this.#opts = opts
    this.#cluster = opts.cluster
    this.#log = log
  }

  // --- Reading (the public McpSessionStore) ----------------------------------------

  get size (): number {
    return this.#sessions.size
  }

  get (id: string): Session | undefined {
    return this.#sessions.get(id)
  }

  has (id: string): boolean {
    return this.#sessions.has(id)
  }

  ids (): IterableIterator<string> {
    return this.#sessions.keys()
  }

  [Symbol.iterator] (): IterableIterator<Session> {
    return this.#sessions.values()
  }

  sessions (): Iterable<Session> {
    return this.#sessions.values()
  }

  /** This instance's id in the cluster ("local" without Redis). */
  get instanceId (): string {
    return this.#cluster.instanceId
  }

  /** True while the link to the other instances is up (always, without Redis). */
  get connected (): boolean {
    return this.#cluster.connected
  }

  /** The Redis command connection of the cluster; undefined without Redis. */
  get redis (): Redis | undefined {
    return this.#cluster.commandClient
  }

  async lookup (id: string): Promise<McpSessionInfo | undefined> {
    const s = this.#sessions.get(id)
    if (s !== undefined) return { id, local: true, owner: this.#cluster.instanceId, principal: s.principal, createdAt: s.createdAt }
    return await this.#cluster.lookup(id)
  }

  async close (id: string): Promise<boolean> {
    const session = this.#sessions.get(id)
    if (session === undefined) return false
    await session.close('closed_by_store')
    return true
  }

  async closeAll (): Promise<void> {
    // Answers relayed here for sessions held elsewhere end too, or close() would wait on them.
    this.#cluster.endRelayed()
    await Promise.all(Array.from(this.#sessions.values(), s => s.close('server_shutdown')))
  }

  // --- Lifecycle ---------------------------------------------------------------------

  /** Publishes a change event to the listen streams of every instance. */
  publishChange (event: ChangeEvent): void {
    this.#cluster.publishChange(event)
  }

  /** Listens to change events published on any instance; returns the unsubscribe. */
  onChange (listener: (event: ChangeEvent) => void): () => void {
    return this.#cluster.onChange(listener)
  }

  /** Joins the cluster (a no-op when alone); rejects when its link cannot be made. */
  start (): Promise<void> {
    return this.#cluster.start(this)
  }

  /** Leaves the cluster once the sessions have ended. */
  shutdown (): Promise<void> {
    return this.#cluster.shutdown([...this.#sessions.keys()])
  }

  /** A new, unguessable session id. */
  newId (): string {
    return randomUUID()
  }

  /**
   * Runs the `server` factory for a session about to open, holding a place under
   * `maxSessions` while it runs. 503 past the cap; 500 when the factory throws.
   */
  async createServer (sessionId: string, request: FastifyRequest): Promise<McpServerLike> {
    if (this.#sessions.size + this.#pending + (this.#opts.othersUnderCap?.() ?? 0) >= this.#opts.maxSessions) {
      throw new FST_ERR_MCP_SSE_TOO_MANY_SESSIONS(this.#opts.maxSessions)
    }
    this.#pending++
    try {
      return await this.#opts.server({ sessionId, era: 'legacy', request, auth: request.mcpAuth ?? undefined })
    } catch (err) {
      request.log.error({ err, sessionId }, 'fastify-mcp-sse: the server factory threw')
      throw new FST_ERR_MCP_SSE_HANDLER_ERROR()
    } finally {
      this.#pending--
    }
  }

  /** Holds a session whose transport is about to start; it ends through {@link #end} only. */
  open (transport: SessionTransport, server: McpServerLike, request: FastifyRequest): Session {
    const session = new Session(transport, server, request.ip, request.mcpAuth ?? undefined)
    const log = request.log
    transport.onended = reason => { this.#end(session, reason, log) }
    const telemetry = this.#opts.telemetry
    transport.observer = telemetry.observe(session.id, session.kind, () => protocolVersionOf(transport))
    telemetry.sessionOpened(session.kind)
    this.#sessions.set(session.id, session)
    this.#cluster.added(session)
    return session
  }

  #end (session: Session, reason: CloseReason, log: FastifyBaseLogger): void {
    const sessionId = session.id
    if (this.#sessions.get(sessionId) === session) {
      this.#sessions.delete(sessionId)
      this.#cluster.removed(sessionId)
    }
    this.#opts.telemetry.sessionEnded(session.kind, session.createdAt, reason, protocolVersionOf(session.transport))
    if (reason === 'buffer_overflow') {
      log.warn({ sessionId, maxBufferedBytes: this.#opts.maxBufferedBytes }, 'fastify-mcp-sse: session closed, the client stopped reading and its buffer is full')
    } else {
      log.info({ sessionId, reason }, 'fastify-mcp-sse: session closed')
    }
    void session.releaseServer(err => log.error({ err, sessionId }, 'fastify-mcp-sse: the MCP server failed to close'))
  }

  // --- Delivery ------------------------------------------------------------------------

  /**
   * Hands a POST's messages to their session, in order: here when this instance holds it,
   * else through the cluster to the instance that does. A session belongs to one
   * principal; another gets 'forbidden', answered exactly like an unknown session.
   * Synchronous for a session held here and already bound (the hot path). Throws
   * FST_ERR_MCP_SSE_HANDLER_ERROR when the server's handler throws.
   */
  deliver (id: string, delivery: Delivery, log: FastifyBaseLogger): DeliveryResult | Promise<DeliveryResult> {
    const session = this.#sessions.get(id)
    if (session === undefined || !session.isOpen) {
      // Without Redis there is nowhere to forward to: an unknown session is not a forward.
      const forwarded = this.redis === undefined ? this.#cluster.forward(id, delivery) : this.#opts.telemetry.forwarded('forward', () => this.#cluster.forward(id, delivery), r => r)
      return this.#refused(forwarded, id, delivery.auth, log)
    }
    const admitted = this.#admit(session, delivery.auth, log)
    if (admitted instanceof Promise) return admitted.then(a => typeof a === 'string' ? a : this.#receive(a, delivery, log, this.#authInfo(a, delivery.auth)))
    return typeof admitted === 'string' ? admitted : this.#receive(admitted, delivery, log, this.#authInfo(admitted, delivery.auth))
  }

  /**
   * Hands a POST's messages to a session that {@link admit} returned (or the cluster
   * relayed a request for), with where their answers go: Streamable HTTP answers on the
   * POST's own response. 'not_found' if the session ended meanwhile. `authInfo` falls
   * back to the session's own.
   */
  deliverTo (session: Session, delivery: { messages: JsonRpcMessage[], headers: IncomingHttpHeaders, url: string, authInfo: McpAuthInfo | undefined, reply?: ReplyChannel }, log: FastifyBaseLogger): 'delivered' | 'not_found' {
    if (!session.isOpen) return 'not_found'
    return this.#receive(session, delivery, log, delivery.authInfo ?? session.authInfo)
  }

  /**
   * The session held here with this id, if `auth` may use it (for a GET or DELETE of
   * Streamable HTTP). Same rules as {@link deliver}: another principal gets 'forbidden'.
   */
  admit (id: string, auth: AuthResult | undefined, log: FastifyBaseLogger): Session | 'not_found' | 'forbidden' | Promise<Session | 'not_found' | 'forbidden'> {
    const session = this.#sessions.get(id)
    if (session === undefined || !session.isOpen) return 'not_found'
    return this.#admit(session, auth, log)
  }

  #admit (session: Session, auth: AuthResult | undefined, log: FastifyBaseLogger): Session | 'forbidden' | Promise<Session | 'forbidden'> {
    if (auth === undefined) return session
    if (session.principal === undefined) {
      // The first poster of a session opened without credentials claims it, across the
      // cluster. Posts that come meanwhile wait on the same claim, so order is kept.
      // The session is bound here only to a caller the cluster agrees owns it.
      session.claim ??= this.#cluster.claim(session.id, auth.principal).then(owner => {
        session.claim = undefined
        return owner
      }, (err: unknown) => {
        session.claim = undefined
        throw err
      })
      return session.claim.then(owner => {
        if (owner !== auth.principal) return this.#refuse(session.id, auth.principal, log)
        this.#bindInfo(session, auth)
        return session
      })
    }
    if (session.principal !== auth.principal) return this.#refuse(session.id, auth.principal, log)
    return session
  }

  #authInfo (session: Session, auth: AuthResult | undefined): McpAuthInfo | undefined {
    return auth === undefined ? session.authInfo : toAuthInfo(auth)
  }

  #bindInfo (session: Session, auth: AuthResult): McpAuthInfo {
    const info = toAuthInfo(auth)
    session.bind(auth.principal, info)
    return info
  }

  #refused (result: Promise<DeliveryResult>, id: string, auth: AuthResult | undefined, log: FastifyBaseLogger): Promise<DeliveryResult> {
    return result.then(r => r === 'forbidden' ? this.#refuse(id, auth?.principal, log) : r)
  }

  #refuse (sessionId: string, principal: string | undefined, log: FastifyBaseLogger): 'forbidden' {
    log.warn({ sessionId, principal }, 'fastify-mcp-sse: refused a message from a principal that does not own the session')
    return 'forbidden'
  }

  #receive (session: Session, delivery: Pick<Delivery, 'messages' | 'headers' | 'url'> & { reply?: ReplyChannel }, log: FastifyBaseLogger, authInfo: McpAuthInfo | undefined): 'delivered' {
    const extra = new MessageExtra(delivery.headers, delivery.url, authInfo)
    try {
      session.transport.deliver(delivery.messages, extra, delivery.reply)
    } catch (err) {
      log.error({ err, sessionId: session.id }, 'fastify-mcp-sse: the session\'s message handler threw')
      // The cause stays in the log: internals are not the client's to read.
      throw new FST_ERR_MCP_SSE_HANDLER_ERROR()
    }
    return 'delivered'
  }

  receiveForwarded (id: string, delivery: Omit<Delivery, 'auth' | 'reply'>, principal: string | undefined, authInfo: McpAuthInfo | undefined): void {
    const session = this.#sessions.get(id)
    if (session === undefined || !session.isOpen) {
      this.#log.debug({ sessionId: id }, 'fastify-mcp-sse: dropped forwarded messages for a session that has ended')
      return
    }
    // The sender checked the principal against the cluster's binding; adopt it here.
    if (principal !== undefined && session.principal === undefined) session.bind(principal, authInfo)
    try {
      this.#receive(session, delivery, this.#log, authInfo ?? session.authInfo)
    } catch {
      // Logged by #receive; nobody is waiting on an answer for a forwarded message.
    }
  }

  // --- Streamable HTTP across instances ------------------------------------------------

  /** How this instance serves Streamable HTTP requests that other instances relay to it. */
  serveRelayed (serve: ServeStreamable): void {
    this.#serveRelayed = serve
  }

  /**
   * Relays a Streamable HTTP request for a session this instance does not hold to the
   * instance that does, after the principal check against the cluster's binding.
   * 'not_found' for an unknown session or another principal's (answered alike).
   */
  async relay (id: string, op: StreamableOp, auth: AuthResult | undefined, log: FastifyBaseLogger): Promise<RelayedAnswer | 'not_found'> {
    const relayed = await this.#opts.telemetry.forwarded('relay', () => this.#cluster.relay(id, op, auth), r => typeof r === 'string' ? r : 'delivered')
    if (relayed === 'forbidden') this.#refuse(id, auth?.principal, log)
    return typeof relayed === 'string' ? 'not_found' : relayed
  }

  receiveRelayed (id: string, op: StreamableOp, principal: string | undefined, authInfo: McpAuthInfo | undefined, sink: RelaySink): void {
    const session = this.#sessions.get(id)
    const serve = this.#serveRelayed
    // The sender checked the principal against the cluster's binding; a session bound
    // here to someone else (a race with a claim) is refused all the same.
    if (session === undefined || !session.isOpen || serve === undefined ||
        (principal !== undefined && session.principal !== undefined && session.principal !== principal)) {
      sink.fail(new FST_ERR_MCP_SSE_SESSION_NOT_FOUND())
      return
    }
    if (principal !== undefined && session.principal === undefined) session.bind(principal, authInfo)
    serve(session, op, authInfo, { hijack: () => sink, headers: () => ({}) }, this.#log).then(outcome => {
      if (outcome === 'answered') return
      sink.writeHead(outcome === 'accepted' ? 202 : 204, {})
      sink.end()
    }, (err: unknown) => { sink.fail(err) })
  }
}
