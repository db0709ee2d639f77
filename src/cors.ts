import type { FastifyReply, FastifyRequest } from 'fastify'
import type { ResolvedCors } from './options.js'

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
export function corsResponder (cors: ResolvedCors): (request: FastifyRequest, reply: FastifyReply) => boolean {
  const anyOrigin = cors.origin === '*'
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
    reply
      .header('access-control-allow-methods', cors.methods)
      .header('access-control-allow-headers', cors.allowedHeaders)
      .header('access-control-max-age', maxAge)
      .code(204)
      .header('content-length', '0')
      .send()
    return true
  }
}
