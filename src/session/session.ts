import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js'
import { toAuthInfo } from '../auth/hook.js'
import type { AuthResult } from '../auth/types.js'
import type { McpServerLike } from '../options.js'
import type { CloseReason, SseServerTransport } from '../transport.js'
import type { McpSession } from './store.js'

/** A session held by this instance: its stream's transport and its MCP server. */
export class SseSession implements McpSession {
  readonly id: string
  readonly createdAt = Date.now()
  readonly transport: SseServerTransport
  readonly server: McpServerLike
  readonly remoteAddress: string | undefined
  principal: string | undefined
  /** `extra.authInfo` for messages that carry no credentials of their own. */
  authInfo: AuthInfo | undefined
  #serverClosed: Promise<void> | undefined

  constructor (transport: SseServerTransport, server: McpServerLike, remoteAddress: string | undefined, auth: AuthResult | undefined) {
    this.id = transport.sessionId
    this.transport = transport
    this.server = server
    this.remoteAddress = remoteAddress
    this.principal = auth?.principal
    this.authInfo = auth === undefined ? undefined : toAuthInfo(auth)
  }

  /** Binds a session opened without credentials to the first principal that posts to it. */
  bind (auth: AuthResult): void {
    this.bindInfo(auth.principal, toAuthInfo(auth))
  }

  bindInfo (principal: string, authInfo: AuthInfo): void {
    this.principal = principal
    this.authInfo = authInfo
  }

  close (reason: CloseReason = 'closed_by_store'): Promise<void> {
    this.transport.terminate(reason)
    return this.releaseServer()
  }

  /**
   * Closes the MCP server once (aborting its in-flight requests); called when the stream
   * ends for any reason. A server that fails to close is reported, not thrown.
   */
  releaseServer (onError?: (err: unknown) => void): Promise<void> {
    this.#serverClosed ??= this.server.close().catch((err: unknown) => { onError?.(err) })
    return this.#serverClosed
  }
}
