import type { onRequestHookHandler } from 'fastify'
import type { ResolvedOptions } from '../options.js'
import type { McpSessionStore } from '../session/store.js'
import type { RedisSessionStore } from '../session/redis.js'

/** What the route modules need from the plugin. */
export interface RouteContext {
  options: ResolvedOptions
  store: McpSessionStore
  /** The Redis-backed store, when sessions are shared between instances. */
  remote: RedisSessionStore | undefined
  /** Full path of the message endpoint, every prefix included. */
  messagePath: string
  /** `onRequest` hooks of each route, in order (origin, CORS, auth). */
  hooks: { sse: onRequestHookHandler[], messages: onRequestHookHandler[] }
}
