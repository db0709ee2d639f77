import type { FastifyRequest } from 'fastify'
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js'
import { FST_ERR_MCP_SSE_AUTHENTICATION } from '../errors.js'
import { McpAuthError, type AuthErrorInfo, type AuthProvider, type AuthResult } from './types.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** Who the request was authenticated as (fastify-mcp-sse routes with auth only; null otherwise). */
    mcpAuth: AuthResult | null
  }
}

const DEFAULT_CHALLENGE = 'Bearer realm="mcp"'

/** The error the plugin's error handler turns into a 401/403 JSON-RPC answer. */
export interface AuthFailure extends Error {
  statusCode: number
  headers: Record<string, string>
}

export function authFailure (info: AuthErrorInfo): AuthFailure {
  const err = new FST_ERR_MCP_SSE_AUTHENTICATION(info.message) as unknown as AuthFailure
  err.statusCode = Number.isInteger(info.status) && info.status >= 400 && info.status < 500 ? info.status : 401
  const headers = { ...info.headers }
  if (err.statusCode === 401 && !Object.keys(headers).some(h => h.toLowerCase() === 'www-authenticate')) {
    headers['WWW-Authenticate'] = DEFAULT_CHALLENGE
  }
  err.headers = headers
  return err
}

function isAuthResult (value: unknown): value is AuthResult {
  return typeof value === 'object' && value !== null && typeof (value as AuthResult).principal === 'string' && (value as AuthResult).principal !== ''
}

function refusal (provider: AuthProvider, request: FastifyRequest): AuthFailure {
  let info: AuthErrorInfo = { status: 401, message: 'Unauthorized.' }
  try {
    if (provider.getAuthError !== undefined) info = provider.getAuthError(request)
  } catch (err) {
    request.log.error({ err }, 'fastify-mcp-sse: the auth provider\'s getAuthError threw')
  }
  return authFailure(info)
}

/**
 * The `onRequest` hook of the plugin's routes when auth is on. Runs before the body is
 * read and before any session lookup; preflights pass (browsers send no credentials).
 */
export function authHook (provider: AuthProvider) {
  return async function mcpAuthenticate (request: FastifyRequest): Promise<void> {
    if (request.method === 'OPTIONS') return
    let result: boolean | AuthResult
    try {
      result = await provider.authenticate(request)
    } catch (err) {
      if (err instanceof McpAuthError) {
        request.log.info({ status: err.status, reason: err.message }, 'fastify-mcp-sse: authentication refused')
        throw authFailure({ status: err.status, message: err.message, headers: err.headers })
      }
      // A broken provider refuses; it never turns into a 500 or a crash.
      request.log.warn({ err }, 'fastify-mcp-sse: the auth provider threw; answering 401')
      throw refusal(provider, request)
    }
    if (result === true) result = { principal: 'authenticated' }
    if (!isAuthResult(result)) {
      if (result !== false) request.log.error('fastify-mcp-sse: the auth provider returned neither a boolean nor an AuthResult with a principal')
      request.log.info('fastify-mcp-sse: authentication refused')
      throw refusal(provider, request)
    }
    request.mcpAuth = result
  }
}

/** The SDK's `extra.authInfo` for an authenticated caller. */
export function toAuthInfo (auth: AuthResult): AuthInfo {
  return {
    token: auth.token ?? '',
    clientId: auth.clientId ?? auth.principal,
    scopes: auth.scopes ?? [],
    ...(auth.expiresAt !== undefined ? { expiresAt: auth.expiresAt } : {}),
    extra: { ...auth.data, principal: auth.principal }
  }
}
