import type { FastifyInstance } from 'fastify'
import type { AuthResult } from './auth/types.js'
import { mcpErrorHandler, type McpErrorType } from './errors.js'
import { validatorCompiler } from './schemas.js'
import type { Registry } from 'prom-client'
import type { McpEvents, McpHealth, McpSessionStore } from './session/types.js'

// Everything the plugin adds to Fastify's types, in one place.
declare module 'fastify' {
  interface FastifyInstance {
    /** The MCP sessions this instance holds (fastify-mcp-sse). */
    mcpSessions: McpSessionStore
    /** Change events for 2026-07-28 listen streams, and modern requests in flight (fastify-mcp-sse). */
    mcpEvents: McpEvents
    /** The plugin's Prometheus metrics (prom-client), or null with `metrics: false` (fastify-mcp-sse). */
    mcpMetrics: Registry | null
    /** Whether the plugin can serve, and what it holds (fastify-mcp-sse). */
    mcpHealth: () => McpHealth
  }
  interface FastifyRequest {
    /** Who the request was authenticated as (fastify-mcp-sse routes with auth only; null otherwise). */
    mcpAuth: AuthResult | null
  }
}

export interface ScopeSetup {
  maxMessageSize: number
  /** Whether this instance holds an open session with this id. */
  isOpen (sessionId: string): boolean
  /** Told of every error answered (metrics). */
  answered?: (type: McpErrorType, status: number) => void
}

/**
 * The settings of the plugin's encapsulated scope, none of which reach the host app:
 * TypeBox validation, JSON as the only body type, the request decorator, and the error
 * handler that turns every failure into a JSON-RPC error body.
 */
export function setupScope (scope: FastifyInstance, setup: ScopeSetup): void {
  scope.setValidatorCompiler(validatorCompiler)
  // Only JSON is parsed here, whatever parsers the host app registered; the parser
  // refuses `__proto__` and `constructor.prototype` keys.
  scope.removeAllContentTypeParsers()
  const json = scope.getDefaultJsonParser('error', 'error')
  scope.addContentTypeParser('application/json', { parseAs: 'string' }, function mcpJson (request, body, done) {
    // A GET or DELETE has nothing to say in a body; clients that send their JSON headers
    // on every request (an SDK's requestInit, a page's fetch) must not be refused for it.
    if (request.method !== 'POST' && body === '') {
      done(null, undefined)
      return
    }
    json(request, body as string, done)
  })
  // Request decorators of an encapsulated scope stay in it: the host's requests never get one.
  scope.decorateRequest('mcpAuth', null)
  scope.setErrorHandler(mcpErrorHandler(setup))
}
