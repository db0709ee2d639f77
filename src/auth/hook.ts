import type { FastifyRequest } from 'fastify'
import { McpAuthenticationError } from '../errors.js'
import { McpAuthError, type AuthErrorInfo, type AuthProvider, type AuthResult, type McpAuthFailureReason } from './types.js'

const DEFAULT_CHALLENGE = 'Bearer realm="mcp"'

/** The error the plugin's error handler turns into a 401/403 JSON-RPC answer. */
export function authFailure (info: AuthErrorInfo): McpAuthenticationError {
  const status = Number.isInteger(info.status) && info.status >= 400 && info.status < 500 ? info.status : 401
  const headers = { ...info.headers }
  if (status === 401 && !Object.keys(headers).some(h => h.toLowerCase() === 'www-authenticate')) {
    headers['WWW-Authenticate'] = DEFAULT_CHALLENGE
  }
  return new McpAuthenticationError(info.message, status, headers)
}

function isAuthResult (value: unknown): value is AuthResult {
  return typeof value === 'object' && value !== null && typeof (value as AuthResult).principal === 'string' && (value as AuthResult).principal !== ''
}

function refusal (provider: AuthProvider, request: FastifyRequest): McpAuthenticationError {
  let info: AuthErrorInfo = { status: 401, message: 'Unauthorized.' }
  try {
    if (provider.getAuthError !== undefined) info = provider.getAuthError(request)
  } catch (err) {
    request.log.error({ err }, 'fastify-mcp-sse: the auth provider\'s getAuthError threw')
  }
  return authFailure(info)
}

/** Why a provider's McpAuthError refused, when it did not say. */
function reasonOf (err: McpAuthError): McpAuthFailureReason {
  if (err.reason !== undefined) return err.reason
  if (err.status === 403) return 'insufficient_scope'
  return /expired/i.test(err.message) ? 'expired' : 'invalid_credentials'
}

/** A provider that returned false: did the request carry anything like a credential? */
function sentCredentials (provider: AuthProvider, request: FastifyRequest): boolean {
  const headers = request.headers
  if (headers.authorization !== undefined || headers['x-api-key'] !== undefined) return true
  const own = (provider as { headerName?: unknown }).headerName
  return typeof own === 'string' && headers[own.toLowerCase()] !== undefined
}

/**
 * The `onRequest` hook of the plugin's routes when auth is on. Runs before the body is
 * read and before any session lookup. Preflights never reach it: the guard before it
 * answers every OPTIONS (browsers send them without credentials). `refused` hears why
 * each refusal happened (the metrics' bounded reasons).
 */
export function authHook (provider: AuthProvider, refused?: (reason: McpAuthFailureReason) => void) {
  return async function mcpAuthenticate (request: FastifyRequest): Promise<void> {
    let result: boolean | AuthResult
    try {
      result = await provider.authenticate(request)
    } catch (err) {
      if (err instanceof McpAuthError) {
        request.log.info({ status: err.status, reason: err.message }, 'fastify-mcp-sse: authentication refused')
        refused?.(reasonOf(err))
        throw authFailure({ status: err.status, message: err.message, headers: err.headers })
      }
      // A broken provider refuses; it never turns into a 500 or a crash.
      request.log.warn({ err }, 'fastify-mcp-sse: the auth provider threw; answering 401')
      refused?.('provider_error')
      throw refusal(provider, request)
    }
    if (result === true) result = { principal: 'authenticated' }
    if (!isAuthResult(result)) {
      if (result !== false) request.log.error('fastify-mcp-sse: the auth provider returned neither a boolean nor an AuthResult with a principal')
      request.log.info('fastify-mcp-sse: authentication refused')
      refused?.(result !== false ? 'provider_error' : sentCredentials(provider, request) ? 'invalid_credentials' : 'missing_credentials')
      throw refusal(provider, request)
    }
    request.mcpAuth = result
  }
}
