import { toAuthInfo, type AuthResult } from '../auth/types.js'
import type { McpAuthInfo, McpServerLike } from '../mcp.js'
import type { CloseReason, SessionTransport, TransportKind } from '../transports/transport.js'

/** A session held by this instance: its transport, its MCP server, and who owns it. */
export class Session {
  readonly id: string
  readonly kind: TransportKind
  readonly createdAt = Date.now()
  readonly transport: SessionTransport
  readonly server: McpServerLike
  readonly remoteAddress: string | undefined
  /**
   * Who the session belongs to: the principal that opened it, or (when only messages are
   * authenticated) the first that posted to it. Undefined until then, or without auth.
   */
  principal: string | undefined
  /** `extra.authInfo` for messages that carry no credentials of their own. */
  authInfo: McpAuthInfo | undefined
  /** A pending claim of an unbound session (see {@link SessionStore.deliver}). */
  claim: Promise<string | undefined> | undefined
  #serverClosed: Promise<void> | undefined

  constructor (transport: SessionTransport, server: McpServerLike, remoteAddress: string | undefined, auth: AuthResult | undefined) {
    this.id = transport.sessionId
    this.kind = transport.kind
    this.transport = transport
    this.server = server
    this.remoteAddress = remoteAddress
    this.principal = auth?.principal
    this.authInfo = auth === undefined ? undefined : toAuthInfo(auth)
  }

  get isOpen (): boolean {
    return this.transport.isOpen
  }

  /** Binds a session opened without credentials to the principal that claimed it. */
  bind (principal: string, authInfo: McpAuthInfo | undefined): void {
    this.principal = principal
    if (authInfo !== undefined) this.authInfo = authInfo
  }

  /** Ends the transport; the store then forgets the session and closes its server. */
  close (reason: CloseReason = 'closed_by_store'): Promise<void> {
    this.transport.terminate(reason)
    return this.releaseServer()
  }

  /**
   * Closes the MCP server once (aborting its in-flight requests). A server that fails to
   * close is reported, not thrown.
   */
  releaseServer (onError?: (err: unknown) => void): Promise<void> {
    this.#serverClosed ??= this.server.close().catch((err: unknown) => { onError?.(err) })
    return this.#serverClosed
  }
}
