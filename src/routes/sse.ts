import type { OutgoingHttpHeaders } from 'node:http'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { jsonRpcError } from '../errors.js'
import { SseSessionTransport } from '../transports/sse.js'
import type { RouteContext } from './context.js'

/** Headers every stream gets; the user's `headers` may override all but the content type. */
export function streamHeaders (custom: Record<string, string>): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = {
    'cache-control': 'no-cache, no-transform',
    'x-accel-buffering': 'no'
  }
  for (const [name, value] of Object.entries(custom)) headers[name.toLowerCase()] = value
  headers['content-type'] = 'text/event-stream; charset=utf-8'
  return headers
}

/**
 * The handler that opens an HTTP+SSE session and holds its event stream: `GET {endpoint}`,
 * and `GET {mcpEndpoint}` without a session id (one URL for every client).
 */
export function sseStreamHandler (ctx: RouteContext): (request: FastifyRequest, reply: FastifyReply) => Promise<void> {
  const { options, store, messagePath } = ctx
  const baseHeaders = streamHeaders(options.headers)

  return async function openStream (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const sessionId = store.newId()
    const server = await store.createServer(sessionId, request)

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

    const transport = new SseSessionTransport({
      sessionId,
      res: reply.raw,
      headers: { ...(reply.getHeaders() as OutgoingHttpHeaders), ...baseHeaders },
      endpointUrl: `${messagePath}?sessionId=${sessionId}`,
      keepAliveInterval: options.keepAliveInterval,
      maxBufferedBytes: options.maxBufferedBytes
    })
    const session = store.open(transport, server, request)
    try {
      // connect() calls transport.start(), which writes the headers and the endpoint event.
      await server.connect(transport)
    } catch (err) {
      request.log.error({ err, sessionId }, 'fastify-mcp-sse: connecting the MCP server failed')
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
    if (transport.isOpen) request.log.info({ sessionId }, 'fastify-mcp-sse: session opened')
  }
}

/** `GET {endpoint}`: opens a session and holds its event stream. */
export function sseRoute (scope: FastifyInstance, ctx: RouteContext, endpoint: string): void {
  scope.get(endpoint, {
    onRequest: ctx.hooks.sse,
    preHandler: ctx.limits.sse,
    // HEAD would open a session whose headers never go out (Node drops HEAD bodies).
    exposeHeadRoute: false,
    // A host app's @fastify/cors must not answer for us (we set our own CORS headers).
    config: { cors: false }
  }, sseStreamHandler(ctx))
}
