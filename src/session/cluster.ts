import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'
import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import type { AuthResult } from '../auth/types.js'
import type { JsonRpcMessage, McpAuthInfo } from '../mcp.js'
import type { ResponseSink } from '../transports/transport.js'
import type { RelayedAnswer, RelaySink } from './relay.js'
import type { Session } from './session.js'
import type { McpSessionInfo } from './types.js'

/** What became of messages handed to the store. */
export type DeliveryResult = 'delivered' | 'not_found' | 'forbidden'

/** A POST's messages on their way to a session, with what the server may see of the POST. */
export interface Delivery {
  messages: JsonRpcMessage[]
  headers: IncomingHttpHeaders
  /** Path and query of the POST. */
  url: string
  /** Who posted, when the route authenticates. */
  auth: AuthResult | undefined
}

/**
 * One Streamable HTTP request, as far as the session it names is concerned: what the
 * instance holding the session does with it, whichever instance the client sent it to.
 * Plain data, so it can travel between instances.
 */
export type StreamableOp =
  | { op: 'post', messages: JsonRpcMessage[], batch: boolean, requestIds: Array<string | number>, headers: IncomingHttpHeaders, url: string }
  | { op: 'get', lastEventId: string | undefined }
  | { op: 'delete' }

/** Where a Streamable HTTP answer goes: the response to take over, and the headers it starts with. */
export interface ResponseTarget {
  /** Takes the response over (once, before the first byte). */
  hijack: () => ResponseSink
  /** Headers of the answer besides its own (CORS, `Mcp-Session-Id` of a new session). */
  headers: () => OutgoingHttpHeaders
}

/**
 * What became of a Streamable HTTP request: answered on its target (JSON or a stream,
 * complete), or to be answered 202 (nothing to answer) or 204 (deleted) by the caller.
 */
export type StreamableOutcome = 'answered' | 'accepted' | 'deleted'

/** Serves one Streamable HTTP request against a session held here. Throws the plugin's errors. */
export type ServeStreamable = (session: Session, op: StreamableOp, authInfo: McpAuthInfo | undefined, target: ResponseTarget, log: FastifyBaseLogger) => Promise<StreamableOutcome>

/**
 * A change that `subscriptions/listen` streams (2026-07-28) report: a list of the
 * server's changed, or a resource was updated. Published once, delivered on every
 * instance.
 */
export type ChangeEvent =
  | { kind: 'tools_list_changed' | 'prompts_list_changed' | 'resources_list_changed' }
  | { kind: 'resource_updated', uri: string }

/** The listeners of change events on one instance. */
export class ChangeListeners {
  readonly #listeners = new Set<(event: ChangeEvent) => void>()
  readonly #onError: (err: unknown) => void

  constructor (onError: (err: unknown) => void) {
    this.#onError = onError
  }

  add (listener: (event: ChangeEvent) => void): () => void {
    const entry = (event: ChangeEvent): void => { listener(event) }
    this.#listeners.add(entry)
    return () => { this.#listeners.delete(entry) }
  }

  /** Calls every listener; one that throws is reported and the rest still run. */
  emit (event: ChangeEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event)
      } catch (err) {
        this.#onError(err)
      }
    }
  }
}

/** What the cluster part calls back into: the store that holds this instance's sessions. */
export interface ClusterHost {
  sessions (): Iterable<Session>
  /** Messages another instance forwarded for a session held here. */
  receiveForwarded (id: string, delivery: Omit<Delivery, 'auth'>, principal: string | undefined, authInfo: McpAuthInfo | undefined): void
  /** A Streamable HTTP request another instance relayed for a session held here; the answer goes to `sink`. */
  receiveRelayed (id: string, op: StreamableOp, principal: string | undefined, authInfo: McpAuthInfo | undefined, sink: RelaySink): void
}

/**
 * The part of the store that knows about other instances. Sessions live in one process
 * (streams cannot move); the cluster part says where each one lives and carries messages
 * to it. {@link LocalCluster} when the instance is alone, `RedisCluster` when several
 * share sessions. The store never asks which one it has.
 */
export interface SessionCluster {
  readonly instanceId: string
  /** True while the link to the other instances is up (always, when alone). */
  readonly connected: boolean
  /** The Redis command connection the instances share (none when alone). */
  readonly commandClient?: Redis
  start (host: ClusterHost): Promise<void>
  /** A session opened here. */
  added (session: Session): void
  /** A session held here ended. */
  removed (id: string): void
  /**
   * Claims a session that was opened without credentials for the first principal that
   * posts to it, across the cluster. Resolves with the principal it is bound to.
   */
  claim (id: string, principal: string): Promise<string | undefined>
  /** Delivers to a session this instance does not hold. */
  forward (id: string, delivery: Delivery): Promise<DeliveryResult>
  /**
   * Relays a Streamable HTTP request to the instance holding its session; the answer
   * comes back to be piped to the client. 'not_found' when no instance holds it.
   */
  relay (id: string, op: StreamableOp, auth: AuthResult | undefined): Promise<RelayedAnswer | DeliveryResult>
  /** Publishes a change event to the listen streams of every instance, this one's included. */
  publishChange (event: ChangeEvent): void
  /** Listens to change events published on any instance; returns the unsubscribe. */
  onChange (listener: (event: ChangeEvent) => void): () => void
  /** Finds a session held elsewhere. */
  lookup (id: string): Promise<McpSessionInfo | undefined>
  /**
   * Ends the answers this instance is writing for sessions held elsewhere (at close, with
   * the local sessions): streams end, answers not begun are 503.
   */
  endRelayed (): void
  /** Forgets this instance's sessions and disconnects (after they have ended). */
  shutdown (localIds: string[]): Promise<void>
}

const NOT_FOUND = Promise.resolve<DeliveryResult>('not_found')
const NONE = Promise.resolve(undefined)

/** The cluster of one instance: nothing is held elsewhere, a claim is granted at once. */
export class LocalCluster implements SessionCluster {
  readonly instanceId = 'local'
  readonly connected = true
  readonly #changes: ChangeListeners

  constructor (log: FastifyBaseLogger) {
    this.#changes = new ChangeListeners(err => { log.error({ err }, 'fastify-mcp-sse: a change listener threw') })
  }

  publishChange (event: ChangeEvent): void {
    this.#changes.emit(event)
  }

  onChange (listener: (event: ChangeEvent) => void): () => void {
    return this.#changes.add(listener)
  }

  async start (): Promise<void> {}
  added (): void {}
  removed (): void {}
  claim (_id: string, principal: string): Promise<string | undefined> {
    return Promise.resolve(principal)
  }

  forward (): Promise<DeliveryResult> {
    return NOT_FOUND
  }

  relay (): Promise<DeliveryResult> {
    return NOT_FOUND
  }

  lookup (): Promise<McpSessionInfo | undefined> {
    return NONE
  }

  endRelayed (): void {}
  async shutdown (): Promise<void> {}
}
