import type { FastifyRequest, onRequestHookHandler } from 'fastify'
import { corsResponder, type CorsSettings } from './cors.js'
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

const LOOPBACK_IPV4 = /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/

/** A loopback address as a socket reports it (IPv4, IPv6, or IPv4-mapped IPv6). */
export function isLoopbackAddress (address: string | undefined): boolean {
  if (address === undefined) return false
  if (address === '::1') return true
  return LOOPBACK_IPV4.test(address.startsWith('::ffff:') ? address.slice(7) : address)
}

/** A loopback host name: `localhost`, an IPv4 loopback literal, or `[::1]`. */
function isLoopbackName (hostname: string): boolean {
  const h = hostname.toLowerCase()
  return h === 'localhost' || h === '[::1]' || LOOPBACK_IPV4.test(h)
}

/** A `Host` header naming a loopback host, on any port. */
export function isLoopbackHost (host: string | undefined): boolean {
  if (host === undefined) return false
  const end = host.startsWith('[') ? host.indexOf(']') + 1 : host.indexOf(':')
  return isLoopbackName(end <= 0 ? host : host.slice(0, end))
}

/** An `Origin` of a page served from a loopback host (http or https, any port). */
export function isLoopbackOrigin (origin: string): boolean {
  if (!origin.startsWith('http://') && !origin.startsWith('https://')) return false
  try {
    return isLoopbackName(new URL(origin).hostname)
  } catch {
    return false
  }
}

const HOST_HELP = ' This server listens on a loopback address, and to stop DNS rebinding it answers only' +
  ' requests for localhost, 127.0.0.1 or [::1] unless told otherwise. Reached through a reverse proxy or' +
  ' by another name? List that host in the allowedHosts option.'
const ORIGIN_HELP = ' This server listens on a loopback address, and to stop DNS rebinding it answers only' +
  ' pages from loopback origins unless told otherwise. To let this page in, list its origin in the' +
  ' allowedOrigins option (or in cors.allowOrigin).'

/**
 * The first `onRequest` hook of every plugin route, doing in one call, in this order:
 * the Origin/Host checks (DNS-rebinding protection; 403 before anything else), CORS
 * (answering preflights), and for the message route the content type (415 before a byte
 * of the body is read). Auth, when on, is a second hook after it.
 *
 * The Origin/Host checks are the configured allowlists, and otherwise, for requests that
 * arrived on a loopback address, the loopback default (see `dnsRebindingProtection`).
 */
export function requestGuard (options: ResolvedOptions, requireJson: boolean, corsSettings: CorsSettings | false = options.cors): onRequestHookHandler {
  const origins = options.allowedOrigins
  const hosts = options.allowedHosts
  const loopback = options.loopbackDefaults
  const checkLoopback = loopback.host || loopback.origin
  const cors = corsSettings === false ? undefined : corsResponder(corsSettings)
  return function mcpGuard (request, reply, done) {
    const origin = request.headers.origin
    if (origins !== undefined && origin !== undefined && !origins.has(origin)) {
      done(new FST_ERR_MCP_SSE_FORBIDDEN_ORIGIN('Origin', origin.slice(0, 200), ''))
      return
    }
    if (hosts !== undefined) {
      const host = request.headers.host
      if (host === undefined || !hosts.has(host.toLowerCase())) {
        done(new FST_ERR_MCP_SSE_FORBIDDEN_ORIGIN('Host', (host ?? '').slice(0, 200), ''))
        return
      }
    }
    // Only a request that arrived on a loopback address can be a rebound one: a page on
    // a hostile name that resolves to 127.0.0.1. (An injected request has no address.)
    if (checkLoopback && isLoopbackAddress(request.raw.socket?.localAddress)) {
      const host = request.headers.host
      if (loopback.host && !isLoopbackHost(host)) {
        done(new FST_ERR_MCP_SSE_FORBIDDEN_ORIGIN('Host', (host ?? '').slice(0, 200), HOST_HELP))
        return
      }
      if (loopback.origin && origin !== undefined && !isLoopbackOrigin(origin) && !loopback.opened.has(origin)) {
        done(new FST_ERR_MCP_SSE_FORBIDDEN_ORIGIN('Origin', origin.slice(0, 200), ORIGIN_HELP))
        return
      }
    }
    if (cors !== undefined && cors(request, reply)) return
    done(requireJson && request.method === 'POST' ? jsonCheck(request) : undefined)
  }
}
