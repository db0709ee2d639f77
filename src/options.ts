import bytes from 'bytes'
import type { FastifyRequest } from 'fastify'
import type { Redis } from 'ioredis'
import { FST_ERR_MCP_SSE_INVALID_OPTION } from './errors.js'
import type { AuthProvider, AuthResult, McpAuthOptions } from './auth/types.js'
import type { McpServerLike } from './mcp.js'
import { MemoryEventStore, type McpEventStore } from './transports/event-store.js'
import { RedisEventStore } from './transports/redis-event-store.js'

/** Passed to the `server` factory once per session. */
export interface McpSessionContext {
  /**
   * The new session's id (also `transport.sessionId`); a fresh id for a stateless or
   * 2026-07-28 request, which has no session.
   */
  sessionId: string
  /**
   * `legacy`: a session or stateless request of the 2025 revisions or HTTP+SSE (servers
   * of either SDK line). `modern`: one 2026-07-28 request (an SDK v2 server is needed).
   */
  era: 'legacy' | 'modern'
  /** The request that opened the SSE stream. */
  request: FastifyRequest
  /** Who opened it, when `auth.endpoints.sse` is on; undefined otherwise. */
  auth: AuthResult | undefined
}

/** The documented CORS shape (strings, as in the reference SSE transport). */
export interface McpSseCorsOptions {
  /** `Access-Control-Allow-Origin`: `*`, one origin, or a comma-separated list. @default "*" */
  allowOrigin?: string
  /** `Access-Control-Allow-Methods`. @default "GET, POST, OPTIONS" */
  allowMethods?: string
  /** `Access-Control-Allow-Headers`. @default "Content-Type, Authorization, x-api-key" */
  allowHeaders?: string
  /** `Access-Control-Expose-Headers`. @default "Content-Type, Authorization, x-api-key" */
  exposeHeaders?: string
  /** `Access-Control-Max-Age`, in seconds. @default "86400" */
  maxAge?: string
}

/** Sharing sessions between instances through Redis. */
export interface McpRedisOptions {
  /** An `ioredis` client you own (the plugin duplicates it for pub/sub and never quits it). */
  client?: Redis
  /** Or a Redis URL, such as "redis://127.0.0.1:6379"; the plugin owns those connections. */
  url?: string
  /** Prefix of every key and channel. @default "mcp:" */
  keyPrefix?: string
  /**
   * How long a session's registry entry lives without a refresh, in ms. Live sessions are
   * refreshed every third of it; an instance that dies leaves entries that expire.
   * @default 60000
   */
  sessionTtl?: number
  /** How long `register` waits for Redis before failing. @default 5000 */
  connectTimeout?: number
  /**
   * How long an instance waits for the instance holding a session to acknowledge a
   * relayed Streamable HTTP request, in ms. The owner acknowledges as soon as it receives
   * the request, so a slow tool never trips it; an owner that is wedged (still connected,
   * not answering) does, and the client gets 503 `service_unavailable` with `Retry-After`.
   * @default 10000
   */
  relayTimeout?: number
}

/** One rate-limit budget: at most `max` within `timeWindow`, per principal (or client address). */
export interface McpRateLimitBudget {
  /** How many the window allows (an integer, at least 1). */
  max: number
  /**
   * The window: milliseconds, or a string such as "30s", "1 minute", "1h" (units ms, s,
   * m, h, d, long forms included).
   */
  timeWindow: number | string
}

/**
 * Rate limits of the plugin's routes (`@fastify/rate-limit`, in the plugin's scope only).
 * Each budget is counted per principal when the request is authenticated, else per client
 * address (`request.ip`, so the host's `trustProxy` applies); with `redis`, across every
 * instance. Over a budget: 429 `rate_limited` with `Retry-After`.
 */
export interface McpRateLimitOptions {
  /**
   * Opening sessions and streams: `GET {endpoint}`, `initialize` without
   * `Mcp-Session-Id`, every `GET {mcpEndpoint}`, and 2026-07-28 `subscriptions/listen`.
   * `false`: not limited. @default { max: 60, timeWindow: "1 minute" }
   */
  open?: McpRateLimitBudget | false
  /**
   * Every JSON-RPC message POSTed (each message of a batch counts), on every transport.
   * `false`: not limited. @default { max: 600, timeWindow: "1 minute" }
   */
  messages?: McpRateLimitBudget | false
  /**
   * Budgets of their own for some JSON-RPC methods, such as `{ "tools/call": { max: 120,
   * timeWindow: "1 minute" } }` (each message of a batch counts). @default {}
   */
  methods?: Record<string, McpRateLimitBudget>
}

export interface McpSseOptions {
  /**
   * Factory for the MCP server of one session: an `McpServer` or `Server` of
   * `@modelcontextprotocol/sdk` 1.x or of `@modelcontextprotocol/server` 2.x. An SDK
   * server can be connected only once, so this is called for every new SSE connection.
   * Required.
   */
  server: (context: McpSessionContext) => McpServerLike | Promise<McpServerLike>
  /**
   * Path of the HTTP+SSE stream (GET). Relative to the plugin's prefix. `false` turns the
   * HTTP+SSE endpoints off (and the one-URL fallback on `mcpEndpoint` with them).
   * @default "/sse"
   */
  endpoint?: string | false
  /** Path HTTP+SSE clients POST messages to. Relative to the plugin's prefix. @default "/messages" */
  messageEndpoint?: string
  /**
   * Path of the Streamable HTTP endpoint (POST, GET, DELETE), relative to the prefix. A GET
   * on it without `Mcp-Session-Id` opens an HTTP+SSE session, so one URL serves every
   * client. `false` turns it off. @default "/mcp"
   */
  mcpEndpoint?: string | false
  /**
   * How a Streamable HTTP POST is answered: `auto` as `application/json` unless messages
   * (progress, logs, server requests) come before the result, then as an event stream;
   * `json` or `sse` always. @default "auto"
   */
  responseMode?: 'auto' | 'json' | 'sse'
  /**
   * Streamable HTTP without sessions: each POST is answered on its own, with no
   * `Mcp-Session-Id`; GET and DELETE answer 405. `true`: a new server from the factory for
   * every POST, closed once it has answered. `{ reuseServers: n }`: up to `n` idle servers
   * kept per principal (every unauthenticated caller is one principal) and lent to later
   * POSTs of the same principal, one POST at a time, instead of building one per POST; a
   * kept server keeps what earlier requests set on it (the last `initialize`'s client info,
   * a log level), so use it when your tools depend on neither. @default false
   */
  stateless?: boolean | { reuseServers?: number }
  /**
   * The 2026-07-28 revision at `mcpEndpoint`: requests that carry their protocol version
   * in `_meta` are served one by one by SDK v2 servers from `server` (with `era:
   * 'modern'`). `reuseServers`: how many idle servers to keep per principal and client
   * for later requests of the same caller, instead of building one per request (0: build
   * one per request, as SDK v2's own entry does). `false`: modern requests are answered
   * so that clients fall back to `initialize`. @default { reuseServers: 0 }
   */
  modern?: false | { reuseServers?: number }
  /**
   * Prometheus metrics (prom-client) by the OpenTelemetry MCP conventions, in a registry
   * of the plugin's own: `app.mcpMetrics` (merge it into yours). `{ path }` also serves
   * it (text format) on that path, outside the MCP routes' auth unless `auth: true`
   * (which needs the `auth` option: register fails without it). `false`: no metrics. @default true
   */
  metrics?: boolean | { path?: string, auth?: boolean }
  /**
   * OpenTelemetry traces through `@opentelemetry/api`: a SERVER span per JSON-RPC message,
   * parented on `_meta.traceparent` or the HTTP request's; a no-op until the host installs
   * an OpenTelemetry SDK. `false`: no spans at all. @default true
   */
  tracing?: boolean
  /**
   * A readiness answer for load balancers: `app.mcpHealth()`, and with `{ path }` a GET
   * route answering 200 when the plugin can serve (Redis reachable when `redis` is set),
   * 503 when not, with session counts. @default no route
   */
  health?: { path: string }
  /**
   * Ends a Streamable HTTP session that no request or stream has touched for this long, in
   * ms (clients that re-initialize without DELETE must not fill `maxSessions`); 0: never.
   * @default 600000
   */
  sessionIdleTimeout?: number
  /**
   * Where Streamable HTTP stream events are kept so a client that lost a stream can
   * reconnect with `Last-Event-ID` and get exactly what it missed. `false` keeps nothing
   * (events then carry no id). `'redis'`: a {@link RedisEventStore} on the `redis`
   * option's server and key prefix (per session: 1000 events, 5 minutes), opened and
   * closed with the plugin. @default a MemoryEventStore (per session: 1000 events,
   * 1 MiB, 5 minutes)
   */
  eventStore?: McpEventStore | 'redis' | false
  /** `retry:` of each stream's priming event: how long a client waits before reconnecting, in ms. @default 1000 */
  retryInterval?: number
  /** Largest accepted POST body: bytes, or a string such as "512kb", "4mb". @default "4mb" */
  maxMessageSize?: string | number
  /** Extra headers written on every SSE response. @default {} */
  headers?: Record<string, string>
  /** CORS for the plugin's routes only; `false` turns it off. @default the values in {@link McpSseCorsOptions} */
  cors?: McpSseCorsOptions | false
  /** Milliseconds between `event: ping` keep-alives on each stream; 0 turns them off. @default 15000 */
  keepAliveInterval?: number
  /** Most sessions open at once on this instance; past it, `GET {endpoint}` answers 503. @default 10000 */
  maxSessions?: number
  /**
   * Most bytes that may wait unsent on one stream (a client that stops reading). A stream
   * already over it when the server has something more to send is closed, and its session
   * with it. Bytes or a string such as "1mb". @default "4mb"
   */
  maxBufferedBytes?: string | number
  /**
   * Origins allowed to reach the plugin's routes (DNS-rebinding protection). A request with
   * an `Origin` header not in the list answers 403; requests without `Origin` (non-browser
   * clients) pass. @default undefined (every origin)
   */
  allowedOrigins?: string[]
  /**
   * Host header values allowed (such as "mcp.example.com" or "127.0.0.1:8080"), against
   * DNS rebinding of a server on a private address; other hosts answer 403.
   * @default undefined (every host)
   */
  allowedHosts?: string[]
  /**
   * DNS-rebinding protection without configuration. With no `allowedHosts`, a request that
   * arrived on a loopback address (127.0.0.0/8, ::1) must name a loopback `Host`
   * (`localhost`, `127.x.x.x`, `[::1]`, any port); with no `allowedOrigins`, its `Origin`,
   * if any, must be a loopback origin or one you opened with `cors.allowOrigin` (`'*'`
   * opens all). Otherwise 403 `forbidden_origin`. Requests that arrived on other
   * addresses are not affected. `false` turns the default off, for servers whose own
   * front checks Host and Origin. @default true
   */
  dnsRebindingProtection?: boolean
  /**
   * Authentication: a provider and which routes need it. Sessions are bound to the
   * principal that opened them (or, when only messages are authenticated, to the first
   * one that posts). @default undefined (no authentication)
   */
  auth?: McpAuthOptions
  /**
   * Share sessions between instances through Redis, so that POSTs may land on any
   * instance behind a plain load balancer. Without it, sessions are in memory and no
   * service is needed. @default undefined
   */
  redis?: McpRedisOptions
  /**
   * Rate limits of the plugin's routes, per principal or client address (see
   * {@link McpRateLimitOptions}); `{}` turns them on with the defaults. The host app's
   * routes are never limited. @default undefined (no rate limits)
   */
  rateLimit?: McpRateLimitOptions | false
}

export interface ResolvedAuth {
  provider: AuthProvider
  sse: boolean
  messages: boolean
  mcp: boolean
}

export interface ResolvedCors {
  origin: string | string[]
  methods: string
  allowedHeaders: string
  exposedHeaders: string
  maxAge: number
}

/** Redis options with their defaults filled in; exactly one of `client` and `url` is set. */
export interface ResolvedRedis {
  client: Redis | undefined
  url: string | undefined
  keyPrefix: string
  sessionTtl: number
  connectTimeout: number
  relayTimeout: number
}

/** A rate-limit budget with its window in milliseconds. */
export interface ResolvedBudget {
  max: number
  timeWindow: number
}

/** The rate limits that apply; at least one budget is set. */
export interface ResolvedRateLimit {
  open: ResolvedBudget | undefined
  messages: ResolvedBudget | undefined
  /** By JSON-RPC method. */
  methods: ReadonlyMap<string, ResolvedBudget>
}

/** What the DNS-rebinding default checks on requests that arrived on a loopback address. */
export interface LoopbackDefaults {
  /** The Host must be a loopback name (no `allowedHosts` was given). */
  host: boolean
  /** An Origin must be a loopback one or in `opened` (no `allowedOrigins`, and not `cors.allowOrigin: '*'`). */
  origin: boolean
  /** Origins the user opened through `cors.allowOrigin`. */
  opened: ReadonlySet<string>
}

export interface ResolvedOptions {
  server: McpSseOptions['server']
  endpoint: string | false
  messageEndpoint: string
  mcpEndpoint: string | false
  responseMode: 'auto' | 'json' | 'sse'
  /** Stateless Streamable HTTP, and how many idle servers are kept per principal (0: none). */
  stateless: { reuseServers: number } | false
  modern: { reuseServers: number } | false
  metrics: { path: string | undefined, auth: boolean } | false
  tracing: boolean
  health: { path: string } | undefined
  sessionIdleTimeout: number
  eventStore: McpEventStore | undefined
  retryInterval: number
  maxMessageSize: number
  headers: Record<string, string>
  cors: ResolvedCors | false
  keepAliveInterval: number
  maxSessions: number
  maxBufferedBytes: number
  allowedOrigins: ReadonlySet<string> | undefined
  allowedHosts: ReadonlySet<string> | undefined
  loopbackDefaults: LoopbackDefaults
  auth: ResolvedAuth | undefined
  redis: ResolvedRedis | undefined
  rateLimit: ResolvedRateLimit | false
}

export const defaults = {
  endpoint: '/sse',
  messageEndpoint: '/messages',
  mcpEndpoint: '/mcp',
  responseMode: 'auto',
  stateless: false,
  modern: { reuseServers: 0 },
  metrics: true,
  tracing: true,
  sessionIdleTimeout: 600_000,
  retryInterval: 1000,
  maxMessageSize: '4mb',
  keepAliveInterval: 15_000,
  maxSessions: 10_000,
  maxBufferedBytes: '4mb',
  rateLimit: {
    open: { max: 60, timeWindow: '1 minute' },
    messages: { max: 600, timeWindow: '1 minute' }
  },
  redis: {
    keyPrefix: 'mcp:',
    sessionTtl: 60_000,
    connectTimeout: 5_000,
    relayTimeout: 10_000
  },
  cors: {
    allowOrigin: '*',
    allowMethods: 'GET, POST, OPTIONS',
    allowHeaders: 'Content-Type, Authorization, x-api-key',
    exposeHeaders: 'Content-Type, Authorization, x-api-key',
    maxAge: '86400'
  }
} as const

function fail (option: string, fix: string): never {
  throw new FST_ERR_MCP_SSE_INVALID_OPTION(option, fix)
}

function path (option: string, value: unknown): string {
  if (typeof value !== 'string' || !value.startsWith('/') || value.length < 2 || /[\s?#:*]/.test(value)) {
    fail(option, 'Use a static path starting with "/", such as "/sse" (no query, parameters or wildcards).')
  }
  return value.length > 2 && value.endsWith('/') ? value.slice(0, -1) : value
}

function size (option: string, value: unknown): number {
  const n = typeof value === 'number' ? value : typeof value === 'string' ? bytes.parse(value) : NaN
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n <= 0) {
    fail(option, 'Use a positive number of bytes or a size string such as "64kb" or "4mb".')
  }
  return n
}

function count (option: string, value: unknown, min: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    fail(option, `Use an integer of at least ${min}.`)
  }
  return value
}

function list (option: string, value: unknown, example: string): Set<string> | undefined {
  if (value === undefined) return undefined
  if (!Array.isArray(value) || !value.every(x => typeof x === 'string' && x !== '')) {
    fail(option, `Use an array of strings such as ${example}.`)
  }
  return new Set(value as string[])
}

function resolveCors (value: unknown): ResolvedCors | false {
  if (value === false) return false
  if (typeof value !== 'object' || value === null) fail('cors', 'Use an object with the documented string fields, or false.')
  const cors: Record<string, unknown> = { ...defaults.cors, ...value }
  for (const key of Object.keys(cors)) {
    if (!(key in defaults.cors)) fail(`cors.${key}`, `Known fields are ${Object.keys(defaults.cors).join(', ')}.`)
    if (typeof cors[key] !== 'string') fail(`cors.${key}`, 'Use a string, as in the documented CORS shape.')
  }
  const maxAge = Number(cors.maxAge)
  if (!Number.isInteger(maxAge) || maxAge < 0) fail('cors.maxAge', 'Use a whole number of seconds, such as "86400".')
  const origins = (cors.allowOrigin as string).split(',').map(o => o.trim()).filter(o => o !== '')
  if (origins.length === 0) fail('cors.allowOrigin', 'Use "*", one origin, or a comma-separated list of origins.')
  return {
    origin: origins.includes('*') ? '*' : origins.length === 1 ? origins[0] as string : origins,
    methods: cors.allowMethods as string,
    allowedHeaders: cors.allowHeaders as string,
    exposedHeaders: cors.exposeHeaders as string,
    maxAge
  }
}

function resolveRedis (redis: McpRedisOptions): ResolvedRedis {
  if (typeof redis !== 'object' || redis === null || (redis.client === undefined) === (redis.url === undefined)) {
    fail('redis', 'Pass exactly one of { client } (an ioredis instance) or { url } ("redis://host:6379").')
  }
  if (redis.client !== undefined && typeof redis.client.duplicate !== 'function') fail('redis.client', 'Use an ioredis client.')
  if (redis.url !== undefined && !/^rediss?:\/\//.test(redis.url)) fail('redis.url', 'Use a redis:// or rediss:// URL.')
  const keyPrefix = redis.keyPrefix ?? defaults.redis.keyPrefix
  if (typeof keyPrefix !== 'string' || keyPrefix === '') fail('redis.keyPrefix', 'Use a non-empty string such as "mcp:".')
  return {
    client: redis.client,
    url: redis.url,
    keyPrefix,
    sessionTtl: count('redis.sessionTtl', redis.sessionTtl ?? defaults.redis.sessionTtl, 100),
    connectTimeout: count('redis.connectTimeout', redis.connectTimeout ?? defaults.redis.connectTimeout, 1),
    relayTimeout: count('redis.relayTimeout', redis.relayTimeout ?? defaults.redis.relayTimeout, 1)
  }
}

function resolveLoopbackDefaults (o: Partial<McpSseOptions>, origins: Set<string> | undefined, hosts: Set<string> | undefined): LoopbackDefaults {
  const on = o.dnsRebindingProtection ?? true
  if (typeof on !== 'boolean') fail('dnsRebindingProtection', 'Use true (the default) or false.')
  // An allowOrigin the user wrote is a decision to let those pages in; the default '*' is not.
  const userOrigins = typeof o.cors === 'object' && o.cors !== null && typeof o.cors.allowOrigin === 'string'
    ? o.cors.allowOrigin.split(',').map(x => x.trim()).filter(x => x !== '')
    : []
  return {
    host: on && hosts === undefined,
    origin: on && origins === undefined && !userOrigins.includes('*'),
    opened: new Set(userOrigins)
  }
}

function resolveEventStore (value: unknown, redis: ResolvedRedis | undefined): McpEventStore | undefined {
  if (value === false) return undefined
  if (value === undefined) return new MemoryEventStore()
  if (value === 'redis') {
    if (redis === undefined) fail('eventStore', "'redis' keeps events in the Redis of the redis option: set redis too.")
    return redis.client === undefined
      ? new RedisEventStore({ url: redis.url as string, keyPrefix: redis.keyPrefix })
      : new RedisEventStore({ client: redis.client, keyPrefix: redis.keyPrefix })
  }
  const store = value as Partial<McpEventStore>
  if (typeof store !== 'object' || store === null || typeof store.append !== 'function' || typeof store.after !== 'function' || typeof store.dropSession !== 'function') {
    fail('eventStore', "Pass an object with append, after and dropSession (see McpEventStore), 'redis', or false.")
  }
  return value as McpEventStore
}

function flag (option: string, value: unknown): boolean {
  if (typeof value !== 'boolean') fail(option, 'Use true or false.')
  return value as boolean
}

function routePath (option: string, value: unknown): string {
  if (typeof value !== 'string' || !value.startsWith('/')) fail(option, 'Use a path starting with "/", such as "/metrics".')
  return value as string
}

function resolveMetrics (value: McpSseOptions['metrics'], hasAuth: boolean): ResolvedOptions['metrics'] {
  if (value === undefined || value === true) return { path: undefined, auth: false }
  if (value === false) return false
  if (typeof value !== 'object' || value === null) fail('metrics', 'Use true, false or { path, auth }.')
  const auth = value.auth === undefined ? false : flag('metrics.auth', value.auth)
  // Asked for auth with none to apply: serving the metrics open would be a silent surprise.
  if (auth && !hasAuth) fail('metrics.auth', 'It uses the auth option\'s provider, and there is none: pass auth: { provider }, or drop metrics.auth.')
  return {
    path: value.path === undefined ? undefined : routePath('metrics.path', value.path),
    auth
  }
}

function resolveHealth (value: McpSseOptions['health']): ResolvedOptions['health'] {
  if (value === undefined) return undefined
  if (typeof value !== 'object' || value === null) fail('health', 'Use { path }, such as { path: "/health" }.')
  return { path: routePath('health.path', value.path) }
}

/** The units a `timeWindow` string may use, in milliseconds. */
const WINDOW_UNITS: ReadonlyMap<string, number> = new Map([
  ...['', 'ms', 'msec', 'msecs', 'millisecond', 'milliseconds'].map(u => [u, 1] as const),
  ...['s', 'sec', 'secs', 'second', 'seconds'].map(u => [u, 1000] as const),
  ...['m', 'min', 'mins', 'minute', 'minutes'].map(u => [u, 60_000] as const),
  ...['h', 'hr', 'hrs', 'hour', 'hours'].map(u => [u, 3_600_000] as const),
  ...['d', 'day', 'days'].map(u => [u, 86_400_000] as const)
])

/** A window in ms: a number, or a string such as "30s" or "1 minute". */
function timeWindow (option: string, value: unknown): number {
  let ms = NaN
  if (typeof value === 'number') ms = value
  else if (typeof value === 'string') {
    const match = /^(\d+(?:\.\d+)?) *([a-z]*)$/i.exec(value.trim())
    const unit = match === null ? undefined : WINDOW_UNITS.get((match[2] as string).toLowerCase())
    if (unit !== undefined) ms = Math.round(Number((match as RegExpExecArray)[1]) * unit)
  }
  if (!Number.isSafeInteger(ms) || ms < 1) {
    fail(option, 'Use a whole number of milliseconds (at least 1) or a string such as "30s", "1 minute" or "1h".')
  }
  return ms
}

function budget (option: string, value: unknown): ResolvedBudget {
  if (typeof value !== 'object' || value === null) fail(option, 'Use { max, timeWindow }, such as { max: 60, timeWindow: "1 minute" }.')
  const b = value as Record<string, unknown>
  for (const key of Object.keys(b)) {
    if (key !== 'max' && key !== 'timeWindow') fail(`${option}.${key}`, 'Known fields are max and timeWindow.')
  }
  return { max: count(`${option}.max`, b.max, 1), timeWindow: timeWindow(`${option}.timeWindow`, b.timeWindow) }
}

function resolveRateLimit (value: unknown): ResolvedRateLimit | false {
  if (value === undefined || value === false) return false
  if (typeof value !== 'object' || value === null) fail('rateLimit', 'Use false or { open, messages, methods }.')
  const r = value as Record<string, unknown>
  for (const key of Object.keys(r)) {
    if (key !== 'open' && key !== 'messages' && key !== 'methods') fail(`rateLimit.${key}`, 'Known fields are open, messages and methods.')
  }
  const optional = (key: 'open' | 'messages'): ResolvedBudget | undefined =>
    r[key] === false ? undefined : budget(`rateLimit.${key}`, r[key] ?? defaults.rateLimit[key])
  const methods = new Map<string, ResolvedBudget>()
  if (r.methods !== undefined) {
    if (typeof r.methods !== 'object' || r.methods === null || Array.isArray(r.methods)) {
      fail('rateLimit.methods', 'Use an object of JSON-RPC method names to budgets, such as { "tools/call": { max: 120, timeWindow: "1 minute" } }.')
    }
    for (const [method, b] of Object.entries(r.methods)) {
      if (method === '') fail('rateLimit.methods', 'Method names must not be empty.')
      methods.set(method, budget(`rateLimit.methods.${method}`, b))
    }
  }
  const open = optional('open')
  const messages = optional('messages')
  // Nothing left to count: no limiter at all.
  if (open === undefined && messages === undefined && methods.size === 0) return false
  return { open, messages, methods }
}

function resolveStateless (value: McpSseOptions['stateless']): ResolvedOptions['stateless'] {
  if (value === undefined || value === false) return false
  if (value === true) return { reuseServers: 0 }
  if (typeof value !== 'object' || value === null) fail('stateless', 'Use true, false or { reuseServers }.')
  return { reuseServers: count('stateless.reuseServers', value.reuseServers ?? 0, 0) }
}

function resolveModern (value: McpSseOptions['modern']): ResolvedOptions['modern'] {
  if (value === false) return false
  if (value === undefined) return { ...defaults.modern }
  if (typeof value !== 'object' || value === null) fail('modern', 'Use false or { reuseServers }.')
  return { reuseServers: count('modern.reuseServers', value.reuseServers ?? defaults.modern.reuseServers, 0) }
}

/** Checks every option once, at register time, and fills in the defaults. */
export function resolveOptions (opts: Partial<McpSseOptions> | undefined): ResolvedOptions {
  const o: Partial<McpSseOptions> = opts ?? {}
  if (typeof o.server !== 'function') {
    fail('server', 'Pass a factory, e.g. server: ({ sessionId }) => new McpServer({ name, version }); it is called once per session.')
  }
  const endpoint = o.endpoint === false ? false : path('endpoint', o.endpoint ?? defaults.endpoint)
  const messageEndpoint = path('messageEndpoint', o.messageEndpoint ?? defaults.messageEndpoint)
  if (endpoint === messageEndpoint) fail('messageEndpoint', 'It must differ from endpoint.')
  const mcpEndpoint = o.mcpEndpoint === false ? false : path('mcpEndpoint', o.mcpEndpoint ?? defaults.mcpEndpoint)
  if (mcpEndpoint !== false && (mcpEndpoint === endpoint || mcpEndpoint === messageEndpoint)) {
    fail('mcpEndpoint', 'It must differ from endpoint and messageEndpoint.')
  }
  if (mcpEndpoint === false && endpoint === false) fail('endpoint', 'Turn off at most one of endpoint (HTTP+SSE) and mcpEndpoint (Streamable HTTP).')
  const responseMode = o.responseMode ?? defaults.responseMode
  if (responseMode !== 'auto' && responseMode !== 'json' && responseMode !== 'sse') fail('responseMode', 'Use "auto", "json" or "sse".')
  const stateless = resolveStateless(o.stateless)

  const headers = o.headers ?? {}
  if (typeof headers !== 'object' || headers === null || Array.isArray(headers)) fail('headers', 'Use an object of header names to string values.')
  for (const [name, value] of Object.entries(headers)) {
    if (typeof value !== 'string' || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name) || /[\r\n]/.test(value)) {
      fail(`headers.${name}`, 'Header names must be tokens and values single-line strings.')
    }
  }

  const allowedOrigins = list('allowedOrigins', o.allowedOrigins, '["https://app.example.com"]')
  const allowedHosts = list('allowedHosts', Array.isArray(o.allowedHosts) ? o.allowedHosts.map(h => typeof h === 'string' ? h.toLowerCase() : h) : o.allowedHosts, '["mcp.example.com", "127.0.0.1:8080"]')

  let auth: ResolvedAuth | undefined
  if (o.auth !== undefined) {
    if (typeof o.auth !== 'object' || o.auth === null || typeof o.auth.provider?.authenticate !== 'function') {
      fail('auth.provider', 'Pass an AuthProvider (an object with authenticate(request)), e.g. new ApiKeyAuthProvider({ keys }).')
    }
    const endpoints = o.auth.endpoints ?? {}
    for (const key of ['sse', 'messages', 'mcp'] as const) {
      if (endpoints[key] !== undefined && typeof endpoints[key] !== 'boolean') fail(`auth.endpoints.${key}`, 'Use true or false.')
    }
    auth = { provider: o.auth.provider, sse: endpoints.sse ?? true, messages: endpoints.messages ?? true, mcp: endpoints.mcp ?? true }
  }

  const redis = o.redis === undefined ? undefined : resolveRedis(o.redis)

  return {
    server: o.server,
    endpoint,
    messageEndpoint,
    mcpEndpoint,
    responseMode,
    stateless,
    modern: resolveModern(o.modern),
    metrics: resolveMetrics(o.metrics, auth !== undefined),
    tracing: flag('tracing', o.tracing ?? defaults.tracing),
    health: resolveHealth(o.health),
    sessionIdleTimeout: count('sessionIdleTimeout', o.sessionIdleTimeout ?? defaults.sessionIdleTimeout, 0),
    retryInterval: count('retryInterval', o.retryInterval ?? defaults.retryInterval, 0),
    maxMessageSize: size('maxMessageSize', o.maxMessageSize ?? defaults.maxMessageSize),
    headers: { ...headers },
    cors: resolveCors(o.cors ?? defaults.cors),
    keepAliveInterval: count('keepAliveInterval', o.keepAliveInterval ?? defaults.keepAliveInterval, 0),
    maxSessions: count('maxSessions', o.maxSessions ?? defaults.maxSessions, 1),
    maxBufferedBytes: size('maxBufferedBytes', o.maxBufferedBytes ?? defaults.maxBufferedBytes),
    allowedOrigins,
    allowedHosts,
    loopbackDefaults: resolveLoopbackDefaults(o, allowedOrigins, allowedHosts),
    auth,
    redis,
    rateLimit: resolveRateLimit(o.rateLimit),
    // Last: a 'redis' store opens a connection, so only once every other option is good.
    eventStore: resolveEventStore(o.eventStore, redis)
  }
}
