import type { onRequestHookHandler, preHandlerAsyncHookHandler } from 'fastify'
import type { ResolvedOptions } from '../options.js'
import type { SessionStore } from '../session/store.js'
import type { Telemetry } from '../telemetry.js'
import type { ModernEndpoint } from './modern.js'

/** What the route modules need from the plugin. */
export interface RouteContext {
  options: ResolvedOptions
  store: SessionStore
  /** The 2026-07-28 revision's requests at {mcpEndpoint}. */
  modern: ModernEndpoint
  /** Metrics and traces. */
  telemetry: Telemetry
  /** Full path of the message endpoint, every prefix included. */
  messagePath: string
  /** `onRequest` hooks of each route, in order (guard, then auth where it applies). */
  hooks: {
    sse: onRequestHookHandler[]
    messages: onRequestHookHandler[]
    /** POST {mcpEndpoint} (JSON bodies only). */
    mcpPost: onRequestHookHandler[]
    /** GET, DELETE and OPTIONS {mcpEndpoint}. */
    mcp: onRequestHookHandler[]
    mcpPreflight: onRequestHookHandler[]
  }
  /** `preHandler` hooks of each route: the rate limits, once the body is parsed and auth done (none when off). */
  limits: RouteLimits
}

/** The rate-limit hooks of the routes that count against a budget (see rate-limit.ts). */
export interface RouteLimits {
  /** GET {endpoint}. */
  sse: preHandlerAsyncHookHandler[]
  /** POST {messageEndpoint}. */
  messages: preHandlerAsyncHookHandler[]
  /** POST {mcpEndpoint} (2025 sessions, stateless and 2026-07-28 requests alike). */
  mcpPost: preHandlerAsyncHookHandler[]
  /** GET {mcpEndpoint}. */
  mcpGet: preHandlerAsyncHookHandler[]
}
