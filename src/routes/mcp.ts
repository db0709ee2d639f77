import type { OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { toAuthInfo } from '../auth/types.js'
import {
  FST_ERR_MCP_SSE_BAD_REQUEST,
  FST_ERR_MCP_SSE_CONFLICT,
  FST_ERR_MCP_SSE_HANDLER_ERROR,
  FST_ERR_MCP_SSE_METHOD_NOT_ALLOWED,
  FST_ERR_MCP_SSE_NOT_ACCEPTABLE,
  FST_ERR_MCP_SSE_SESSION_NOT_FOUND
} from '../errors.js'
import { MessageExtra, type JsonRpcMessage, type McpServerLike } from '../mcp.js'
import { MessageBody } from '../schemas.js'
import type { Session } from '../session/session.js'
import { PostReply, StreamableSessionTransport, type PostReplyOptions, type StreamSettings } from '../transports/streamable.js'
import type { RouteContext } from './context.js'
import { streamHeaders } from './sse.js'

/** The 2025 revisions this endpoint speaks (2024-11-05 clients use the HTTP+SSE fallback). */
export const SUPPORTED_PROTOCOL_VERSIONS: readonly string[] = ['2024-11-05', '2025-03-26', '2025-06-18', '2025-11-25']
/** From this revision on, JSON-RPC batches are gone from the protocol. */
const NO_BATCHES_FROM = '2025-06-18'

type JsonRpcId = string | number
type StreamableSession = Session & { transport: StreamableSessionTransport }

function requestIdOf (m: JsonRpcMessage): JsonRpcId | undefined {
  if (typeof m.method !== 'string') return undefined
  return typeof m.id === 'string' || typeof m.id === 'number' ? m.id : undefined
}

/** Whether an Accept header takes this media type (exactly, or through a wildcard). */
function accepts (header: string | undefined, type: string): boolean {
  if (header === undefined) return false
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
  const noResumption: Pick<PostReplyOptions, 'journal' | 'detach'> = { journal: () => undefined, detach: () => {} }

  function checkVersion (request: FastifyRequest): void {
    const version = request.headers['mcp-protocol-version']
    if (version !== undefined && (typeof version !== 'string' || !SUPPORTED_PROTOCOL_VERSIONS.includes(version))) {
      throw new FST_ERR_MCP_SSE_BAD_REQUEST(`unsupported MCP-Protocol-Version "${String(version).slice(0, 40)}"; supported: ${SUPPORTED_PROTOCOL_VERSIONS.join(', ')}.`)
    }
  }

  function newReply (reply: FastifyReply, batch: boolean, requestIds: JsonRpcId[], headers: Record<string, string>, resumption: Pick<PostReplyOptions, 'journal' | 'detach'>): PostReply {
    return new PostReply({
      ...resumption,
      hijack: () => {
        if (!reply.sent) reply.hijack()
        return reply.raw
      },
      headers: () => ({ ...(reply.getHeaders() as OutgoingHttpHeaders), ...headers }),
      mode: options.responseMode,
      batch,
      requestIds,
      stream: settings
    })
  }

  /** A session of this endpoint that `request`'s caller may use, or the error to answer. */
  async function streamableSession (request: FastifyRequest, sessionId: string): Promise<StreamableSession> {
    const admitted = await store.admit(sessionId, request.mcpAuth ?? undefined, request.log)
    // An HTTP+SSE session's id means nothing here: answered like an unknown one.
    if (typeof admitted === 'string' || !(admitted.transport instanceof StreamableSessionTransport)) {
      throw new FST_ERR_MCP_SSE_SESSION_NOT_FOUND()
    }
    return admitted as StreamableSession
  }

  async function post (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const accept = request.headers.accept
    if (!accepts(accept, 'application/json') || !accepts(accept, 'text/event-stream')) {
      throw new FST_ERR_MCP_SSE_NOT_ACCEPTABLE('the client must accept both application/json and text/event-stream.')
    }
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

    const sessionId = sessionIdOf(request)
    const headers: Record<string, string> = {}
    let session: StreamableSession
    if (sessionId === undefined) {
      if (!messages.some(m => m.method === 'initialize')) {
        throw new FST_ERR_MCP_SSE_BAD_REQUEST('the Mcp-Session-Id header is required: send initialize first to get one.')
      }
      if (batch) throw new FST_ERR_MCP_SSE_BAD_REQUEST('initialize must be sent on its own, not in a batch.')
      session = await openSession(request)
      headers['mcp-session-id'] = session.id
    } else {
      // Who may use it first (another principal's session, or an HTTP+SSE one, is unknown
      // here), then what this session's revision allows.
      session = await streamableSession(request, sessionId)
    }
    const { transport } = session
    if (batch && transport.protocolVersion !== undefined && transport.protocolVersion >= NO_BATCHES_FROM) {
      throw new FST_ERR_MCP_SSE_BAD_REQUEST(`JSON-RPC batches are not part of protocol revision ${transport.protocolVersion}.`)
    }

    const resumption = transport.replyHooks()
    const answer = requestIds.length === 0 ? undefined : newReply(reply, batch, requestIds, headers, resumption)
    const delivered = store.deliverTo(session, {
      messages,
      headers: request.headers,
      url: request.url,
      auth: request.mcpAuth ?? undefined,
      ...(answer === undefined ? {} : { reply: answer })
    }, request.log)
    if (delivered !== 'delivered') throw new FST_ERR_MCP_SSE_SESSION_NOT_FOUND()
    if (answer === undefined) {
      reply.code(202).headers(headers).send()
      return
    }
    await answer.done
  }

  /** `initialize` without a session: a new session, its server from the factory. */
  async function openSession (request: FastifyRequest): Promise<StreamableSession> {
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
    return session as StreamableSession
  }

  /** Stateless: a server of its own for this POST, closed once it is answered. */
  async function servePerRequest (request: FastifyRequest, reply: FastifyReply, messages: JsonRpcMessage[], batch: boolean, requestIds: JsonRpcId[]): Promise<void> {
    const sessionId = store.newId()
    let server: McpServerLike
    try {
      server = await options.server({ sessionId, request, auth: request.mcpAuth ?? undefined })
    } catch (err) {
      request.log.error({ err }, 'fastify-mcp-sse: the server factory threw')
      throw new FST_ERR_MCP_SSE_HANDLER_ERROR()
    }
    const transport = new StreamableSessionTransport({ sessionId, stream: settings, eventStore: undefined, idleTimeout: 0 })
    try {
      await server.connect(transport)
      const answer = requestIds.length === 0 ? undefined : newReply(reply, batch, requestIds, {}, noResumption)
      const auth = request.mcpAuth
      try {
        transport.deliver(messages, new MessageExtra(request.headers, request.url, auth === null ? undefined : toAuthInfo(auth)), answer)
      } catch (err) {
        request.log.error({ err }, 'fastify-mcp-sse: the message handler threw')
        throw new FST_ERR_MCP_SSE_HANDLER_ERROR()
      }
      if (answer === undefined) reply.code(202).send()
      else await answer.done
    } finally {
      transport.terminate('server_closed')
      await server.close().catch((err: unknown) => { request.log.error({ err }, 'fastify-mcp-sse: the MCP server failed to close') })
    }
  }

  function notAllowed (reply: FastifyReply, what: string): never {
    reply.header('allow', 'POST, OPTIONS')
    throw new FST_ERR_MCP_SSE_METHOD_NOT_ALLOWED(what)
  }

  async function get (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const sessionId = sessionIdOf(request)
    const wantsStream = accepts(request.headers.accept, 'text/event-stream')
    if (sessionId === undefined) {
      // One URL for every client: a GET without a session and without a 2025 protocol
      // version is an HTTP+SSE client (a Streamable client in stateless mode sends one).
      // (Legacy clients ask for the stream alone; probes that also accept JSON are not one.)
      const version = request.headers['mcp-protocol-version']
      if (openSseSession !== undefined && wantsStream && !accepts(request.headers.accept, 'application/json') &&
          (version === undefined || version === '2024-11-05')) {
        if (sseAuth !== undefined && request.mcpAuth === null) await sseAuth(request)
        return await openSseSession(request, reply)
      }
      notAllowed(reply, 'this endpoint opens no stream without an Mcp-Session-Id.')
    }
    if (options.stateless) notAllowed(reply, 'this endpoint is stateless: there are no sessions to stream.')
    if (!wantsStream) throw new FST_ERR_MCP_SSE_NOT_ACCEPTABLE('a GET stream needs Accept: text/event-stream.')
    checkVersion(request)
    const session = await streamableSession(request, sessionId)
    const lastEventId = request.headers['last-event-id']
    if (typeof lastEventId === 'string' && lastEventId !== '') {
      const open = (): { res: ServerResponse, headers: OutgoingHttpHeaders } => {
        reply.hijack()
        return { res: reply.raw, headers: reply.getHeaders() as OutgoingHttpHeaders }
      }
      const resumed = await session.transport.resume(lastEventId, open)
      if (resumed === 'resumed') return
      if (resumed === 'conflict') throw new FST_ERR_MCP_SSE_CONFLICT('the stream to resume is still open.')
    }
    if (session.transport.hasStream) throw new FST_ERR_MCP_SSE_CONFLICT('this session already has a GET stream open.')
    reply.hijack()
    session.transport.openStream(reply.raw, reply.getHeaders() as OutgoingHttpHeaders)
  }

  async function remove (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    if (options.stateless) notAllowed(reply, 'this endpoint is stateless: there are no sessions to end.')
    const sessionId = sessionIdOf(request)
    if (sessionId === undefined) throw new FST_ERR_MCP_SSE_BAD_REQUEST('the Mcp-Session-Id header is required.')
    checkVersion(request)
    const session = await streamableSession(request, sessionId)
    await session.close('deleted_by_client')
    reply.code(204).send()
  }

  const config = { cors: false }
  scope.post(path, { bodyLimit: options.maxMessageSize, schema: { body: MessageBody }, onRequest: ctx.hooks.mcpPost, config }, post)
  scope.get(path, { onRequest: ctx.hooks.mcp, exposeHeadRoute: false, config }, get)
  scope.delete(path, { onRequest: ctx.hooks.mcp, config }, remove)
  if (options.cors !== false) {
    scope.options(path, { onRequest: ctx.hooks.mcpPreflight, config }, (_request, reply) => { reply.code(204).send() })
  }
}
