import { randomUUID } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import type { FastifyBaseLogger, FastifyReply, FastifyRequest } from 'fastify'
import { toAuthInfo } from '../auth/types.js'
import { FST_ERR_MCP_SSE_BAD_REQUEST, FST_ERR_MCP_SSE_HANDLER_ERROR, FST_ERR_MCP_SSE_TOO_MANY_SESSIONS } from '../errors.js'
import { fetchRequest, type McpAuthInfo, type McpServerLike } from '../mcp.js'
import type { McpSessionContext } from '../options.js'
import type { ChangeEvent } from '../session/cluster.js'
import { ServerPool } from '../server-pool.js'
import type { ResponseMode } from '../transports/streamable.js'
import type { AnswerReader, Telemetry } from '../telemetry.js'

/** The first revision whose requests carry their version in `_meta`, with no session. */
export const MODERN_FROM = '2026-07-28'
const PROTOCOL_VERSION_KEY = 'io.modelcontextprotocol/protocolVersion'
const CLIENT_INFO_KEY = 'io.modelcontextprotocol/clientInfo'
const VERSION = /^\d{4}-\d{2}-\d{2}$/

/** Whether a version string names a modern revision (2026-07-28 or later). */
export function isModernVersion (version: unknown): boolean {
  return typeof version === 'string' && VERSION.test(version) && version >= MODERN_FROM
}

function metaOf (message: unknown): Record<string, unknown> | undefined {
  const params = (message as { params?: { _meta?: unknown } } | null)?.params
  const meta = typeof params === 'object' && params !== null ? params._meta : undefined
  return typeof meta === 'object' && meta !== null ? meta as Record<string, unknown> : undefined
}

/**
 * Whether a POST is a modern (2026-07-28) one, as the versioning page tells them apart:
 * it claims a modern version in `MCP-Protocol-Version`, or carries the per-request
 * `_meta` protocol version. Everything else (an `initialize`, a 2025 session's traffic)
 * is legacy and served by the session routes.
 */
export function isModernRequest (headers: IncomingHttpHeaders, body: unknown): boolean {
  if (isModernVersion(headers['mcp-protocol-version'])) return true
  const messages = Array.isArray(body) ? body as unknown[] : [body]
  return messages.some(m => metaOf(m)?.[PROTOCOL_VERSION_KEY] !== undefined)
}

// --- The parts of @modelcontextprotocol/server (SDK v2) this uses, written out ---------
// structurally, so the plugin does not depend on it (it is an optional peer).

interface HandlerFactoryContext { era: 'modern' | 'legacy', authInfo?: unknown, requestInfo?: Request }
interface EventBus {
  publish: (event: ChangeEvent) => void
  subscribe: (listener: (event: ChangeEvent) => void) => () => void
}
interface McpHandler {
  fetch: (request: Request, options: { authInfo?: McpAuthInfo, parsedBody?: unknown }) => Promise<Response>
  close: () => Promise<void>
}
/** What of SDK v2 serves modern requests. */
export interface ModernSdk {
  createMcpHandler: (factory: (ctx: HandlerFactoryContext) => Promise<object>, options: {
    legacy: 'reject'
    bus: EventBus
    responseMode?: ResponseMode
    keepAliveMs?: number
    maxSubscriptions?: number
    onerror?: (error: Error) => void
  }) => McpHandler
  McpServer: abstract new (...args: never[]) => object
  Server: abstract new (...args: never[]) => object
}

/** Loads SDK v2 if it is installed; undefined if not (modern requests then fall back). */
export async function loadModernSdk (): Promise<ModernSdk | undefined> {
  try {
    return await import('@modelcontextprotocol/server') as unknown as ModernSdk
  } catch {
    return undefined
  }
}

/** A v2 server's protocol half: what notices an exchange ending. */
interface Closing { onclose?: (() => void) | undefined }

export interface ModernOptions {
  server: (context: McpSessionContext) => McpServerLike | Promise<McpServerLike>
  mode: ResponseMode
  keepAliveInterval: number
  maxBufferedBytes: number
  /** Keep servers between requests of one principal and client (at most this many idle per key); 0: a new server per request. */
  reuseServers: number
  /**
   * The one cap on what clients hold open on this instance: sessions and listen streams
   * together (a listen stream is what a 2026-07-28 client keeps open, as a 2025 one keeps
   * a session). A listen request past it answers 503 too_many_sessions.
   */
  maxSessions: number
  /** Sessions (of either transport) open on this instance now. */
  sessions: () => number
  /**
   * The earlier revisions the same URL serves (through `initialize`), newest first: the
   * versions this server supports, as `server/discover` and -32022 list them, are the
   * SDK's modern ones and these.
   */
  legacyVersions: readonly string[]
  /** Where change events come from (and go to: every instance). */
  changes: { publish: (event: ChangeEvent) => void, subscribe: (listener: (event: ChangeEvent) => void) => () => void }
  telemetry: Telemetry
  log: FastifyBaseLogger
}

/** Closes a server the plugin is done with (the user's close() runs; failures are the server's). */
function closeServer (server: object): void {
  void (server as McpServerLike).close().catch(() => {})
}

/** A v2 server's protocol half: what notices an exchange ending, and whether one is in progress. */
function protocolOf (server: object): Closing & { transport?: unknown } {
  return ((server as { server?: Closing }).server ?? server) as Closing & { transport?: unknown }
}

/** Per request: what the factory needs of the Fastify request, and what it learned. */
interface Exchange {
  request: FastifyRequest
  key: string | undefined
  /** The factory gave a server of SDK v1, which cannot speak this revision. */
  legacyServer: boolean
  /** The server handed to SDK v2's entry for this request, until the plugin is done with it. */
  server?: object
  /** A server built before SDK v2's entry saw the request (to learn the factory's era), for it to use. */
  built?: object
}

/**
 * The 2026-07-28 revision at `{mcpEndpoint}`: every modern request is served on its own
 * by a server from the factory, through SDK v2's own per-request entry (which checks the
 * headers against the body, the `_meta` envelope, versions and capabilities, answers
 * `server/discover`, stamps `resultType`, and serves `subscriptions/listen`). The plugin
 * brings what it brings to every route (auth, CORS, Origin/Host, limits), change events
 * from any instance, and optionally keeps servers between requests.
 */
export class ModernEndpoint {
  readonly #opts: ModernOptions
  readonly #sdk: ModernSdk | undefined
  readonly #handler: McpHandler | undefined
  /** Servers kept between requests of one principal and client (see ServerPool). */
  readonly #pool: ServerPool<object> | undefined
  readonly #exchanges = new WeakMap<Request, Exchange>()
  /** Each server lent to an exchange, and that exchange (until the plugin is done with the server). */
  readonly #leases = new WeakMap<object, Exchange>()
  /** Servers whose exchange endings the plugin hears of (their own onclose still runs first). */
  readonly #hooked = new WeakSet<object>()
  /** Set once the factory gave an SDK v1 server: modern requests then fall back at once. */
  #legacyOnly = false
  /** Set once the factory gave an SDK v2 server: the era of this endpoint is known. */
  #modernKnown = false
  #inFlight = 0
  #listening = 0
  #closed = false

  constructor (sdk: ModernSdk | undefined, opts: ModernOptions) {
    this.#opts = opts
    this.#sdk = sdk
    this.#pool = opts.reuseServers > 0 ? new ServerPool<object>(opts.reuseServers, closeServer) : undefined
    this.#handler = sdk?.createMcpHandler(ctx => this.#build(ctx), {
      legacy: 'reject',
      bus: opts.changes,
      // 'json' would drop a modern request's progress (the SDK warns of it): such
      // requests answer JSON unless something precedes the result, as in 'auto'.
      ...(opts.mode === 'sse' ? { responseMode: 'sse' as const } : {}),
      keepAliveMs: opts.keepAliveInterval > 0 ? opts.keepAliveInterval : 2 ** 31 - 1,
      // The plugin's cap (checked first) is the one that counts, not the SDK's default of 1024.
      maxSubscriptions: opts.maxSessions,
      onerror: err => { opts.log.debug({ err }, 'fastify-mcp-sse: a modern request was refused or failed') }
    })
  }

  /** Modern requests being served now (listen streams included). */
  get inFlight (): number {
    return this.#inFlight
  }

  /** Open `subscriptions/listen` streams. */
  get listening (): number {
    return this.#listening
  }

  /** Idle servers kept for reuse. */
  get pooled (): number {
    return this.#pool?.size ?? 0
  }

  /** Serves one modern POST (auth, guard and body parsing already done by the route). */
  async serve (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const handler = this.#handler
    if (handler === undefined || this.#legacyOnly) this.#fallBack()
    const abort = new AbortController()
    const auth = request.mcpAuth
    const web = fetchRequest(request.headers, request.url, 'POST', abort.signal)
    const listen = (request.body as { method?: unknown } | null)?.method === 'subscriptions/listen'
    if (listen && this.#listening + this.#opts.sessions() >= this.#opts.maxSessions) {
      throw new FST_ERR_MCP_SSE_TOO_MANY_SESSIONS(this.#opts.maxSessions)
    }
    // A listen request's server only tells SDK v2 its capabilities, and the SDK closes it
    // there and then: it takes no kept server, and is not kept.
    const exchange: Exchange = { request, key: listen ? undefined : this.#keyOf(request), legacyServer: false }
    this.#exchanges.set(web, exchange)
    // Until the factory's era is known, build first: SDK v2's entry answers some requests
    // (unsupported version, header mismatch, missing capability) before it calls the
    // factory, with modern errors that would tell a dual-era client this server is modern.
    if (!this.#modernKnown) await this.#learnEra(exchange)
    // Closing the response is cancelling the request (and ending a listen stream),
    // whether the answer has begun or not.
    const res = reply.raw
    const onClose = (): void => { if (!res.writableFinished) abort.abort() }
    res.on('close', onClose)
    this.#inFlight++
    if (listen) this.#listening++
    try {
      // One operation per request: timed and traced until its answer is written.
      await this.#opts.telemetry.modern(request.body, request.headers, async () => {
        const response = await this.#withLegacyVersions(await handler.fetch(web, { parsedBody: request.body, ...(auth === null ? {} : { authInfo: toAuthInfo(auth) }) }), request.body)
        if (exchange.legacyServer) {
          await response.body?.cancel()
          this.#fallBack()
        }
        // Its outcome (a JSON-RPC error inside a 200, a tool's isError) is read as it is written.
        const answer = this.#opts.telemetry.answer(request.body, response)
        const reader = typeof answer === 'string' ? undefined : answer
        await this.#write(response, reply, abort, reader)
        return reader === undefined ? answer as string : reader.outcome(abort.signal.aborted)
      }, outcome => outcome, abort.signal)
    } finally {
      // A server that never served the exchange (a listen request's, or one the SDK refused
      // the request with after the factory ran) was closed by the SDK without its onclose.
      const server = exchange.server
      if (server !== undefined && protocolOf(server).transport === undefined) this.#release(server, false)
      // Built to learn the era, and not used: the SDK refused the request before the factory.
      if (exchange.built !== undefined) closeServer(exchange.built)
      res.off('close', onClose)
      this.#inFlight--
      if (listen) this.#listening--
    }
  }

  /** Ends open listen streams and servers still serving (before the HTTP server closes). */
  async close (): Promise<void> {
    this.#closed = true
    await this.#handler?.close()
    const kept = this.#pool?.close() ?? []
    await Promise.all(kept.map(async server => { await (server as McpServerLike).close().catch(() => {}) }))
  }

  /**
   * A client speaking 2026-07-28 to a server that cannot: a 400 whose body is not a
   * modern error, which tells a dual-era client to fall back to `initialize`.
   */
  #fallBack (): never {
    throw new FST_ERR_MCP_SSE_BAD_REQUEST('this server speaks MCP 2025-11-25 and earlier: send initialize first (MCP-Protocol-Version 2025-11-25), or use HTTP+SSE.')
  }

  /** Principal and client identity: the requests that may share a kept server. */
  #keyOf (request: FastifyRequest): string | undefined {
    if (this.#pool === undefined) return undefined
    const clientInfo = metaOf(request.body)?.[CLIENT_INFO_KEY]
    // Without a client identity there is nothing to tell two clients apart by: build anew.
    if (clientInfo === undefined) return undefined
    return JSON.stringify([request.mcpAuth?.principal ?? null, clientInfo])
  }

  /** The factory of SDK v2's entry: a kept server of this caller, or a new one from the user's factory. */
  async #build (ctx: HandlerFactoryContext): Promise<object> {
    const exchange = ctx.requestInfo === undefined ? undefined : this.#exchanges.get(ctx.requestInfo)
    if (exchange === undefined) throw new Error('fastify-mcp-sse: a modern request without its exchange')
    const built = exchange.built
    if (built !== undefined) {
      exchange.built = undefined
      return this.#lend(built, exchange)
    }
    const { key } = exchange
    const kept = key === undefined ? undefined : this.#pool?.take(key)
    if (kept !== undefined) return this.#lend(kept, exchange)
    const server = await this.#newServer(exchange)
    if (server === undefined) throw new Error('an SDK v1 server cannot serve 2026-07-28')
    return this.#lend(server, exchange)
  }

  /** A server from the user's factory; undefined (and the endpoint legacy-only) when it is of SDK v1. */
  async #newServer (exchange: Exchange): Promise<object | undefined> {
    const request = exchange.request
    const server = await this.#opts.server({ sessionId: randomUUID(), era: 'modern', request, auth: request.mcpAuth ?? undefined })
    const sdk = this.#sdk as ModernSdk
    if (!(server instanceof sdk.McpServer) && !(server instanceof sdk.Server)) {
      // An SDK v1 server: it cannot serve this revision (and never will, for this factory).
      this.#legacyOnly = true
      exchange.legacyServer = true
      this.#opts.log.info('fastify-mcp-sse: the server factory gives SDK v1 servers; 2026-07-28 requests are answered so clients fall back to initialize')
      await server.close().catch(() => {})
      return undefined
    }
    this.#modernKnown = true
    return server
  }

  /**
   * Learns the factory's era from a server built for this request (which the SDK's entry
   * then uses): one of SDK v1 means every modern request falls back, this one included,
   * whatever the SDK would have answered it. A factory that throws decides nothing: 500,
   * as for a session whose factory throws.
   */
  async #learnEra (exchange: Exchange): Promise<void> {
    let server: object | undefined
    try {
      server = await this.#newServer(exchange)
    } catch (err) {
      exchange.request.log.error({ err }, 'fastify-mcp-sse: the server factory threw')
      throw new FST_ERR_MCP_SSE_HANDLER_ERROR()
    }
    if (server === undefined) this.#fallBack()
    exchange.built = server
  }

  /**
   * Hands a server to one exchange, and arranges for the plugin to hear when that
   * exchange ends: the server then goes back to the pool (when kept), or is closed. The
   * server's own `onclose` is kept and runs first, at the end of every exchange it serves.
   */
  #lend (server: object, exchange: Exchange): object {
    if (!this.#hooked.has(server)) {
      this.#hooked.add(server)
      const protocol = protocolOf(server)
      const own = protocol.onclose
      protocol.onclose = () => {
        try {
          own?.()
        } finally {
          this.#release(server, true)
        }
      }
    }
    this.#leases.set(server, exchange)
    exchange.server = server
    return server
  }

  /**
   * The plugin is done with a server's exchange. One that served it (`served`) is kept for
   * its caller's next request, or closed; one that never did was closed by the SDK already.
   */
  #release (server: object, served: boolean): void {
    const exchange = this.#leases.get(server)
    if (exchange === undefined) return
    this.#leases.delete(server)
    exchange.server = undefined
    if (!served) return
    if (exchange.key !== undefined && this.#pool !== undefined && !this.#closed) this.#pool.give(exchange.key, server)
    else closeServer(server)
  }

  /**
   * SDK v2 lists only the modern revisions it serves, in `server/discover` and in
   * -32022 (UnsupportedProtocolVersionError); this URL serves the 2025 ones too, and the
   * versioning page has a server list every version it supports. Both answers are small
   * and whole (no progress precedes them): read, amended, passed on.
   */
  async #withLegacyVersions (response: Response, body: unknown): Promise<Response> {
    const legacy = this.#opts.legacyVersions
    const discover = (body as { method?: unknown } | null)?.method === 'server/discover'
    if (legacy.length === 0 || (!discover && response.status !== 400)) return response
    const type = response.headers.get('content-type') ?? ''
    const sse = type.startsWith('text/event-stream')
    if (!type.startsWith('application/json') && !(sse && discover)) return response
    const add = (list: unknown[]): unknown[] => [...list, ...legacy.filter(v => !list.includes(v))]
    const amend = (json: string): string => {
      let message: { result?: { supportedVersions?: unknown }, error?: { code?: unknown, data?: { supported?: unknown } } }
      try {
        message = JSON.parse(json)
      } catch {
        return json
      }
      if (discover && Array.isArray(message.result?.supportedVersions)) message.result.supportedVersions = add(message.result.supportedVersions)
      else if (message.error?.code === -32022 && Array.isArray(message.error.data?.supported)) message.error.data.supported = add(message.error.data.supported)
      else return json
      return JSON.stringify(message)
    }
    const text = await response.text()
    const amended = sse ? text.replace(/^data: ?(.*)$/gm, (_line, json: string) => `data: ${amend(json)}`) : amend(text)
    const headers = new Headers(response.headers)
    headers.delete('content-length')
    return new Response(amended, { status: response.status, statusText: response.statusText, headers })
  }

  /** Writes SDK v2's answer to the client: status, headers (with the route's own), body as it comes. */
  async #write (response: Response, reply: FastifyReply, abort: AbortController, answer: AnswerReader | undefined): Promise<void> {
    const res = reply.raw
    reply.hijack()
    // The SDK's headers, then the route's (CORS and the like: the plugin's own settings win).
    const headers: Record<string, string | number | string[]> = {}
    response.headers.forEach((value, name) => { headers[name] = value })
    for (const [name, value] of Object.entries(reply.getHeaders())) if (value !== undefined) headers[name] = value
    // 499 is how the SDK says the client left: nobody is there to read a status.
    if (response.status === 499 || res.destroyed) {
      await response.body?.cancel().catch(() => {})
      return
    }
    const streaming = String(headers['content-type']).startsWith('text/event-stream')
    if (streaming) {
      res.socket?.setTimeout(0)
      res.socket?.setNoDelay(true)
    }
    res.writeHead(response.status, headers)
    const body = response.body
    if (body === null) {
      res.end()
      return
    }
    const reader = body.getReader()
    try {
      for (;;) {
        const { done, value } = await reader.read()
        if (done) break
        if (res.destroyed) break
        res.write(value)
        answer?.feed(value)
        if (res.writableLength > this.#opts.maxBufferedBytes) {
          // A client that stopped reading: cut off, which cancels what it asked for.
          res.destroy()
          break
        }
      }
    } catch {
      // The stream was cancelled (the client left): nothing more to write.
    } finally {
      if (res.destroyed) {
        abort.abort()
        await reader.cancel().catch(() => {})
      } else res.end()
    }
  }
}
