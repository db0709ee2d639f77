import type { FastifyInstance, onRequestHookHandler } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { JSONRPCMessage, MessageExtraInfo } from '@modelcontextprotocol/sdk/types.js'
import {
  FST_ERR_MCP_SSE_HANDLER_ERROR,
  FST_ERR_MCP_SSE_SESSION_NOT_FOUND,
  FST_ERR_MCP_SSE_UNSUPPORTED_MEDIA_TYPE
} from '../errors.js'
import type { RouteContext } from './context.js'
import { toAuthInfo } from '../auth/hook.js'
import { MessageBody } from '../schemas.js'
import type { SseSession } from '../session/session.js'

/** Rejects anything but `application/json` before a byte of the body is read. */
const requireJson: onRequestHookHandler = function requireJson (request, _reply, done) {
  const header = request.headers['content-type']
  const semi = header === undefined ? -1 : header.indexOf(';')
  const type = header === undefined ? '' : (semi === -1 ? header : header.slice(0, semi)).trim().toLowerCase()
  if (type !== 'application/json') {
    done(new FST_ERR_MCP_SSE_UNSUPPORTED_MEDIA_TYPE(type === '' ? '(none)' : type.slice(0, 100)))
    return
  }
  done()
}

/** `POST {messageEndpoint}?sessionId=`: hands JSON-RPC messages to the session's server. */
export function messagesRoute (scope: FastifyInstance, ctx: RouteContext): void {
  const { options, store } = ctx

  // Only JSON is parsed here, whatever parsers the host app registered; the parser
  // refuses `__proto__` and `constructor.prototype` keys.
  scope.removeAllContentTypeParsers()
  scope.addContentTypeParser(
    'application/json',
    { parseAs: 'string', bodyLimit: options.maxMessageSize },
    scope.getDefaultJsonParser('error', 'error')
  )

  scope.withTypeProvider<TypeBoxTypeProvider>().post(options.messageEndpoint, {
    bodyLimit: options.maxMessageSize,
    schema: { body: MessageBody },
    onRequest: [...ctx.hooks.messages, requireJson],
    config: { cors: false }
  }, function postMessage (request, reply): void {
    const sessionId = (request.query as { sessionId?: unknown }).sessionId
    const session = (typeof sessionId === 'string' ? store.get(sessionId) : undefined) as SseSession | undefined
    if (session === undefined || !session.transport.isOpen) {
      throw new FST_ERR_MCP_SSE_SESSION_NOT_FOUND()
    }
    const auth = request.mcpAuth
    let authInfo = session.authInfo
    if (auth !== null) {
      if (session.principal === undefined) {
        session.bind(auth)
      } else if (session.principal !== auth.principal) {
        // Answered exactly like an unknown session: a stranger learns nothing.
        request.log.warn({ sessionId, principal: auth.principal }, 'fastify-mcp-sse: refused a message from a principal that does not own the session')
        throw new FST_ERR_MCP_SSE_SESSION_NOT_FOUND()
      }
      authInfo = toAuthInfo(auth)
    }
    const extra: MessageExtraInfo = authInfo === undefined
      ? { requestInfo: { headers: request.headers } }
      : { requestInfo: { headers: request.headers }, authInfo }
    const body = request.body as JSONRPCMessage | JSONRPCMessage[]
    const transport = session.transport
    try {
      if (Array.isArray(body)) {
        for (let i = 0; i < body.length; i++) transport.receive(body[i] as JSONRPCMessage, extra)
      } else {
        transport.receive(body, extra)
      }
    } catch (err) {
      request.log.error({ err, sessionId }, 'fastify-mcp-sse: the session\'s message handler threw')
      // The cause stays in the log: internals are not the client's to read.
      throw new FST_ERR_MCP_SSE_HANDLER_ERROR()
    }
    reply.code(202).send()
  })
}
