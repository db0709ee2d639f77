import type { IncomingHttpHeaders } from 'node:http'

// The few MCP shapes the plugin handles, written out structurally so that the public
// types depend on neither SDK line: a server of `@modelcontextprotocol/sdk` 1.x and one
// of `@modelcontextprotocol/server` 2.x both fit, with only one of them installed.
// test/types.test.ts checks that servers of both lines are accepted and that the
// plugin's transports satisfy both lines' `Transport`.

/** A JSON-RPC 2.0 message as it crosses a transport (checked by the route's schema first). */
export type JsonRpcMessage = { jsonrpc: '2.0' } & Record<string, unknown>

/** `extra.authInfo` as both SDK lines define it. */
export interface McpAuthInfo {
  token: string
  clientId: string
  scopes: string[]
  expiresAt?: number
  extra?: Record<string, unknown>
}

/**
 * What a server learns about the HTTP request that carried a message: v1 reads
 * `requestInfo.headers`, v2 reads `request` (a fetch `Request`), both read `authInfo`.
 */
export interface McpMessageExtra {
  requestInfo?: { headers: IncomingHttpHeaders }
  authInfo?: McpAuthInfo
  readonly request?: Request
  /**
   * Closes the event stream of the POST that carried the message (Streamable HTTP, with
   * an event store): the client reconnects with Last-Event-ID and polls (SEP-1699).
   */
  closeSSEStream?: (() => void) | undefined
}

/** What the SDK says about an outgoing message: the request it belongs to, if any. */
export interface McpSendOptions {
  relatedRequestId?: string | number | undefined
}

/** The SDK `Transport` contract (the part both lines share). */
export interface McpTransport {
  start (): Promise<void>
  send (message: JsonRpcMessage, options?: McpSendOptions): Promise<void>
  close (): Promise<void>
  onclose?: (() => void) | undefined
  onerror?: ((error: Error) => void) | undefined
  onmessage?: ((message: JsonRpcMessage, extra?: McpMessageExtra) => void) | undefined
  readonly sessionId?: string | undefined
}

/**
 * What an MCP server needs from the plugin: something it can `connect()` a transport to
 * and `close()`. `McpServer` and `Server` of either SDK line fit.
 */
export interface McpServerLike {
  connect (transport: McpTransport): Promise<void>
  close (): Promise<void>
}

/**
 * The `extra` handed to the server with each message. v2 servers read `request`; it is
 * built on first read, so v1 servers (which never read it) pay nothing for it.
 */
export class MessageExtra implements McpMessageExtra {
  readonly requestInfo: { headers: IncomingHttpHeaders }
  readonly authInfo: McpAuthInfo | undefined
  /** Set by a transport that answers on the POST itself and can resume its stream. */
  closeSSEStream: (() => void) | undefined = undefined
  readonly #url: string
  #request: Request | undefined

  constructor (headers: IncomingHttpHeaders, url: string, authInfo: McpAuthInfo | undefined) {
    this.requestInfo = { headers }
    this.authInfo = authInfo
    this.#url = url
  }

  get request (): Request {
    this.#request ??= fetchRequest(this.requestInfo.headers, this.#url, 'POST')
    return this.#request
  }
}

/** A fetch `Request` with this request's method, URL and headers (no body: it was parsed already). */
export function fetchRequest (headers: IncomingHttpHeaders, url: string, method: string, signal?: AbortSignal): Request {
  return new Request(`http://${headers.host ?? 'localhost'}${url}`, { method, headers: toFetchHeaders(headers), ...(signal === undefined ? {} : { signal }) })
}

function toFetchHeaders (headers: IncomingHttpHeaders): Headers {
  const out = new Headers()
  for (const [name, value] of Object.entries(headers)) {
    // HTTP/2 pseudo-headers and the like are not valid fetch header names.
    if (value === undefined || name.startsWith(':')) continue
    if (Array.isArray(value)) for (const v of value) out.append(name, v)
    else out.append(name, value)
  }
  return out
}
