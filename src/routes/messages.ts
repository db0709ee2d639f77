import type { FastifyInstance, FastifyReply } from 'fastify'
import { FST_ERR_MCP_SSE_SESSION_NOT_FOUND } from '../errors.js'
import type { JsonRpcMessage } from '../mcp.js'
import { MessageBody } from '../schemas.js'
import type { DeliveryResult } from '../session/cluster.js'
import type { RouteContext } from './context.js'

/** 202 once the store has the messages; anything else looks like an unknown session. */
function answer (reply: FastifyReply, result: DeliveryResult): void {
  // 'forbidden' is answered exactly like an unknown session: a stranger learns nothing.
  if (result !== 'delivered') throw new FST_ERR_MCP_SSE_SESSION_NOT_FOUND()
  reply.code(202).send()
}

/** `POST {messageEndpoint}?sessionId=`: hands JSON-RPC messages to the session's server. */
export function messagesRoute (scope: FastifyInstance, ctx: RouteContext): void {
  const { options, store } = ctx

  scope.post(options.messageEndpoint, {
    bodyLimit: options.maxMessageSize,
    schema: { body: MessageBody },
    onRequest: ctx.hooks.messages,
    preHandler: ctx.limits.messages,
    config: { cors: false }
  }, function postMessage (request, reply): Promise<void> | void {
    const query = request.query as { sessionId?: unknown }
    if (typeof query.sessionId !== 'string') throw new FST_ERR_MCP_SSE_SESSION_NOT_FOUND()
    const body = request.body as JsonRpcMessage | JsonRpcMessage[]
    const result = store.deliver(query.sessionId, {
      messages: Array.isArray(body) ? body : [body],
      headers: request.headers,
      url: request.url,
      auth: request.mcpAuth ?? undefined
    }, request.log)
    if (typeof result === 'string') return answer(reply, result)
    return result.then(r => answer(reply, r))
  })
}
