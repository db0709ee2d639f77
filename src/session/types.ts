import type { McpServerLike } from '../mcp.js'
import type { CloseReason, SessionTransport, TransportKind } from '../transports/transport.js'

/** One open session on this instance. */
export interface McpSession {
  /** The session id (`?sessionId=` of HTTP+SSE). */
  readonly id: string
  /** The wire protocol that carries it. */
  readonly kind: TransportKind
  /** When it opened (ms since the epoch). */
  readonly createdAt: number
  /** The session's transport (the SDK `Transport` the server is connected to). */
  readonly transport: SessionTransport
  /** The MCP server the `server` factory made for this session. */
  readonly server: McpServerLike
  /**
   * Who the session belongs to: the principal that opened it, or (when only messages are
   * authenticated) the first that posted to it. Undefined without auth.
   */
  readonly principal: string | undefined
  /** Address of the client that opened it. */
  readonly remoteAddress: string | undefined
  /** Ends the transport and closes the MCP server; resolves once the server has closed. */
  close (reason?: CloseReason): Promise<void>
}

/** Where a session lives, as far as the cluster knows. */
export interface McpSessionInfo {
  id: string
  /** True when this instance holds it. */
  local: boolean
  /** The instance that holds it ("local" without Redis). */
  owner: string
  principal: string | undefined
  createdAt: number
}

/**
 * The sessions of this instance, decorated as `fastify.mcpSessions`: for users (admin
 * routes, metrics). The plugin's own calls are on the class behind it.
 */
export interface McpSessionStore extends Iterable<McpSession> {
  /** Number of open sessions on this instance. */
  readonly size: number
  /** The open session with this id, if this instance holds it. */
  get (id: string): McpSession | undefined
  has (id: string): boolean
  /** Ids of the open sessions. */
  ids (): IterableIterator<string>
  /**
   * Finds a session anywhere in the cluster: on this instance, or (with Redis) on another.
   * Without Redis, the same as `get` but asynchronous.
   */
  lookup (id: string): Promise<McpSessionInfo | undefined>
  /** Ends the session and closes its MCP server. Resolves false if there was none here. */
  close (id: string): Promise<boolean>
  /** Ends every session (the plugin calls this when the app closes). */
  closeAll (): Promise<void>
}

/**
 * The 2026-07-28 revision's side of the plugin (`app.mcpEvents`): change events for
 * `subscriptions/listen` streams, which reach every listener on every instance (through
 * Redis when `redis` is set), and what is being served now. Modern requests hold no
 * session, so `app.mcpSessions` never counts them.
 */
export interface McpEvents {
  /** `notifications/tools/list_changed` to listeners that opted in. */
  toolsChanged (): void
  /** `notifications/prompts/list_changed` to listeners that opted in. */
  promptsChanged (): void
  /** `notifications/resources/list_changed` to listeners that opted in. */
  resourcesChanged (): void
  /** `notifications/resources/updated` for `uri`, to listeners subscribed to it. */
  resourceUpdated (uri: string): void
  /** Modern requests being served on this instance now, open listen streams included. */
  readonly inFlight: number
  /** Open `subscriptions/listen` streams on this instance. */
  readonly listening: number
}

/** What `app.mcpHealth()` answers (and the health route, with 200 or 503). */
export interface McpHealth {
  /** True when the plugin can serve: not closing, and Redis reachable when `redis` is set. */
  ready: boolean
  /** `none` without Redis. */
  redis: 'up' | 'down' | 'none'
  /** Sessions held by this instance. */
  sessions: { sse: number, streamable: number }
  /** 2026-07-28 requests in flight and open listen streams on this instance. */
  modern: { inFlight: number, listening: number }
}
