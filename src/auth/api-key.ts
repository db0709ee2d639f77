import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import { FST_ERR_MCP_SSE_INVALID_OPTION } from '../errors.js'
import { bearerToken, type AuthErrorInfo, type AuthProvider, type AuthResult } from './types.js'

/** An API key, optionally with the principal it stands for. */
export interface ApiKey {
  key: string
  /** Who this key is; sessions opened with it are bound to it. @default "apikey:" + a hash prefix of the key */
  principal: string
}

export interface ApiKeyAuthProviderOptions {
  /** Accepted keys: strings, or `{ key, principal }` to name who each key is. */
  keys: Array<string | ApiKey>
  /** Header carrying the key (looked up case-insensitively). `Authorization: Bearer <key>` is accepted too. @default "X-API-Key" */
  headerName?: string
}

const digest = (value: string): Buffer => createHash('sha256').update(value).digest()

/**
 * Accepts requests carrying one of the configured keys. Keys are compared in constant
 * time (as SHA-256 digests, so their lengths leak nothing either) and never logged.
 */
export class ApiKeyAuthProvider implements AuthProvider {
  readonly headerName: string
  #keys: Array<{ digest: Buffer, principal: string }>

  constructor (options: ApiKeyAuthProviderOptions) {
    if (!Array.isArray(options?.keys) || options.keys.length === 0) {
      throw new FST_ERR_MCP_SSE_INVALID_OPTION('ApiKeyAuthProvider.keys', 'Pass at least one non-empty key.')
    }
    this.#keys = options.keys.map(k => {
      const entry = typeof k === 'string' ? { key: k, principal: undefined } : k
      if (typeof entry.key !== 'string' || entry.key === '') {
        throw new FST_ERR_MCP_SSE_INVALID_OPTION('ApiKeyAuthProvider.keys', 'Keys must be non-empty strings (an unset environment variable?).')
      }
      const d = digest(entry.key)
      return { digest: d, principal: entry.principal ?? `apikey:${d.subarray(0, 8).toString('hex')}` }
    })
    this.headerName = (options.headerName ?? 'X-API-Key').toLowerCase()
  }

  authenticate (request: FastifyRequest): boolean | AuthResult {
    const header = request.headers[this.headerName]
    const key = typeof header === 'string' && header !== '' ? header : bearerToken(request.headers.authorization)
    if (key === undefined) return false
    const candidate = digest(key)
    let match: string | undefined
    // No early exit: every key is compared, whichever matches.
    for (const k of this.#keys) {
      if (timingSafeEqual(candidate, k.digest) && match === undefined) match = k.principal
    }
    if (match === undefined) return false
    return { principal: match, token: key, data: { authType: 'apiKey' } }
  }

  getAuthError (): AuthErrorInfo {
    return {
      status: 401,
      message: 'Unauthorized: a valid API key is required.',
      headers: { 'WWW-Authenticate': 'Bearer realm="mcp"' }
    }
  }
}
