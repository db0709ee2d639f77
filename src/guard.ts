import type { FastifyRequest, onRequestHookHandler } from 'fastify'
import { corsResponder } from './cors.js'
import { FST_ERR_MCP_SSE_FORBIDDEN_ORIGIN, FST_ERR_MCP_SSE_UNSUPPORTED_MEDIA_TYPE } from './errors.js'
import type { ResolvedOptions } from './options.js'

/** The `application/json` check of the message route, or the error to answer with. */
function jsonCheck (request: FastifyRequest): Error | undefined {
  const header = request.headers['content-type']
  const semi = header === undefined ? -1 : header.indexOf(';')
  const type = header === undefined ? '' : (semi === -1 ? header : header.slice(0, semi)).trim().toLowerCase()
  if (type === 'application/json') return undefined
  return new FST_ERR_MCP_SSE_UNSUPPORTED_MEDIA_TYPE(type === '' ? '(none)' : type.slice(0, 100))
}

/**
 * The first `onRequest` hook of every plugin route, doing in one call, in this order:
 * the Origin/Host allowlists (DNS-rebinding protection; 403 before anything else), CORS
 * (answering preflights), and for the message route the content type (415 before a byte
 * of the body is read). Auth, when on, is a second hook after it.
 */
export function requestGuard (options: ResolvedOptions, requireJson: boolean): onRequestHookHandler {
  const origins = options.allowedOrigins
  const hosts = options.allowedHosts
  const cors = options.cors === false ? undefined : corsResponder(options.cors)
  return function mcpGuard (request, reply, done) {
    if (origins !== undefined) {
      const origin = request.headers.origin
      if (origin !== undefined && !origins.has(origin)) {
        done(new FST_ERR_MCP_SSE_FORBIDDEN_ORIGIN('Origin', origin.slice(0, 200)))
        return
      }
    }
    if (hosts !== undefined) {
      const host = request.headers.host
      if (host === undefined || !hosts.has(host.toLowerCase())) {
        done(new FST_ERR_MCP_SSE_FORBIDDEN_ORIGIN('Host', (host ?? '').slice(0, 200)))
        return
      }
    }
    if (cors !== undefined && cors(request, reply)) return
    done(requireJson && request.method === 'POST' ? jsonCheck(request) : undefined)
  }
}
