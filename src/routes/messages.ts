import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { JSONRPCMessage, MessageExtraInfo } from '@modelcontextprotocol/sdk/types.js'
import {
  FST_ERR_MCP_SSE_HANDLER_ERROR,
  FST_ERR_MCP_SSE_SESSION_NOT_FOUND
} from '../errors.js'
import type { RouteContext } from './context.js'
import { toAuthInfo } from '../auth/hook.js'
import { MessageBody } from '../schemas.js'
import type { SseSession } from '../session/session.js'
import type { RedisSessionStore } from '../session/redis.js'
import type { AuthResult } from '../auth/types.js'

/** `POST {messageEndpoint}?sessionId=`: hands JSON-RPC messages to the session's server. */
export function messagesRoute (scope: FastifyInstance, ctx: RouteContext): void {
  const { options, store, remote } = ctx

  // Only JSON is parsed here, whatever parsers the host app registered; the parser
  // refuses `__proto__` and `constructor.prototype` keys.
  scope.removeAllContentTypeParsers()
  scope.addContentTypeParser(
    'application/json',
    { parseAs: 'string' },
    scope.getDefaultJsonParser('error', 'error')
  )

  scope.withTypeProvider<TypeBoxTypeProvider>().post(options.messageEndpoint, {
    bodyLimit: options.maxMessageSize,
    schema: { body: MessageBody },
    onRequest: ctx.hooks.messages,
    config: { cors: false }
  }, function postMessage (request, reply): Promise<void> | void {
    const query = request.query as { sessionId?: unknown }
    const sessionId = typeof query.sessionId === 'string' ? query.sessionId : undefined
    const session = (sessionId === undefined ? undefined : store.get(sessionId)) as SseSession | undefined
    const auth = request.mcpAuth
    const body = request.body as JSONRPCMessage | JSONRPCMessage[]

    if (session === undefined || !session.transport.isOpen) {
      // Not held here: with Redis, another instance may hold it.
      if (remote === undefined || sessionId === undefined) throw new FST_ERR_MCP_SSE_SESSION_NOT_FOUND()
      return forward(request, reply, sessionId, Array.isArray(body) ? body : [body])
    }
    if (auth !== null && session.principal === undefined && remote !== undefined) {
      // First poster of an unbound session: the binding must be cluster-wide.
      return remote.bindPrincipal(session.id, auth.principal).then(owner => {
        // Another principal bound it first (through another instance): not this caller's.
        if (owner !== auth.principal) refuse(request, session.id, auth.principal)
        session.bind(auth)
        deliver(request, reply, session, body)
      })
    }
    deliver(request, reply, session, body)
  })

  function refuse (request: FastifyRequest, sessionId: string, principal: string): never {
    // Answered exactly like an unknown session: a stranger learns nothing.
    request.log.warn({ sessionId, principal }, 'fastify-mcp-sse: refused a message from a principal that does not own the session')
    throw new FST_ERR_MCP_SSE_SESSION_NOT_FOUND()
  }

  /** Hands the messages to a session held here, in order. */
  function deliver (request: FastifyRequest, reply: FastifyReply, session: SseSession, body: JSONRPCMessage | JSONRPCMessage[]): void {
    const auth = request.mcpAuth
    let authInfo = session.authInfo
    if (auth !== null) {
      if (session.principal === undefined) session.bind(auth)
      else if (session.principal !== auth.principal) refuse(request, session.id, auth.principal)
      authInfo = toAuthInfo(auth)
    }
    const extra: MessageExtraInfo = authInfo === undefined
      ? { requestInfo: { headers: request.headers } }
      : { requestInfo: { headers: request.headers }, authInfo }
    const transport = session.transport
    try {
      if (Array.isArray(body)) {
        for (let i = 0; i < body.length; i++) transport.receive(body[i] as JSONRPCMessage, extra)
      } else {
        transport.receive(body, extra)
      }
    } catch (err) {
      request.log.error({ err, sessionId: session.id }, 'fastify-mcp-sse: the session\'s message handler threw')
      // The cause stays in the log: internals are not the client's to read.
      throw new FST_ERR_MCP_SSE_HANDLER_ERROR()
    }
    reply.code(202).send()
  }

  /** Publishes the messages to the instance that holds the session (auth checked here first). */
  async function forward (request: FastifyRequest, reply: FastifyReply, sessionId: string, messages: JSONRPCMessage[]): Promise<void> {
    const auth = request.mcpAuth
    const result = await (remote as RedisSessionStore).route(sessionId, messages, request.headers,
      auth === null ? undefined : { principal: auth.principal, authInfo: toAuthInfo(auth) })
    if (result === 'forbidden') refuse(request, sessionId, (auth as AuthResult).principal)
    if (result === 'not_found') throw new FST_ERR_MCP_SSE_SESSION_NOT_FOUND()
    reply.code(202).send()
  }
}
