import type { onRequestHookHandler } from 'fastify'
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
}
