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
  #serverClosed: Promise<void> | undefined

  constructor (transport: SseServerTransport, server: McpServerLike, remoteAddress: string | undefined) {
    this.id = transport.sessionId
    this.transport = transport
    this.server = server
    this.remoteAddress = remoteAddress
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
