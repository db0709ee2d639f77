import type { FastifyError, FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import bytes from 'bytes'
import {
  ERROR_TABLE,
  errorTypeOf,
  jsonRpcError,
  type McpErrorType
} from './errors.js'
import { resolveOptions, type McpSseOptions, type ResolvedOptions } from './options.js'
import { requestGuard } from './guard.js'
import { validatorCompiler } from './schemas.js'
import type { RouteContext } from './routes/context.js'
import { MemorySessionStore, type McpSessionStore } from './session/store.js'
import { RedisSessionStore } from './session/redis.js'
import { authHook, type AuthFailure } from './auth/hook.js'
import type { ProtectedResourceMetadata } from './auth/types.js'
import { messagesRoute } from './routes/messages.js'
import { sseRoute } from './routes/sse.js'

export type { McpSseOptions, McpSseCorsOptions, McpSessionContext, McpServerLike } from './options.js'
export type { McpSession, McpSessionStore, McpSessionInfo } from './session/store.js'
export type { McpRedisOptions } from './session/redis.js'
export { RedisSessionStore } from './session/redis.js'
export type { McpErrorType, JsonRpcErrorBody } from './errors.js'
export type { CloseReason } from './transport.js'
export { SseServerTransport } from './transport.js'
export { MemorySessionStore } from './session/store.js'
export { defaults } from './options.js'
export * as errors from './errors.js'
export * from './auth/index.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The MCP sessions this instance holds (fastify-mcp-sse). */
    mcpSessions: McpSessionStore
  }
}

interface ScopeContext {
  options: ResolvedOptions
  store: McpSessionStore
  remote: RedisSessionStore | undefined
}

function errorMessage (type: McpErrorType, err: FastifyError, options: ResolvedOptions): string {
  switch (type) {
    case 'parse_error':
      return 'Parse error: the body is not valid JSON (or holds a forbidden __proto__ / constructor.prototype key).'
    case 'message_too_large':
      return `Message too large: the limit is ${bytes.format(options.maxMessageSize)}.`
    case 'invalid_request': {
      const first = err.validation?.[0]
      if (first === undefined) return `Invalid Request: ${err.message}`
      return `Invalid Request: ${first.message}${first.instancePath === '' ? '' : ` (at ${first.instancePath})`}`
    }
    case 'internal_error':
      return 'Internal error.'
    case 'service_unavailable':
      return 'Service unavailable: the session is held by another instance and the link to it is down. Retry shortly.'
    default:
      return err.message
  }
}

/** The encapsulated part: routes, CORS, hooks and error handler never reach the host app. */
const mcpRoutes: FastifyPluginAsync<ScopeContext> = async function mcpRoutes (scope, { options, store, remote }) {
  scope.setValidatorCompiler(validatorCompiler)
  // Request decorators of an encapsulated scope stay in it: the host's requests never get one.
  scope.decorateRequest('mcpAuth', null)

  scope.setErrorHandler(function mcpErrorHandler (err: FastifyError, request: FastifyRequest, reply: FastifyReply) {
    let type = errorTypeOf(err)
    let status = ERROR_TABLE[type].status
    if (type === 'internal_error' && typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
      // Some other client error Fastify raised (a malformed request line, say).
      type = 'invalid_request'
      status = err.statusCode
    } else if (type === 'authentication_error') {
      const failure = err as unknown as AuthFailure
      status = failure.statusCode
      reply.headers(failure.headers)
    }
    if (type === 'service_unavailable') {
      reply.header('retry-after', '1')
      request.log.warn({ err }, 'fastify-mcp-sse: a cross-instance message could not be routed')
    } else if (status >= 500) {
      request.log.error({ err }, 'fastify-mcp-sse: request failed')
    }

    const body: unknown = request.body
    const msg = typeof body === 'object' && body !== null && !Array.isArray(body) ? body as Record<string, unknown> : undefined
    const query = request.query as Record<string, unknown> | undefined
    const sessionId = typeof query?.sessionId === 'string' ? query.sessionId : undefined
    reply
      .code(status)
      .type('application/json; charset=utf-8')
      .send(jsonRpcError(type, errorMessage(type, err, options), {
        id: msg?.id,
        method: msg?.method,
        sessionId,
        // A refused hijack must look exactly like an unknown session.
        connectionActive: type !== 'session_not_found' && sessionId !== undefined && store.get(sessionId)?.transport.isOpen === true
      }))
  })

  // Route-level hooks: the guard (Origin/Host allowlists, CORS, content type), then auth
  // where `auth.endpoints` asks for it.
  const auth = options.auth
  const hooks = (requireJson: boolean, authOn: boolean): onRequestHookHandler[] => {
    const guard = requestGuard(options, requireJson)
    return auth !== undefined && authOn ? [guard, authHook(auth.provider)] : [guard]
  }

  const routes: RouteContext = {
    options,
    store,
    remote,
    messagePath: scope.prefix.replace(/\/+$/, '') + options.messageEndpoint,
    hooks: { sse: hooks(false, auth?.sse ?? false), messages: hooks(true, auth?.messages ?? false) }
  }
  sseRoute(scope, routes)
  messagesRoute(scope, routes)
  if (options.cors !== false) {
    // The CORS hook answers preflights; these routes make the exact paths match.
    for (const url of [options.endpoint, options.messageEndpoint]) {
      scope.options(url, { onRequest: hooks(false, false), config: { cors: false } }, (_request, reply) => { reply.code(204).send() })
    }
  }
}

/**
 * Serves MCP over HTTP+SSE: `GET {endpoint}` opens a session's event stream,
 * `POST {messageEndpoint}?sessionId=` carries the client's JSON-RPC messages.
 */
async function fastifyMcpSse (fastify: FastifyInstance, opts: McpSseOptions & { prefix?: string }): Promise<void> {
  const options = resolveOptions(opts)
  let remote: RedisSessionStore | undefined
  if (options.redis !== undefined) {
    remote = new RedisSessionStore(options.redis, fastify.log)
    // Unreachable Redis fails register, with an error that says so.
    await remote.start()
    fastify.log.info({ instanceId: remote.instanceId }, 'fastify-mcp-sse: sharing sessions through Redis')
  }
  const store = remote ?? new MemorySessionStore()
  fastify.decorate('mcpSessions', store)
  // Open streams never end by themselves: end them before the server waits for its
  // connections (in onClose, app.close() would hang on them).
  fastify.addHook('preClose', async function mcpSseClose () {
    await store.closeAll()
  })
  if (remote !== undefined) {
    const r = remote
    fastify.addHook('onClose', async function mcpSseRedisClose () {
      await r.shutdown()
    })
  }
  // fastify-plugin ignores `prefix` for the plugin itself; apply it to our routes.
  await fastify.register(mcpRoutes, { options, store, remote, prefix: opts.prefix })
  const metadata = options.auth?.provider.protectedResourceMetadata?.()
  if (metadata !== undefined) await fastify.register(resourceMetadataRoutes, { metadata })
}

/**
 * RFC 9728 documents live at well-known paths on the host, whatever prefix the MCP
 * routes have. Public, cacheable, readable from any origin.
 */
async function resourceMetadataRoutes (scope: FastifyInstance, { metadata }: { metadata: ProtectedResourceMetadata }): Promise<void> {
  const body = JSON.stringify(metadata.document)
  for (const path of metadata.paths) {
    scope.get(path, (_request, reply) => {
      reply
        .header('access-control-allow-origin', '*')
        .header('cache-control', 'public, max-age=3600')
        .type('application/json; charset=utf-8')
        .send(body)
    })
  }
}

const plugin = fp(fastifyMcpSse, { fastify: '5.x', name: 'fastify-mcp-sse' })
export default plugin
export { plugin as fastifyMcpSse }
