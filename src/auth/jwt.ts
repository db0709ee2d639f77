import type { KeyObject, webcrypto } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import { createRemoteJWKSet, errors as joseErrors, importJWK, importSPKI, jwtVerify, type JWK, type JWTPayload, type JWTVerifyGetKey } from 'jose'
import { FST_ERR_MCP_SSE_INVALID_OPTION } from '../errors.js'
import { bearerToken, McpAuthError, type AuthErrorInfo, type AuthProvider, type AuthResult } from './types.js'

export interface JwtAuthProviderOptions {
  /** Shared secret for HMAC algorithms (HS256/384/512). One of `secret`, `publicKey`, `jwksUri`. */
  secret?: string | Uint8Array
  /** Public key: a PEM (SPKI) string, a JWK, or a `KeyObject`/`webcrypto.CryptoKey`. */
  publicKey?: string | JWK | KeyObject | webcrypto.CryptoKey
  /** URL of a JWKS document; keys are fetched, cached and rotated by `jose`. */
  jwksUri?: string
  /** Accepted algorithms. @default ["HS256"] with `secret`, ["RS256"] otherwise */
  algorithms?: string[]
  /** Required `iss` (one, or any of several). */
  issuer?: string | string[]
  /** Required `aud` (the token must name one of these). */
  audience?: string | string[]
  /** Header carrying the token: with `Authorization`, as `Bearer <token>`; otherwise the raw token. @default "Authorization" */
  headerName?: string
  /** Leeway for `exp`/`nbf`, in seconds. @default 0 */
  clockTolerance?: number
  /** Realm named in `WWW-Authenticate` challenges. @default "mcp" */
  realm?: string
}

/** Scopes of a token: OAuth's space-separated `scope`, or an `scp` array. */
export function scopesOf (payload: JWTPayload): string[] {
  if (typeof payload.scope === 'string') return payload.scope.split(' ').filter(s => s !== '')
  if (Array.isArray(payload.scp)) return payload.scp.filter((s): s is string => typeof s === 'string')
  return []
}

/** Why a token was refused, in words safe to send back (no token content). */
export function describeJwtError (err: unknown): string {
  if (err instanceof joseErrors.JWTExpired) return 'the token has expired'
  // No double quotes: this text goes inside a quoted WWW-Authenticate parameter.
  if (err instanceof joseErrors.JWTClaimValidationFailed) return `the token's ${err.claim} claim is not accepted`
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return 'the token signature is invalid'
  if (err instanceof joseErrors.JOSEAlgNotAllowed) return 'the token algorithm is not accepted'
  if (err instanceof joseErrors.JWKSNoMatchingKey) return 'no key matches the token'
  if (err instanceof joseErrors.JWTInvalid || err instanceof joseErrors.JWSInvalid) return 'the token is malformed'
  return 'the token could not be verified'
}

type Key = Uint8Array | KeyObject | webcrypto.CryptoKey | JWTVerifyGetKey

/**
 * Accepts signed JWTs (`jose`): signature, `exp`, `nbf`, `iss` and `aud` are checked; the
 * claims become `data` and `sub` the principal.
 */
export class JwtAuthProvider implements AuthProvider {
  readonly headerName: string
  #key: Key | Promise<Key>
  #verifyOptions: { algorithms: string[], issuer?: string | string[], audience?: string | string[], clockTolerance?: number, requiredClaims: string[] }
  #realm: string

  constructor (options: JwtAuthProviderOptions) {
    const sources = [options?.secret, options?.publicKey, options?.jwksUri].filter(x => x !== undefined)
    if (sources.length !== 1) {
      throw new FST_ERR_MCP_SSE_INVALID_OPTION('JwtAuthProvider', 'Pass exactly one of secret, publicKey or jwksUri.')
    }
    const algorithms = options.algorithms ?? (options.secret !== undefined ? ['HS256'] : ['RS256'])
    if (!Array.isArray(algorithms) || algorithms.length === 0) {
      throw new FST_ERR_MCP_SSE_INVALID_OPTION('JwtAuthProvider.algorithms', 'List the accepted algorithms, such as ["RS256"].')
    }
    if (options.secret !== undefined) {
      if (options.secret.length === 0) throw new FST_ERR_MCP_SSE_INVALID_OPTION('JwtAuthProvider.secret', 'The secret is empty (an unset environment variable?).')
      this.#key = typeof options.secret === 'string' ? new TextEncoder().encode(options.secret) : options.secret
    } else if (options.jwksUri !== undefined) {
      let url: URL
      try { url = new URL(options.jwksUri) } catch {
        throw new FST_ERR_MCP_SSE_INVALID_OPTION('JwtAuthProvider.jwksUri', 'Use an absolute URL of a JWKS document.')
      }
      this.#key = createRemoteJWKSet(url)
    } else {
      const pk = options.publicKey
      const alg = algorithms[0] as string
      const key = typeof pk === 'string'
        ? importSPKI(pk, alg)
        : (typeof pk === 'object' && pk !== null && 'kty' in pk) ? importJWK(pk as JWK, alg) as Promise<Key> : pk as KeyObject | webcrypto.CryptoKey
      // A key that fails to import must not crash the process as an unhandled rejection;
      // every verify() awaits it and refuses the token instead.
      if (key instanceof Promise) key.catch(() => {})
      this.#key = key
    }
    this.#verifyOptions = {
      algorithms,
      requiredClaims: ['sub'],
      ...(options.issuer !== undefined ? { issuer: options.issuer } : {}),
      ...(options.audience !== undefined ? { audience: options.audience } : {}),
      ...(options.clockTolerance !== undefined ? { clockTolerance: options.clockTolerance } : {})
    }
    this.headerName = (options.headerName ?? 'Authorization').toLowerCase()
    this.#realm = options.realm ?? 'mcp'
  }

  /** The token of a request, or undefined when it carries none. */
  tokenOf (request: FastifyRequest): string | undefined {
    const header = request.headers[this.headerName]
    if (this.headerName === 'authorization') return bearerToken(header)
    return typeof header === 'string' && header !== '' ? header : undefined
  }

  /** Verifies a token; rejects with jose's error when it is not acceptable. */
  async verify (token: string): Promise<JWTPayload> {
    const key = await this.#key
    const { payload } = typeof key === 'function'
      ? await jwtVerify(token, key, this.#verifyOptions)
      : await jwtVerify(token, key, this.#verifyOptions)
    return payload
  }

  async authenticate (request: FastifyRequest): Promise<boolean | AuthResult> {
    const token = this.tokenOf(request)
    if (token === undefined) return false
    let payload: JWTPayload
    try {
      payload = await this.verify(token)
    } catch (err) {
      throw new McpAuthError({
        status: 401,
        message: `Unauthorized: ${describeJwtError(err)}.`,
        headers: { 'WWW-Authenticate': `Bearer realm="${this.#realm}", error="invalid_token", error_description="${describeJwtError(err)}"` }
      })
    }
    return resultOf(token, payload)
  }

  getAuthError (): AuthErrorInfo {
    return {
      status: 401,
      message: 'Unauthorized: a bearer token is required.',
      headers: { 'WWW-Authenticate': `Bearer realm="${this.#realm}"` }
    }
  }
}

/** The AuthResult of a verified token: `sub` is the principal, the claims are `data`. */
export function resultOf (token: string, payload: JWTPayload): AuthResult {
  const clientId = typeof payload.client_id === 'string' ? payload.client_id : typeof payload.azp === 'string' ? payload.azp : undefined
  return {
    principal: String(payload.sub),
    token,
    data: { ...payload },
    scopes: scopesOf(payload),
    ...(clientId !== undefined ? { clientId } : {}),
    ...(typeof payload.exp === 'number' ? { expiresAt: payload.exp } : {})
  }
}
