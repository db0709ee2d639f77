import fastifyRateLimit, { normalizeIP } from '@fastify/rate-limit'
import type { FastifyInstance, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify'
import type { Redis } from 'ioredis'
import { FST_ERR_MCP_SSE_RATE_LIMITED } from './errors.js'
import type { JsonRpcMessage } from './mcp.js'
import type { ResolvedBudget, ResolvedOptions } from './options.js'
import type { RouteLimits } from './routes/context.js'
import { isModernRequest } from './routes/modern.js'

// @fastify/rate-limit declares a route's `config.rateLimit`, which turns Fastify's empty
// FastifyContextConfig into a type that refuses objects with none of its fields: the
// routes' `config: { cors: false }` must be declared too.
declare module 'fastify' {
  interface FastifyContextConfig {
    /** Read by a host app's @fastify/cors: `false` leaves the route to the plugin's own CORS. */
    cors?: unknown
  }
}

type Limiter = ReturnType<FastifyInstance['createRateLimit']>
/** A limiter's answer; `isAllowed: true` comes only from an allow list, and these budgets have none. */
type Counted = Extract<Awaited<ReturnType<Limiter>>, { isAllowed: false }>

/** What one budget says of one request: the numbers its headers carry. */
interface Verdict {
  budget: string
  max: number
  remaining: number
  /** Seconds until the window ends. */
  reset: number
  exceeded: boolean
}

/** Who a request counts against: its principal when authenticated, else its client address. */
function callerOf (request: FastifyRequest): string {
  const principal = request.mcpAuth?.principal
  return principal === undefined ? `ip:${normalizeIP(request.ip)}` : `principal:${principal}`
}

/** One budget (`open`, `messages`, `methods.tools/call`), counted by a limiter of its own. */
class Budget {
  readonly #name: string
  readonly #max: number
  readonly #limit: Limiter

  constructor (scope: FastifyInstance, name: string, { max, timeWindow }: ResolvedBudget) {
    this.#name = name
    this.#max = max
    this.#limit = scope.createRateLimit({
      max,
      timeWindow,
      // In Redis every limiter of a scope shares one namespace: each budget keys its own.
      keyGenerator: request => `${name}|${callerOf(request)}`,
      // Redis away: serve uncounted rather than refuse.
      skipOnError: true,
      // Settings of a host's own @fastify/rate-limit must not change these budgets.
      allowList: undefined,
      continueExceeding: false,
      exponentialBackoff: false
    } as Parameters<FastifyInstance['createRateLimit']>[0])
  }

  /** Counts `times` (the messages of a batch) against the budget; undefined if the store could not count. */
  async take (request: FastifyRequest, times: number): Promise<Verdict | undefined> {
    // Past max + 1 the answer cannot change (exceeded until the window ends): count no further.
    const counts = Array.from({ length: Math.min(times, this.#max + 1) }, async () => await this.#limit(request) as Counted)
    // A count the store failed to make (Redis away) comes back with no window.
    const counted = (await Promise.all(counts)).filter(c => c.ttl > 0)
    if (counted.length === 0) return undefined
    return {
      budget: this.#name,
      max: this.#max,
      remaining: counted.reduce((least, c) => Math.min(least, c.remaining), this.#max),
      reset: counted.reduce((most, c) => Math.max(most, c.ttlInSeconds), 0),
      exceeded: counted.some(c => c.isExceeded)
    }
  }
}

/** A budget, and how many this request takes of it. */
type Charge = [Budget, number]

const NONE: RouteLimits = { sse: [], messages: [], mcpPost: [], mcpGet: [] }

/**
 * The rate limits of the plugin's routes: `@fastify/rate-limit`, registered in the
 * plugin's encapsulated scope only (`global: false`: the host's routes are never
 * counted), one limiter per budget, cluster-wide in the cluster's Redis. The hooks run as
 * `preHandler`s, after auth (so a principal is known) and body parsing (so messages can
 * be counted), and before anything is accepted. Preflights and DELETE take nothing.
 */
export async function rateLimits (scope: FastifyInstance, options: ResolvedOptions, redis: Redis | undefined): Promise<RouteLimits> {
  const settings = options.rateLimit
  if (settings === false) return NONE
  if (scope.hasDecorator('createRateLimit')) {
    // Its decorator is the one this scope sees, and its store the one that counts.
    scope.log.warn('fastify-mcp-sse: @fastify/rate-limit is already registered around the plugin; the rateLimit budgets are counted in its store')
  } else {
    await scope.register(fastifyRateLimit, {
      global: false,
      skipOnError: true,
      ...(options.redis === undefined ? {} : { redis, nameSpace: `${options.redis.keyPrefix}ratelimit:` })
    })
  }
  const open = settings.open === undefined ? undefined : new Budget(scope, 'open', settings.open)
  const messages = settings.messages === undefined ? undefined : new Budget(scope, 'messages', settings.messages)
  const methods = new Map<string, Budget>()
  for (const [method, budget] of settings.methods) methods.set(method, new Budget(scope, `methods.${method}`, budget))

  const opening = (): Charge[] => open === undefined ? [] : [[open, 1]]
  /** `messages` takes one per message, `methods` one per message of its method. */
  const messageCharges = (request: FastifyRequest): Charge[] => {
    const body = request.body as JsonRpcMessage | JsonRpcMessage[]
    const list = Array.isArray(body) ? body : [body]
    const charges: Charge[] = messages === undefined ? [] : [[messages, list.length]]
    const byMethod = new Map<Budget, number>()
    for (const m of list) {
      // `method` is a string or absent (the route's schema said so).
      const budget = methods.get(m.method as string)
      if (budget !== undefined) byMethod.set(budget, (byMethod.get(budget) ?? 0) + 1)
    }
    return [...charges, ...byMethod]
  }
  /** A POST to {mcpEndpoint} opens something with `initialize` without a session, or a 2026-07-28 listen stream. */
  const opensOnPost = (request: FastifyRequest): boolean => {
    const body = request.body as JsonRpcMessage | JsonRpcMessage[]
    const list = Array.isArray(body) ? body : [body]
    if (isModernRequest(request.headers, body)) return list.some(m => m.method === 'subscriptions/listen')
    return (request.headers['mcp-session-id'] ?? '') === '' && list.some(m => m.method === 'initialize')
  }

  return {
    sse: [limit(opening)],
    mcpGet: [limit(opening)],
    messages: [limit(messageCharges)],
    mcpPost: [limit(request => opensOnPost(request) ? [...opening(), ...messageCharges(request)] : messageCharges(request))]
  }
}

/**
 * The `preHandler` that counts a request against its budgets. Within them, the
 * `x-ratelimit-*` headers describe the budget closest to its limit; past one, the request
 * is refused with 429 `rate_limited`, `Retry-After` and the headers of the budget that
 * frees up last.
 */
function limit (charges: (request: FastifyRequest) => Charge[]): preHandlerAsyncHookHandler {
  return async function mcpRateLimit (request, reply) {
    const verdicts = (await Promise.all(charges(request).map(async ([budget, times]) => await budget.take(request, times))))
      .filter(v => v !== undefined)
    if (verdicts.length === 0) return
    const over = verdicts.filter(v => v.exceeded).sort((a, b) => b.reset - a.reset)
    const shown = over[0] ?? verdicts.sort((a, b) => a.remaining - b.remaining)[0] as Verdict
    reply.header('x-ratelimit-limit', shown.max)
    reply.header('x-ratelimit-remaining', shown.remaining)
    reply.header('x-ratelimit-reset', shown.reset)
    if (!shown.exceeded) return
    reply.header('retry-after', shown.reset)
    throw new FST_ERR_MCP_SSE_RATE_LIMITED(shown.budget, shown.reset)
  }
}
