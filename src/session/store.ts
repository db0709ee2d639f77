import type { McpServerLike } from '../options.js'
import type { CloseReason, SseServerTransport } from '../transport.js'

/** One open SSE session on this instance. */
export interface McpSession {
  /** The session id clients send as `?sessionId=`. */
  readonly id: string
  /** When the stream opened (ms since the epoch). */
  readonly createdAt: number
  /** The session's transport (the SDK `Transport` the server is connected to). */
  readonly transport: SseServerTransport
  /** The MCP server the `server` factory made for this session. */
  readonly server: McpServerLike
  /**
   * Who the session belongs to: the principal that opened it, or (when only messages are
   * authenticated) the first that posted to it. Undefined without auth.
   */
  readonly principal: string | undefined
  /** Address of the client that opened the stream. */
  readonly remoteAddress: string | undefined
  /** Ends the stream and closes the MCP server; resolves once the server has closed. */
  close (reason?: CloseReason): Promise<void>
}

/** Where a session lives, as far as the cluster knows. */
export interface McpSessionInfo {
  id: string
  /** True when this instance holds the stream. */
  local: boolean
  /** The instance that holds it ("local" without Redis). */
  owner: string
  principal: string | undefined
  createdAt: number
}

/**
 * The sessions of this instance, decorated as `fastify.mcpSessions`. Reading methods are
 * for users (admin routes, metrics); `add` and `delete` are the plugin's. A store that
 * shares sessions between instances implements the same interface.
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
  /** Ends the session's stream and closes its MCP server. Resolves false if there was none. */
  close (id: string): Promise<boolean>
  /** Ends every session (the plugin calls this when the app closes). */
  closeAll (): Promise<void>
  /** Registers a new session. @internal */
  add (session: McpSession): void
  /** Forgets a session that ended. @internal */
  delete (id: string): boolean
}

/** The default store: a `Map` in this process. */
export class MemorySessionStore implements McpSessionStore {
  #sessions = new Map<string, McpSession>()

  get size (): number {
    return this.#sessions.size
  }

  get (id: string): McpSession | undefined {
    return this.#sessions.get(id)
  }

  has (id: string): boolean {
    return this.#sessions.has(id)
  }

  ids (): IterableIterator<string> {
    return this.#sessions.keys()
  }

  [Symbol.iterator] (): IterableIterator<McpSession> {
    return this.#sessions.values()
  }

  add (session: McpSession): void {
    this.#sessions.set(session.id, session)
  }

  delete (id: string): boolean {
    return this.#sessions.delete(id)
  }

  async lookup (id: string): Promise<McpSessionInfo | undefined> {
    const s = this.#sessions.get(id)
    if (s === undefined) return undefined
    return { id, local: true, owner: 'local', principal: s.principal, createdAt: s.createdAt }
  }

  async close (id: string): Promise<boolean> {
    const session = this.#sessions.get(id)
    if (session === undefined) return false
    await session.close('closed_by_store')
    return true
  }

  async closeAll (): Promise<void> {
    await Promise.all(Array.from(this.#sessions.values(), s => s.close('server_shutdown')))
  }
}
