import type { FastifyReply, FastifyRequest } from 'fastify'
import type { ResolvedCors } from './options.js'

/**
 * The 2026-07-28 revision's custom headers (`Mcp-Param-{Name}`, from a tool's `x-mcp-header`
 * parameters): their names are the server's tools' to choose, so no fixed list can hold them.
 * `{Name}` is an HTTP token (RFC 9110 `1*tchar`).
 */
export const MCP_PARAM_HEADER = /^mcp-param-[!#$%&'*+\-.^_`|~0-9a-z]+$/i

/** CORS settings of a route: the documented options, and header names allowed by pattern. */
export interface CorsSettings extends ResolvedCors {
  /** A preflight's requested headers matching this are allowed too, beside `allowedHeaders`. */
  allowedHeaderPattern?: RegExp
}

/** Most requested headers a preflight may add by pattern (a preflight is not a place for thousands). */
const MAX_PATTERN_HEADERS = 64

/** `allowedHeaders`, with the requested ones that match `pattern` and are not in it already. */
function allowedFor (request: FastifyRequest, allowedHeaders: string, fixed: ReadonlySet<string>, pattern: RegExp): string {
  const requested = request.headers['access-control-request-headers']
  if (typeof requested !== 'string') return allowedHeaders
  const extra: string[] = []
  for (const part of requested.split(',')) {
    const name = part.trim()
    const lower = name.toLowerCase()
    if (name === '' || fixed.has(lower) || !pattern.test(name)) continue
    fixed = new Set([...fixed, lower])
    extra.push(name)
    if (extra.length >= MAX_PATTERN_HEADERS) break
  }
  return extra.length === 0 ? allowedHeaders : [allowedHeaders, ...extra].filter(x => x !== '').join(', ')
}

/**
 * CORS for the plugin's routes, from the documented string options. Returns whether it
 * answered the request (a preflight).
 *
 * Not @fastify/cors: registered inside our scope it clashes with a host app that uses it
 * too (its request decorator exists already, and its `OPTIONS *` route collides), and a
 * host's instance would run its hook on our routes before ours. So the plugin answers
 * CORS itself, in its own order (origin check, CORS, then auth), and its routes opt out of
 * a host's @fastify/cors with `config: { cors: false }`.
 */
export function corsResponder (cors: CorsSettings): (request: FastifyRequest, reply: FastifyReply) => boolean {
  const anyOrigin = cors.origin === '*'
  const pattern = cors.allowedHeaderPattern
  const fixed: ReadonlySet<string> = new Set(cors.allowedHeaders.split(',').map(x => x.trim().toLowerCase()))
  const allowed = new Set(typeof cors.origin === 'string' ? [cors.origin] : cors.origin)
  const maxAge = String(cors.maxAge)
  return function mcpCors (request, reply) {
    // The answer depends on the request's Origin: caches must key on it.
    if (!anyOrigin) reply.header('vary', 'Origin')
    const origin = request.headers.origin
    const preflight = request.method === 'OPTIONS'
    // Only browsers send Origin, and only they read CORS headers: other MCP clients get
    // none of them on their GETs and POSTs.
    if (origin === undefined && !preflight) return false
    if (anyOrigin) reply.header('access-control-allow-origin', '*')
    else if (origin !== undefined && allowed.has(origin)) reply.header('access-control-allow-origin', origin)
    reply.header('access-control-expose-headers', cors.exposedHeaders)
    if (!preflight) return false
    // Every OPTIONS is answered here, before auth (browsers send preflights without
    // credentials) and before any body would be read.
    // Allowed by pattern: the answer depends on the headers asked for, too.
    if (pattern !== undefined) reply.header('vary', anyOrigin ? 'Access-Control-Request-Headers' : 'Origin, Access-Control-Request-Headers')
    reply
      .header('access-control-allow-methods', cors.methods)
      .header('access-control-allow-headers', pattern === undefined ? cors.allowedHeaders : allowedFor(request, cors.allowedHeaders, fixed, pattern))
      .header('access-control-max-age', maxAge)
      .code(204)
      .header('content-length', '0')
      .send()
    return true
  }
}
