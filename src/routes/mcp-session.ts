import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'
import type { FastifyBaseLogger } from 'fastify'
import { FST_ERR_MCP_SSE_BAD_REQUEST, FST_ERR_MCP_SSE_CONFLICT, FST_ERR_MCP_SSE_SESSION_NOT_FOUND } from '../errors.js'
import type { JsonRpcMessage, McpAuthInfo } from '../mcp.js'
import type { ServeStreamable } from '../session/cluster.js'
import type { Session } from '../session/session.js'
import { PostReply, StreamableSessionTransport, type ResponseMode, type StreamSettings } from '../transports/streamable.js'
import type { ResponseSink } from '../transports/transport.js'

/** From this revision on, JSON-RPC batches are gone from the protocol. */
const NO_BATCHES_FROM = '2025-06-18'

/** What serving needs of the store: a way to hand messages to a session it admitted. */
export interface Deliverer {
  deliverTo: (session: Session, delivery: { messages: JsonRpcMessage[], headers: IncomingHttpHeaders, url: string, authInfo: McpAuthInfo | undefined, reply?: PostReply }, log: FastifyBaseLogger) => 'delivered' | 'not_found'
}

export interface StreamableSettings {
  stream: StreamSettings
  mode: ResponseMode
}

/** A session of this endpoint (an HTTP+SSE session's id means nothing here). */
export function isStreamable (session: Session): session is Session & { transport: StreamableSessionTransport } {
  return session.transport instanceof StreamableSessionTransport
}

/**
 * The session-level half of `{mcpEndpoint}`: POST hands messages to the session and
 * answers its requests, GET opens or resumes a stream, DELETE ends the session. The route
 * calls it for sessions held here; the cluster calls it on the owner for requests that
 * arrived elsewhere (then the target relays bytes back to that instance).
 */
export function streamableServer (settings: StreamableSettings, store: Deliverer): ServeStreamable {
  return async function serve (session, op, authInfo, target, log) {
    if (!isStreamable(session)) throw new FST_ERR_MCP_SSE_SESSION_NOT_FOUND()
    const { transport } = session
    switch (op.op) {
      case 'post': {
        if (op.batch && transport.protocolVersion !== undefined && transport.protocolVersion >= NO_BATCHES_FROM) {
          throw new FST_ERR_MCP_SSE_BAD_REQUEST(`JSON-RPC batches are not part of protocol revision ${transport.protocolVersion}.`)
        }
        const answer = op.requestIds.length === 0
          ? undefined
          : new PostReply({
            ...transport.replyHooks(),
            hijack: target.hijack,
            headers: target.headers,
            mode: settings.mode,
            batch: op.batch,
            requestIds: op.requestIds,
            stream: settings.stream
          })
        const delivery = { messages: op.messages, headers: op.headers, url: op.url, authInfo }
        const delivered = store.deliverTo(session, answer === undefined ? delivery : { ...delivery, reply: answer }, log)
        if (delivered !== 'delivered') throw new FST_ERR_MCP_SSE_SESSION_NOT_FOUND()
        if (answer === undefined) return 'accepted'
        await answer.done
        return 'answered'
      }
      case 'get': {
        const open = (): { res: ResponseSink, headers: OutgoingHttpHeaders } => ({ res: target.hijack(), headers: target.headers() })
        if (op.lastEventId !== undefined) {
          const resumed = await transport.resume(op.lastEventId, open)
          if (resumed === 'resumed') return 'answered'
          if (resumed === 'conflict') throw new FST_ERR_MCP_SSE_CONFLICT('the stream to resume is still open.')
        }
        if (await transport.streamAlive()) throw new FST_ERR_MCP_SSE_CONFLICT('this session already has a GET stream open.')
        const { res, headers } = open()
        transport.openStream(res, headers)
        return 'answered'
      }
      case 'delete':
        await session.close('deleted_by_client')
        return 'deleted'
    }
  }
}
