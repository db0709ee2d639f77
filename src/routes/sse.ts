import { randomUUID } from 'node:crypto'
import type { OutgoingHttpHeaders } from 'node:http'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { FST_ERR_MCP_SSE_HANDLER_ERROR, FST_ERR_MCP_SSE_TOO_MANY_SESSIONS, jsonRpcError } from '../errors.js'
import type { McpServerLike } from '../options.js'
import type { RouteContext } from './context.js'
import { SseSession } from '../session/session.js'
import { SseServerTransport, type CloseReason } from '../transport.js'

/** Headers every stream gets; the user's `headers` may override all but the content type. */
function streamHeaders (custom: Record<string, string>): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = {
    'cache-control': 'no-cache, no-transform',
    'x-accel-buffering': 'no'
  }
  for (const [name, value] of Object.entries(custom)) headers[name.toLowerCase()] = value
  headers['content-type'] = 'text/event-stream; charset=utf-8'
  return headers
}

/** `GET {endpoint}`: opens a session and holds its event stream. */
export function sseRoute (scope: FastifyInstance, ctx: RouteContext): void {
  const { options, store, messagePath } = ctx
  const baseHeaders = streamHeaders(options.headers)
  // Sessions whose factory is still running count against the cap, so a burst of
  // connections cannot overshoot it.
  let pending = 0

  async function openStream (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    if (store.size + pending >= options.maxSessions) {
      throw new FST_ERR_MCP_SSE_TOO_MANY_SESSIONS(options.maxSessions)
    }
    const sessionId = randomUUID()
    let server: McpServerLike
    pending++
    try {
      server = await options.server({ sessionId, request, auth: request.mcpAuth ?? undefined })
    } catch (err) {
      request.log.error({ err, sessionId }, 'fastify-mcp-sse: the server factory threw')
      throw new FST_ERR_MCP_SSE_HANDLER_ERROR()
    } finally {
      pending--
    }

    const socket = request.raw.socket
    reply.hijack()
    if (socket.destroyed) {
      // The client left while the factory ran: nothing to stream to.
      await server.close().catch(() => {})
      return
    }
    // An event stream lives for as long as the client wants: no idle timeout, and
    // keep-alive probes so dead peers are noticed even between pings.
    socket.setTimeout(0)
    socket.setNoDelay(true)
    socket.setKeepAlive(true, 30_000)

    const log = request.log
    const transport = new SseServerTransport({
      sessionId,
      res: reply.raw,
      headers: { ...(reply.getHeaders() as OutgoingHttpHeaders), ...baseHeaders },
      endpointUrl: `${messagePath}?sessionId=${sessionId}`,
      keepAliveInterval: options.keepAliveInterval,
      maxBufferedBytes: options.maxBufferedBytes,
      onClosed: (_t: SseServerTransport, reason: CloseReason) => {
        store.delete(sessionId)
        if (reason === 'buffer_overflow') {
          log.warn({ sessionId, maxBufferedBytes: options.maxBufferedBytes }, 'fastify-mcp-sse: session closed, the client stopped reading and its buffer is full')
        } else {
          log.info({ sessionId, reason }, 'fastify-mcp-sse: session closed')
        }
        void session.releaseServer(err => log.error({ err, sessionId }, 'fastify-mcp-sse: the MCP server failed to close'))
      }
    })
    const session = new SseSession(transport, server, request.ip, request.mcpAuth ?? undefined)
    store.add(session)
    try {
      // connect() calls transport.start(), which writes the headers and the endpoint event.
      await server.connect(transport)
    } catch (err) {
      log.error({ err, sessionId }, 'fastify-mcp-sse: connecting the MCP server failed')
      const res = reply.raw
      if (!res.headersSent && !res.destroyed) {
        // Nothing was streamed yet: answer like any other failed request.
        const body = jsonRpcError('message_handler_error', 'The MCP server failed to start.')
        res.writeHead(500, { ...(reply.getHeaders() as OutgoingHttpHeaders), 'content-type': 'application/json; charset=utf-8' })
        res.end(JSON.stringify(body))
      }
      await session.close('connect_failed')
      return
    }
    if (transport.isOpen) log.info({ sessionId }, 'fastify-mcp-sse: session opened')
  }

  scope.get(options.endpoint, {
    onRequest: ctx.hooks.sse,
    // HEAD would open a session whose headers never go out (Node drops HEAD bodies).
    exposeHeadRoute: false,
    // A host app's @fastify/cors must not answer for us (we set our own CORS headers).
    config: { cors: false }
  }, openStream)
}
