import type { OutgoingHttpHeaders } from 'node:http'
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { toAuthInfo } from '../auth/types.js'
import {
  FST_ERR_MCP_SSE_BAD_REQUEST,
  FST_ERR_MCP_SSE_HANDLER_ERROR,
  FST_ERR_MCP_SSE_METHOD_NOT_ALLOWED,
  FST_ERR_MCP_SSE_NOT_ACCEPTABLE,
  FST_ERR_MCP_SSE_SESSION_NOT_FOUND
} from '../errors.js'
import { MessageExtra, type JsonRpcMessage, type McpServerLike } from '../mcp.js'
import { MessageBody } from '../schemas.js'
import { ServerPool } from '../server-pool.js'
import type { StreamableOp } from '../session/cluster.js'
import type { Session } from '../session/session.js'
import { PostReply, StreamableSessionTransport, type StreamSettings } from '../transports/streamable.js'
import type { RouteContext } from './context.js'
import { streamableServer } from './mcp-session.js'
import { isModernVersion, isModernRequest } from './modern.js'
import { streamHeaders } from './sse.js'

/** The 2025 revisions this endpoint speaks (2024-11-05 clients use the HTTP+SSE fallback). */
export const SUPPORTED_PROTOCOL_VERSIONS: readonly string[] = ['2024-11-05', '2025-03-26', '2025-06-18', '2025-11-25']

type JsonRpcId = string | number

/** No headers of the route's own on an answer. */
const NO_HEADERS: Record<string, string> = Object.freeze({})

function requestIdOf (m: JsonRpcMessage): JsonRpcId | undefined {
  if (typeof m.method !== 'string') return undefined
  return typeof m.id === 'string' || typeof m.id === 'number' ? m.id : undefined
}

/** Whether an Accept header takes this media type (exactly, or through a wildcard). */
function accepts (header: string | undefined, type: string): boolean {
  if (header === undefined) return false
  // A client sends the same Accept on every request: the last answer for each type is kept.
  const last = lastAccept.get(type)
  if (last !== undefined && last.header === header) return last.ok
  const ok = acceptsParsed(header, type)
  lastAccept.set(type, { header, ok })
  return ok
}

/** The last Accept header checked for each media type (at most the few types asked about), and its answer. */
const lastAccept = new Map<string, { header: string, ok: boolean }>()

function acceptsParsed (header: string, type: string): boolean {
  const slash = type.indexOf('/')
  const wildcard = type.slice(0, slash) + '/*'
  for (const part of header.split(',')) {
    const semi = part.indexOf(';')
    const t = (semi === -1 ? part : part.slice(0, semi)).trim().toLowerCase()
    if (t === type || t === wildcard || t === '*/*') return true
  }
  return false
}

function sessionIdOf (request: FastifyRequest): string | undefined {
  const id = request.headers['mcp-session-id']
  return typeof id === 'string' && id !== '' ? id : undefined
}

/**
 * `{mcpEndpoint}`: Streamable HTTP (2025-03-26 .. 2025-11-25). POST carries messages and
 * answers requests on its own response; GET opens a session's standalone stream (or,
 * without a session id, an HTTP+SSE session: one URL for every client); DELETE ends a
 * session. With `stateless`, each POST is served by a server of its own, and GET and
 * DELETE answer 405.
 */
export function mcpRoute (
  scope: FastifyInstance,
  ctx: RouteContext,
  path: string,
  openSseSession: ((request: FastifyRequest, reply: FastifyReply) => Promise<void>) | undefined,
  /** The HTTP+SSE stream's auth, when it applies and this route's does not (`auth.endpoints`). */
  sseAuth: ((request: FastifyRequest) => Promise<void>) | undefined
): void {
  const { options, store } = ctx
  const settings: StreamSettings = {
    headers: streamHeaders(options.headers),
    keepAliveInterval: options.keepAliveInterval,
    maxBufferedBytes: options.maxBufferedBytes,
    retryInterval: options.retryInterval
  }
  function checkVersion (request: FastifyRequest): void {
    const version = request.headers['mcp-protocol-version']
    if (version !== undefined && (typeof version !== 'string' || !SUPPORTED_PROTOCOL_VERSIONS.includes(version))) {
      throw new FST_ERR_MCP_SSE_BAD_REQUEST(`unsupported MCP-Protocol-Version "${String(version).slice(0, 40)}"; supported: ${SUPPORTED_PROTOCOL_VERSIONS.join(', ')}.`)
    }
  }

  /** The answer to a stateless POST (nothing is kept for resumption: there is no session to resume). */
  function statelessReply (reply: FastifyReply, batch: boolean, requestIds: JsonRpcId[]): PostReply {
    return new PostReply({
      journal: () => undefined,
      detach: () => {},
      hijack: () => {
        if (!reply.sent) reply.hijack()
        return reply.raw
      },
      headers: () => reply.getHeaders() as OutgoingHttpHeaders,
      mode: options.responseMode,
      batch,
      requestIds,
      stream: settings
    })
  }

  const serve = streamableServer({ stream: settings, mode: options.responseMode }, store)
  // The instance holding a session serves requests other instances relay to it the same way.
  store.serveRelayed(serve)

  /**
   * Serves a request for session `sessionId`: here when this instance holds it, else on
   * the instance that does (the answer comes back through the cluster). Another
   * principal's session, an HTTP+SSE one, or none: 404.
   */
  async function serveSession (request: FastifyRequest, reply: FastifyReply, sessionId: string, op: StreamableOp): Promise<void> {
    const auth = request.mcpAuth ?? undefined
    const admitted = await store.admit(sessionId, auth, request.log)
    if (typeof admitted !== 'string') return await serveHere(request, reply, admitted, op, NO_HEADERS)
    if (admitted === 'forbidden') throw new FST_ERR_MCP_SSE_SESSION_NOT_FOUND()
    const relayed = await store.relay(sessionId, op, auth, request.log)
    if (relayed === 'not_found') throw new FST_ERR_MCP_SSE_SESSION_NOT_FOUND()
    await relayed.pipe({
      hijack: () => {
        reply.hijack()
        return reply.raw
      },
      response: reply.raw,
      headers: () => reply.getHeaders() as OutgoingHttpHeaders,
      maxBufferedBytes: options.maxBufferedBytes
    })
  }

  /** Serves a request for a session held here; `headers` go on the answer. */
  async function serveHere (request: FastifyRequest, reply: FastifyReply, session: Session, op: StreamableOp, headers: Record<string, string>): Promise<void> {
    const auth = request.mcpAuth
    const outcome = await serve(session, op, auth === null ? undefined : toAuthInfo(auth), {
      hijack: () => {
        if (!reply.sent) reply.hijack()
        return reply.raw
      },
      headers: headers === NO_HEADERS ? () => reply.getHeaders() as OutgoingHttpHeaders : () => ({ ...(reply.getHeaders() as OutgoingHttpHeaders), ...headers })
    }, request.log)
    if (outcome === 'accepted') reply.code(202).headers(headers).send()
    else if (outcome === 'deleted') reply.code(204).send()
  }

  async function post (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const accept = request.headers.accept
    if (!accepts(accept, 'application/json') || !accepts(accept, 'text/event-stream')) {
      throw new FST_ERR_MCP_SSE_NOT_ACCEPTABLE('the client must accept both application/json and text/event-stream.')
    }
    // 2026-07-28: a request that carries its version is served on its own, session or not.
    if (isModernRequest(request.headers, request.body)) return await ctx.modern.serve(request, reply)
    checkVersion(request)
    const body = request.body as JsonRpcMessage | JsonRpcMessage[]
    const batch = Array.isArray(body)
    const messages = batch ? body : [body]
    const requestIds: JsonRpcId[] = []
    for (const m of messages) {
      const id = requestIdOf(m)
      if (id !== undefined) requestIds.push(id)
    }
    if (options.stateless) return await servePerRequest(request, reply, messages, batch, requestIds)

    const op: StreamableOp = { op: 'post', messages, batch, requestIds, headers: request.headers, url: request.url }
    const sessionId = sessionIdOf(request)
    if (sessionId !== undefined) return await serveSession(request, reply, sessionId, op)
    if (!messages.some(m => m.method === 'initialize')) {
      throw new FST_ERR_MCP_SSE_BAD_REQUEST('the Mcp-Session-Id header is required: send initialize first to get one.')
    }
    if (batch) throw new FST_ERR_MCP_SSE_BAD_REQUEST('initialize must be sent on its own, not in a batch.')
    const session = await openSession(request)
    await serveHere(request, reply, session, op, { 'mcp-session-id': session.id })
  }

  /** `initialize` without a session: a new session, its server from the factory. */
  async function openSession (request: FastifyRequest): Promise<Session> {
    const sessionId = store.newId()
    const server = await store.createServer(sessionId, request)
    const transport = new StreamableSessionTransport({ sessionId, stream: settings, eventStore: options.eventStore, idleTimeout: options.sessionIdleTimeout })
    const session = store.open(transport, server, request)
    try {
      await server.connect(transport)
    } catch (err) {
      request.log.error({ err, sessionId }, 'fastify-mcp-sse: connecting the MCP server failed')
      await session.close('connect_failed')
      throw new FST_ERR_MCP_SSE_HANDLER_ERROR()
    }
    request.log.info({ sessionId, transport: 'streamable' }, 'fastify-mcp-sse: session opened')
    return session
  }

  /** A stateless server with its transport (connected once, on its first POST). */
  interface StatelessServer { server: McpServerLike, transport: StreamableSessionTransport, connected: boolean }

  async function closeStateless (s: StatelessServer, log: FastifyBaseLogger): Promise<void> {
    s.transport.terminate('server_closed')
    await s.server.close().catch((err: unknown) => { log.error({ err }, 'fastify-mcp-sse: the MCP server failed to close') })
  }

  // `stateless: { reuseServers }`: idle servers kept per principal, lent one POST at a time.
  const reuse = options.stateless === false ? 0 : options.stateless.reuseServers
  const kept = reuse > 0 ? new ServerPool<StatelessServer>(reuse, s => { void closeStateless(s, scope.log) }) : undefined
  if (kept !== undefined) {
    scope.addHook('onClose', async function mcpStatelessServersClose () {
      await Promise.all(kept.close().map(async s => { await closeStateless(s, scope.log) }))
    })
  }

  async function statelessServer (request: FastifyRequest): Promise<StatelessServer> {
    const sessionId = store.newId()
    let server: McpServerLike
    try {
      server = await options.server({ sessionId, era: 'legacy', request, auth: request.mcpAuth ?? undefined })
    } catch (err) {
      request.log.error({ err }, 'fastify-mcp-sse: the server factory threw')
      throw new FST_ERR_MCP_SSE_HANDLER_ERROR()
    }
    const transport = new StreamableSessionTransport({ sessionId, stream: settings, eventStore: undefined, idleTimeout: 0 })
    transport.observer = ctx.telemetry.observe(sessionId, 'streamable', () => undefined)
    return { server, transport, connected: false }
  }

  /**
   * Stateless: a server of its own for this POST, closed once it is answered; or, with
   * `reuseServers`, one of this principal's kept servers, given back once every request of
   * the POST is answered (a server whose client left before that is closed instead: its
   * request may still be running, and it must never meet another request).
   */
  async function servePerRequest (request: FastifyRequest, reply: FastifyReply, messages: JsonRpcMessage[], batch: boolean, requestIds: JsonRpcId[]): Promise<void> {
    const key = kept === undefined ? undefined : JSON.stringify([request.mcpAuth?.principal ?? null])
    const s = (key === undefined ? undefined : kept?.take(key)) ?? await statelessServer(request)
    let answered = false
    try {
      if (!s.connected) {
        await s.server.connect(s.transport)
        s.connected = true
      }
      const answer = requestIds.length === 0 ? undefined : statelessReply(reply, batch, requestIds)
      const auth = request.mcpAuth
      try {
        s.transport.deliver(messages, new MessageExtra(request.headers, request.url, auth === null ? undefined : toAuthInfo(auth)), answer)
      } catch (err) {
        request.log.error({ err }, 'fastify-mcp-sse: the message handler threw')
        throw new FST_ERR_MCP_SSE_HANDLER_ERROR()
      }
      if (answer === undefined) reply.code(202).send()
      else await answer.done
      answered = answer === undefined || answer.complete
    } finally {
      if (key !== undefined && answered && s.transport.isOpen) kept?.give(key, s)
      else await closeStateless(s, request.log)
    }
  }

  function notAllowed (reply: FastifyReply, what: string): never {
    reply.header('allow', 'POST, OPTIONS')
    throw new FST_ERR_MCP_SSE_METHOD_NOT_ALLOWED(what)
  }

  /** 2026-07-28 has no sessions, hence no GET streams and nothing to DELETE (its transport page: 405). */
  function refuseModern (request: FastifyRequest, reply: FastifyReply): void {
    if (isModernVersion(request.headers['mcp-protocol-version'])) notAllowed(reply, 'MCP 2026-07-28 has no sessions: POST each request (subscriptions/listen for change notifications).')
  }

  /**
   * One URL for every client: a GET without a session and without a 2025 protocol
   * version is an HTTP+SSE client (a Streamable client in stateless mode sends one).
   * (Legacy clients ask for the stream alone; probes that also accept JSON are not one.)
   */
  function opensSseSession (request: FastifyRequest): boolean {
    const version = request.headers['mcp-protocol-version']
    return openSseSession !== undefined && sessionIdOf(request) === undefined && accepts(request.headers.accept, 'text/event-stream') &&
      !accepts(request.headers.accept, 'application/json') && (version === undefined || version === '2024-11-05')
  }

  // The HTTP+SSE stream's own auth runs before the rate limit, so its budget is the principal's.
  const fallbackAuth = sseAuth === undefined
    ? undefined
    : async function mcpSseFallbackAuth (request: FastifyRequest): Promise<void> {
      if (request.mcpAuth === null && opensSseSession(request)) await sseAuth(request)
    }

  async function get (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    refuseModern(request, reply)
    const sessionId = sessionIdOf(request)
    const wantsStream = accepts(request.headers.accept, 'text/event-stream')
    if (sessionId === undefined) {
      // Its auth (sseAuth) already ran, in the preHandler before the rate limit.
      if (opensSseSession(request)) {
        return await (openSseSession as NonNullable<typeof openSseSession>)(request, reply)
      }
      notAllowed(reply, 'this endpoint opens no stream without an Mcp-Session-Id.')
    }
    if (options.stateless) notAllowed(reply, 'this endpoint is stateless: there are no sessions to stream.')
    if (!wantsStream) throw new FST_ERR_MCP_SSE_NOT_ACCEPTABLE('a GET stream needs Accept: text/event-stream.')
    checkVersion(request)
    const lastEventId = request.headers['last-event-id']
    await serveSession(request, reply, sessionId, { op: 'get', lastEventId: typeof lastEventId === 'string' && lastEventId !== '' ? lastEventId : undefined })
  }

  async function remove (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    refuseModern(request, reply)
    if (options.stateless) notAllowed(reply, 'this endpoint is stateless: there are no sessions to end.')
    const sessionId = sessionIdOf(request)
    if (sessionId === undefined) throw new FST_ERR_MCP_SSE_BAD_REQUEST('the Mcp-Session-Id header is required.')
    checkVersion(request)
    await serveSession(request, reply, sessionId, { op: 'delete' })
  }

  const config = { cors: false }
  scope.post(path, { bodyLimit: options.maxMessageSize, schema: { body: MessageBody }, onRequest: ctx.hooks.mcpPost, preHandler: ctx.limits.mcpPost, config }, post)
  scope.get(path, { onRequest: ctx.hooks.mcp, preHandler: fallbackAuth === undefined ? ctx.limits.mcpGet : [fallbackAuth, ...ctx.limits.mcpGet], exposeHeadRoute: false, config }, get)
  scope.delete(path, { onRequest: ctx.hooks.mcp, config }, remove)
  if (options.cors !== false) {
    scope.options(path, { onRequest: ctx.hooks.mcpPreflight, config }, (_request, reply) => { reply.code(204).send() })
  }
}
