import type { ServerResponse, OutgoingHttpHeaders } from 'node:http'
import type { JsonRpcMessage, McpMessageExtra } from '../mcp.js'
import type { CloseReason, SessionTransport, TransportObserver } from './transport.js'

export interface SseTransportOptions {
  sessionId: string
  res: ServerResponse
  /** Headers of the 200 response (content type, cache, CORS, custom). */
  headers: OutgoingHttpHeaders
  /** Value of the `endpoint` event: the message path with this session's id. */
  endpointUrl: string
  keepAliveInterval: number
  maxBufferedBytes: number
}

const CLOSED = new Error('SSE stream closed')
const RESOLVED = Promise.resolve()

/**
 * The HTTP+SSE (2024-11-05) transport of one session, for servers of either SDK line:
 * `send()` writes `event: message` frames to the SSE response, POSTed messages come in
 * through {@link SseSessionTransport.deliver}.
 *
 * `send()` honours backpressure: when `write()` says the socket buffer is full, the
 * returned promise waits for `'drain'`, so a tool streaming progress slows down to the
 * client's pace. A client that stops reading cannot make the buffer grow past
 * `maxBufferedBytes`: the next send past it closes the session.
 */
export class SseSessionTransport implements SessionTransport {
  readonly kind = 'sse'
  readonly sessionId: string
  onclose?: (() => void) | undefined
  onerror?: ((error: Error) => void) | undefined
  onmessage?: ((message: JsonRpcMessage, extra?: McpMessageExtra) => void) | undefined
  onended: ((reason: CloseReason) => void) | undefined
  observer: TransportObserver | undefined = undefined
  /** The version the server negotiated (its initialize result), for the session's metrics. */
  protocolVersion: string | undefined = undefined

  #res: ServerResponse
  #opts: SseTransportOptions
  #timer: NodeJS.Timeout | undefined
  #started = false
  #closed = false
  #drainWaiters: Array<{ resolve: () => void, reject: (err: Error) => void }> = []
  #closeReason: CloseReason | undefined

  constructor (opts: SseTransportOptions) {
    this.sessionId = opts.sessionId
    this.#res = opts.res
    this.#opts = opts
    this.#res.on('close', this.#onResponseClose)
    this.#res.on('drain', this.#onDrain)
  }

  /** True until the stream has ended for any reason. */
  get isOpen (): boolean {
    return !this.#closed
  }

  /** Why the session ended, once it has. */
  get closeReason (): CloseReason | undefined {
    return this.#closeReason
  }

  /** Bytes written to the stream and not yet taken by the client's socket. */
  get bufferedBytes (): number {
    return this.#res.writableLength
  }

  async start (): Promise<void> {
    if (this.#started) throw new Error('SseSessionTransport already started')
    this.#started = true
    if (this.#closed) return
    const res = this.#res
    res.writeHead(200, this.#opts.headers)
    // Headers and the endpoint event go out together, in one packet.
    res.write(`event: endpoint\ndata: ${this.#opts.endpointUrl}\n\n`)
    if (this.#opts.keepAliveInterval > 0) {
      this.#timer = setInterval(this.#ping, this.#opts.keepAliveInterval)
      this.#timer.unref()
    }
  }

  send (message: JsonRpcMessage): Promise<void> {
    if (this.#closed) return Promise.reject(CLOSED)
    this.observer?.sent(message)
    const result = message.result as { protocolVersion?: unknown, serverInfo?: unknown } | undefined
    if (typeof result?.protocolVersion === 'string' && result.serverInfo !== undefined) this.protocolVersion = result.protocolVersion
    return this.#write('event: message\ndata: ' + JSON.stringify(message) + '\n\n')
  }

  /** Hands POSTed messages to the MCP server (via `onmessage`); replies go on the stream. */
  deliver (messages: JsonRpcMessage[], extra: McpMessageExtra): void {
    const onmessage = this.onmessage
    if (onmessage === undefined) throw new Error('the session has no MCP server connected')
    const observer = this.observer
    for (let i = 0; i < messages.length; i++) {
      const message = messages[i] as JsonRpcMessage
      if (observer === undefined) onmessage(message, extra)
      else observer.received(message, extra, () => { onmessage(message, extra) })
    }
  }

  close (): Promise<void> {
    this.#terminate('server_closed')
    return RESOLVED
  }

  /** Ends the session with a reason (used by the store, shutdown and overflow). */
  terminate (reason: CloseReason): void {
    this.#terminate(reason)
  }

  #write (frame: string): Promise<void> {
    const res = this.#res
    // Checked before writing so that one large message to a reading client passes,
    // while a client that stopped reading is cut off once the backlog is over the bound.
    if (res.writableLength > this.#opts.maxBufferedBytes) {
      this.#terminate('buffer_overflow')
      return Promise.reject(CLOSED)
    }
    this.observer?.written(Buffer.byteLength(frame))
    if (res.write(frame)) return RESOLVED
    return new Promise((resolve, reject) => {
      this.#drainWaiters.push({ resolve, reject })
    })
  }

  #onDrain = (): void => {
    const waiters = this.#drainWaiters
    if (waiters.length === 0) return
    this.#drainWaiters = []
    for (const w of waiters) w.resolve()
  }

  #ping = (): void => {
    // A stream that is waiting for 'drain' is not idle; a ping would only add to its backlog.
    if (this.#closed || this.#res.writableNeedDrain) return
    this.#res.write(`event: ping\ndata: {"timestamp":"${new Date().toISOString()}"}\n\n`)
  }

  #onResponseClose = (): void => {
    this.#terminate('client_disconnected')
  }

  #terminate (reason: CloseReason): void {
    if (this.#closed) return
    this.#closed = true
    this.#closeReason = reason
    if (this.#timer !== undefined) {
      clearInterval(this.#timer)
      this.#timer = undefined
    }
    const res = this.#res
    res.off('close', this.#onResponseClose)
    res.off('drain', this.#onDrain)
    if (reason === 'buffer_overflow') {
      // The client is not reading: ending politely would wait on a backlog it never takes.
      res.destroy()
    } else if (!res.writableEnded) {
      if (!res.headersSent && !res.destroyed) res.writeHead(200, this.#opts.headers)
      res.end()
    }
    const waiters = this.#drainWaiters
    this.#drainWaiters = []
    for (const w of waiters) w.reject(CLOSED)
    this.observer?.ended()
    this.onended?.(reason)
    this.onclose?.()
  }
}

/**
 * @deprecated Renamed {@link SseSessionTransport}: this name differed from the SDK's own
 * `SSEServerTransport` only in letter case. Kept as an alias.
 */
export const SseServerTransport = SseSessionTransport
/** @deprecated Renamed {@link SseSessionTransport}. */
export type SseServerTransport = SseSessionTransport
