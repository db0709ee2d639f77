import type { IncomingHttpHeaders } from 'node:http'
import type { AuthResult } from '../auth/types.js'
import type { JsonRpcMessage, McpAuthInfo } from '../mcp.js'
import type { ReplyChannel } from '../transports/transport.js'
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
  /** Where the answers go, when they travel on the POST's own response (Streamable HTTP). */
  reply?: ReplyChannel
}

/** What the cluster part calls back into: the store that holds this instance's sessions. */
export interface ClusterHost {
  sessions (): Iterable<Session>
  /** Messages another instance forwarded for a session held here. */
  receiveForwarded (id: string, delivery: Omit<Delivery, 'auth' | 'reply'>, principal: string | undefined, authInfo: McpAuthInfo | undefined): void
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
  /** Finds a session held elsewhere. */
  lookup (id: string): Promise<McpSessionInfo | undefined>
  /** Forgets this instance's sessions and disconnects (after they have ended). */
  shutdown (localIds: string[]): Promise<void>
}

const NOT_FOUND = Promise.resolve<DeliveryResult>('not_found')
const NONE = Promise.resolve(undefined)

/** The cluster of one instance: nothing is held elsewhere, a claim is granted at once. */
export class LocalCluster implements SessionCluster {
  readonly instanceId = 'local'
  readonly connected = true
  async start (): Promise<void> {}
  added (): void {}
  removed (): void {}
  claim (_id: string, principal: string): Promise<string | undefined> {
    return Promise.resolve(principal)
  }

  forward (): Promise<DeliveryResult> {
    return NOT_FOUND
  }

  lookup (): Promise<McpSessionInfo | undefined> {
    return NONE
  }

  async shutdown (): Promise<void> {}
}
