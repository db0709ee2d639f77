import type { FastifyRequest } from 'fastify'
import type { McpAuthInfo } from '../mcp.js'

/** A caller the provider accepted. */
export interface AuthResult {
  /**
   * A stable id of who is calling (a user id, a key's name, a token's `sub`). Sessions are
   * bound to the principal that opened them: another principal cannot post into them.
   */
  principal: string
  /** Whatever the provider wants tools to see (claims, key metadata); `extra.authInfo.extra`. */
  data?: Record<string, unknown>
  /** The credential itself (`extra.authInfo.token`). */
  token?: string
  /** The OAuth client, if known (`extra.authInfo.clientId`); defaults to the principal. */
  clientId?: string
  /** Granted scopes (`extra.authInfo.scopes`). */
  scopes?: string[]
  /** Expiry, seconds since the epoch (`extra.authInfo.expiresAt`). */
  expiresAt?: number
}

/**
 * Why a request was refused, as `mcp_auth_failures_total{reason}` counts it: no
 * credentials sent, credentials not accepted, expired, a missing scope (403), or a
 * provider that threw something other than {@link McpAuthError}.
 */
export type McpAuthFailureReason = 'missing_credentials' | 'invalid_credentials' | 'expired' | 'insufficient_scope' | 'provider_error'

/** What a refused request is answered with. */
export interface AuthErrorInfo {
  /** HTTP status. @default 401 */
  status: number
  /** The JSON-RPC error message. */
  message: string
  /** Extra headers, such as `WWW-Authenticate`. */
  headers?: Record<string, string>
  /**
   * Why, for the metrics. @default `insufficient_scope` for 403, `expired` when the
   * message says the credential expired, else `invalid_credentials`
   */
  reason?: McpAuthFailureReason
}

/**
 * Decides who may use the endpoint. `authenticate` returns an {@link AuthResult} (or
 * `true`, which admits the caller as the shared principal `"authenticated"`) to accept,
 * `false` to refuse. To refuse with a specific answer (403 for a missing scope, say),
 * throw an {@link McpAuthError}. Anything else thrown is logged and answered 401.
 */
export interface AuthProvider {
  authenticate (request: FastifyRequest): boolean | AuthResult | Promise<boolean | AuthResult>
  /** The answer to a refused request. @default 401, "Unauthorized", `WWW-Authenticate: Bearer realm="mcp"` */
  getAuthError? (request: FastifyRequest): AuthErrorInfo
  /** RFC 9728 metadata to serve (the plugin registers a GET route for each path). */
  protectedResourceMetadata? (): ProtectedResourceMetadata
}

/** The RFC 9728 protected-resource metadata a provider wants served. */
export interface ProtectedResourceMetadata {
  /** Absolute paths on this host to serve the document at. */
  paths: string[]
  document: Record<string, unknown>
}

/** Which routes require authentication. Both default to true. */
export interface McpAuthEndpoints {
  /** `GET {endpoint}` (opening a stream). @default true */
  sse?: boolean
  /** `POST {messageEndpoint}`. @default true */
  messages?: boolean
  /** `{mcpEndpoint}` (Streamable HTTP: POST, GET, DELETE). @default true */
  mcp?: boolean
}

export interface McpAuthOptions {
  provider: AuthProvider
  endpoints?: McpAuthEndpoints
}

/** Thrown by a provider to refuse a request with a given status, message and headers. */
export class McpAuthError extends Error {
  readonly status: number
  readonly headers: Record<string, string>
  readonly reason: McpAuthFailureReason | undefined
  constructor (info: AuthErrorInfo) {
    super(info.message)
    this.name = 'McpAuthError'
    this.status = info.status
    this.headers = info.headers ?? {}
    this.reason = info.reason
  }
}

/** Reads a bearer token from `Authorization: Bearer <token>` (scheme case-insensitive). */
export function bearerToken (header: string | string[] | undefined): string | undefined {
  if (typeof header !== 'string') return undefined
  const match = /^Bearer[ ]+([^ ]+)[ ]*$/i.exec(header)
  return match?.[1]
}

/** The SDK's `extra.authInfo` for an authenticated caller. */
export function toAuthInfo (auth: AuthResult): McpAuthInfo {
  return {
    token: auth.token ?? '',
    clientId: auth.clientId ?? auth.principal,
    scopes: auth.scopes ?? [],
    ...(auth.expiresAt !== undefined ? { expiresAt: auth.expiresAt } : {}),
    extra: { ...auth.data, principal: auth.principal }
  }
}
