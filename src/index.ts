import type { FastifyInstance, FastifyPluginAsync, onRequestHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import { authHook } from './auth/hook.js'
import { MCP_PARAM_HEADER, type CorsSettings } from './cors.js'
import type { McpAuthFailureReason } from './auth/types.js'
import { requestGuard } from './guard.js'
import { resolveOptions, type McpSseOptions, type ResolvedCors, type ResolvedOptions } from './options.js'
import { rateLimits } from './rate-limit.js'
import type { RouteContext } from './routes/context.js'
import { messagesRoute } from './routes/messages.js'
import { resourceMetadataRoutes } from './routes/metadata.js'
import { mcpRoute, SUPPORTED_PROTOCOL_VERSIONS } from './routes/mcp.js'
import { loadModernSdk, ModernEndpoint } from './routes/modern.js'
import { sseRoute, sseStreamHandler } from './routes/sse.js'
import { setupScope } from './scope.js'
import { LocalCluster } from './session/cluster.js'
import { RedisCluster } from './session/redis.js'
import { SessionStore } from './session/store.js'
import type { McpEvents, McpHealth } from './session/types.js'
import { Telemetry } from './telemetry.js'
import type { Registry } from 'prom-client'
import type { StreamableSessionTransport } from './transports/streamable.js'
import { RedisEventStore } from './transports/redis-event-store.js'

export type { McpSseOptions, McpSseCorsOptions, McpSessionContext, McpRedisOptions } from './options.js'
export type { McpRateLimitOptions, McpRateLimitBudget } from './options.js'
export type { McpServerLike, McpTransport, McpAuthInfo, McpMessageExtra, JsonRpcMessage } from './mcp.js'
export type { McpSession, McpSessionStore, McpSessionInfo, McpEvents, McpHealth } from './session/types.js'
export type { McpErrorType, JsonRpcErrorBody } from './errors.js'
export type { CloseReason, SessionTransport, TransportKind } from './transports/transport.js'
export { SseSessionTransport, SseServerTransport } from './transports/sse.js'
export { StreamableSessionTransport, type ResponseMode } from './transports/streamable.js'
export { MemoryEventStore, type McpEventStore, type MemoryEventStoreOptions, type StoredEvent } from './transports/event-store.js'
export { RedisEventStore, type RedisEventStoreOptions } from './transports/redis-event-store.js'
export { defaults } from './options.js'
export * as errors from './errors.js'
export * from './auth/index.js'

interface ScopeContext {
  options: ResolvedOptions
  store: SessionStore
  modern: ModernEndpoint
  telemetry: Telemetry
}

/** Sessions held here, by transport. */
function countSessions (store: SessionStore): { sse: number, streamable: number } {
  let sse = 0
  for (const s of store) if (s.kind === 'sse') sse++
  return { sse, streamable: store.size - sse }
}

/**
 * The routes operators point tools at, in a scope of their own: none of the MCP routes'
 * guards, CORS or auth (the metrics route takes the auth provider with `metrics.auth`).
 */
const operationsRoutes: FastifyPluginAsync<{ options: ResolvedOptions, registry: Registry | undefined, health: () => McpHealth, refused: (reason: McpAuthFailureReason) => void }> = async function operationsRoutes (scope, { options, registry, health, refused }) {
  const metrics = options.metrics
  if (metrics !== false && metrics.path !== undefined && registry !== undefined) {
    // options.auth is set whenever metrics.auth is (resolveOptions refuses the rest).
    const onRequest = metrics.auth && options.auth !== undefined ? [authHook(options.auth.provider, refused)] : []
    if (onRequest.length > 0) scope.decorateRequest('mcpAuth', null)
    scope.get(metrics.path, { onRequest }, async (_request, reply) => {
      reply.type(registry.contentType)
      return await registry.metrics()
    })
  }
  if (options.health !== undefined) {
    scope.get(options.health.path, async (_request, reply) => {
      const h = health()
      reply.code(h.ready ? 200 : 503)
      return h
    })
  }
}

/** The encapsulated part: routes, CORS, hooks and error handler never reach the host app. */
const mcpRoutes: FastifyPluginAsync<ScopeContext> = async function mcpRoutes (scope, { options, store, modern, telemetry }) {
  setupScope(scope, {
    maxMessageSize: options.maxMessageSize,
    isOpen: id => store.get(id)?.isOpen === true,
    answered: (type, status) => { telemetry.httpError(type, status) }
  })

  // Route-level hooks: the guard (Origin/Host checks, CORS, content type), then auth
  // where `auth.endpoints` asks for it.
  const auth = options.auth
  const refused = (reason: McpAuthFailureReason): void => { telemetry.authFailed(reason) }
  const mcpCors = options.cors === false ? false : withMcpHeaders(options.cors)
  const hooks = (requireJson: boolean, authOn: boolean, cors: ResolvedCors | false = options.cors): onRequestHookHandler[] => {
    const guard = requestGuard(options, requireJson, cors)
    return auth !== undefined && authOn ? [guard, authHook(auth.provider, refused)] : [guard]
  }

  const routes: RouteContext = {
    options,
    store,
    modern,
    telemetry,
    messagePath: scope.prefix.replace(/\/+$/, '') + options.messageEndpoint,
    hooks: {
      sse: hooks(false, auth?.sse ?? false),
      messages: hooks(true, auth?.messages ?? false),
      mcpPost: hooks(true, auth?.mcp ?? false, mcpCors),
      mcp: hooks(false, auth?.mcp ?? false, mcpCors),
      mcpPreflight: hooks(false, false, mcpCors)
    },
    limits: await rateLimits(scope, options, store.redis)
  }
  const openSseSession = options.endpoint === false ? undefined : sseStreamHandler(routes)
  if (options.endpoint !== false) {
    sseRoute(scope, routes, options.endpoint)
    messagesRoute(scope, routes)
    if (options.cors !== false) {
      // The CORS hook answers preflights; these routes make the exact paths match.
      for (const url of [options.endpoint, options.messageEndpoint]) {
        scope.options(url, { onRequest: hooks(false, false), config: { cors: false } }, (_request, reply) => { reply.code(204).send() })
      }
    }
  }
  // A legacy client on the one URL meets the HTTP+SSE stream's auth, even where /mcp has none.
  const sseAuth = auth !== undefined && auth.sse && !auth.mcp ? authHook(auth.provider, refused) : undefined
  if (options.mcpEndpoint !== false) mcpRoute(scope, routes, options.mcpEndpoint, openSseSession, sseAuth)
}

/**
 * Streamable HTTP's own headers, added to the CORS settings of `{mcpEndpoint}`, and the
 * 2026-07-28 revision's `Mcp-Param-*` ones (their names are the tools' to choose).
 */
function withMcpHeaders (cors: ResolvedCors): CorsSettings {
  const add = (list: string, names: string[]): string => {
    const have = new Set(list.split(',').map(x => x.trim().toLowerCase()))
    return [list, ...names.filter(n => !have.has(n.toLowerCase()))].filter(x => x !== '').join(', ')
  }
  return {
    ...cors,
    methods: add(cors.methods, ['GET', 'POST', 'DELETE', 'OPTIONS']),
    allowedHeaders: add(cors.allowedHeaders, ['Mcp-Session-Id', 'MCP-Protocol-Version', 'Last-Event-ID', 'Mcp-Method', 'Mcp-Name']),
    exposedHeaders: add(cors.exposedHeaders, ['Mcp-Session-Id']),
    allowedHeaderPattern: MCP_PARAM_HEADER
  }
}

/**
 * Serves MCP over HTTP: Streamable HTTP at `{mcpEndpoint}`, and HTTP+SSE (`GET {endpoint}`
 * opens a session's event stream, `POST {messageEndpoint}?sessionId=` carries the
 * client's messages), from one register.
 */
async function fastifyMcpSse (fastify: FastifyInstance, opts: McpSseOptions & { prefix?: string }): Promise<void> {
  const options = resolveOptions(opts)
  // The gauges read the store and the modern endpoint when scraped (both made below).
  const telemetry: Telemetry = new Telemetry({ metrics: options.metrics !== false, tracing: options.tracing, redis: options.redis !== undefined }, {
    sessions: () => countSessions(store),
    streams: (): { sse: number, streamable: number, listen: number } => {
      let sse = 0
      let streamable = 0
      for (const s of store) {
        if (s.kind === 'sse') sse++
        else if ((s.transport as StreamableSessionTransport).hasStream) streamable++
      }
      return { sse, streamable, listen: modern.listening }
    },
    redisUp: () => options.redis === undefined ? undefined : store.connected
  })
  const store: SessionStore = new SessionStore({
    server: options.server,
    maxSessions: options.maxSessions,
    // Listen streams share the cap with sessions (the modern endpoint checks the other way).
    othersUnderCap: () => modern.listening,
    maxBufferedBytes: options.maxBufferedBytes,
    cluster: options.redis === undefined ? new LocalCluster(fastify.log) : new RedisCluster(options.redis, fastify.log),
    telemetry
  }, fastify.log)
  // An event store the plugin opened ('redis') closes with it; one passed in is the host's.
  const closeEventStore = async (): Promise<void> => {
    if (opts.eventStore === 'redis' && options.eventStore instanceof RedisEventStore) await options.eventStore.close()
  }
  // With Redis, an unreachable server fails register, with an error that says so.
  try {
    await store.start()
  } catch (err) {
    await closeEventStore()
    throw err
  }
  fastify.decorate('mcpSessions', store)
  const modern: ModernEndpoint = new ModernEndpoint(options.modern === false ? undefined : await loadModernSdk(), {
    server: options.server,
    mode: options.responseMode,
    keepAliveInterval: options.keepAliveInterval,
    maxBufferedBytes: options.maxBufferedBytes,
    reuseServers: options.modern === false ? 0 : options.modern.reuseServers,
    maxSessions: options.maxSessions,
    sessions: () => store.size,
    legacyVersions: [...SUPPORTED_PROTOCOL_VERSIONS].reverse(),
    changes: { publish: event => { store.publishChange(event) }, subscribe: listener => store.onChange(listener) },
    telemetry,
    log: fastify.log
  })
  const events: McpEvents = {
    toolsChanged: () => { store.publishChange({ kind: 'tools_list_changed' }) },
    promptsChanged: () => { store.publishChange({ kind: 'prompts_list_changed' }) },
    resourcesChanged: () => { store.publishChange({ kind: 'resources_list_changed' }) },
    resourceUpdated: uri => { store.publishChange({ kind: 'resource_updated', uri }) },
    get inFlight () { return modern.inFlight },
    get listening () { return modern.listening }
  }
  fastify.decorate('mcpEvents', events)
  fastify.decorate('mcpMetrics', telemetry.registry ?? null)
  let closing = false
  const health = (): McpHealth => {
    const redis = options.redis === undefined ? 'none' : store.connected ? 'up' : 'down'
    return { ready: !closing && redis !== 'down', redis, sessions: countSessions(store), modern: { inFlight: modern.inFlight, listening: modern.listening } }
  }
  fastify.decorate('mcpHealth', health)
  // Open streams never end by themselves: end them before the server waits for its
  // connections (in onClose, app.close() would hang on them).
  fastify.addHook('preClose', async function mcpSseClose () {
    closing = true
    await Promise.all([store.closeAll(), modern.close()])
  })
  fastify.addHook('onClose', async function mcpSseLeaveCluster () {
    await store.shutdown()
    await closeEventStore()
  })
  // fastify-plugin ignores `prefix` for the plugin itself; apply it to our routes.
  await fastify.register(mcpRoutes, { options, store, modern, telemetry, prefix: opts.prefix })
  await fastify.register(operationsRoutes, { options, registry: telemetry.registry, health, refused: reason => { telemetry.authFailed(reason) }, prefix: opts.prefix })
  const metadata = options.auth?.provider.protectedResourceMetadata?.()
  if (metadata !== undefined) await fastify.register(resourceMetadataRoutes, { metadata })
}

const plugin = fp(fastifyMcpSse, { fastify: '5.x', name: 'fastify-mcp-sse' })
export default plugin
export { plugin as fastifyMcpSse }
