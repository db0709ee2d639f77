import { createHash } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import type { JWTPayload } from 'jose'
import { FST_ERR_MCP_SSE_INVALID_OPTION } from '../errors.js'
import { describeJwtError, JwtAuthProvider, resultOf, scopesOf } from './jwt.js'
import { bearerToken, McpAuthError, type AuthErrorInfo, type AuthProvider, type AuthResult, type ProtectedResourceMetadata } from './types.js'

export interface OAuthJwtValidation {
  type: 'jwt'
  /** The authorization server's JWKS. */
  jwksUri: string
  /** Required `iss`. */
  issuer?: string
  /** Required `aud`. @default the `resource` */
  audience?: string | string[]
  /** @default ["RS256"] */
  algorithms?: string[]
}

export interface OAuthIntrospectionValidation {
  type: 'introspection'
  /** RFC 7662 introspection endpoint. */
  endpoint: string
  clientId: string
  clientSecret: string
  /** How long an active token's introspection is reused, in ms (never past its `exp`). @default 60000 */
  cacheTtl?: number
  /** Most introspection results kept. @default 10000 */
  cacheMax?: number
  /** Timeout of one introspection request, in ms. @default 5000 */
  timeout?: number
}

export interface OAuthAuthProviderOptions {
  /** This protected resource's URL (the MCP server's canonical URL), as in RFC 9728 and RFC 8707. */
  resource: string
  /** Issuer URLs of the authorization servers clients should get tokens from. */
  authorizationServers: string[]
  validation: OAuthJwtValidation | OAuthIntrospectionValidation
  /** Scopes every token must carry; a token without them answers 403 `insufficient_scope`. @default [] */
  requiredScopes?: string[]
  /** `scopes_supported` in the metadata document. @default requiredScopes */
  scopesSupported?: string[]
  /** `resource_name` in the metadata document. */
  resourceName?: string
}

interface IntrospectionResponse {
  active?: unknown
  scope?: unknown
  client_id?: unknown
  sub?: unknown
  exp?: unknown
  aud?: unknown
  iss?: unknown
  [claim: string]: unknown
}

/**
 * OAuth 2.1 resource-server side of MCP authorization: validates bearer tokens (JWTs
 * against the authorization server's JWKS, or RFC 7662 introspection, cached), checks
 * audience and scopes, and serves RFC 9728 metadata that tells clients where to log in.
 */
export class OAuthAuthProvider implements AuthProvider {
  readonly resource: string
  readonly resourceMetadataUrl: string
  #metadata: ProtectedResourceMetadata
  #requiredScopes: string[]
  #jwt: JwtAuthProvider | undefined
  #introspection: Required<OAuthIntrospectionValidation> | undefined
  #cache = new Map<string, { result: AuthResult, until: number }>()
  #inflight = new Map<string, Promise<AuthResult>>()

  constructor (options: OAuthAuthProviderOptions) {
    let resource: URL
    try { resource = new URL(options?.resource) } catch {
      throw new FST_ERR_MCP_SSE_INVALID_OPTION('OAuthAuthProvider.resource', 'Use the absolute URL of this MCP server, such as "https://mcp.example.com/sse".')
    }
    if (!Array.isArray(options.authorizationServers) || options.authorizationServers.length === 0) {
      throw new FST_ERR_MCP_SSE_INVALID_OPTION('OAuthAuthProvider.authorizationServers', 'List at least one authorization server issuer URL.')
    }
    this.resource = options.resource
    const suffix = resource.pathname === '/' ? '' : resource.pathname.replace(/\/$/, '')
    this.resourceMetadataUrl = `${resource.origin}/.well-known/oauth-protected-resource${suffix}`
    this.#requiredScopes = options.requiredScopes ?? []
    const scopes = options.scopesSupported ?? this.#requiredScopes
    this.#metadata = {
      paths: Array.from(new Set(['/.well-known/oauth-protected-resource', `/.well-known/oauth-protected-resource${suffix}`])),
      document: {
        resource: options.resource,
        authorization_servers: options.authorizationServers,
        bearer_methods_supported: ['header'],
        ...(scopes.length > 0 ? { scopes_supported: scopes } : {}),
        ...(options.resourceName !== undefined ? { resource_name: options.resourceName } : {})
      }
    }

    const v = options.validation
    if (v?.type === 'jwt') {
      this.#jwt = new JwtAuthProvider({
        jwksUri: v.jwksUri,
        audience: v.audience ?? options.resource,
        ...(v.issuer !== undefined ? { issuer: v.issuer } : {}),
        ...(v.algorithms !== undefined ? { algorithms: v.algorithms } : {})
      })
    } else if (v?.type === 'introspection') {
      if (typeof v.endpoint !== 'string' || typeof v.clientId !== 'string' || typeof v.clientSecret !== 'string') {
        throw new FST_ERR_MCP_SSE_INVALID_OPTION('OAuthAuthProvider.validation', 'Introspection needs endpoint, clientId and clientSecret.')
      }
      this.#introspection = { cacheTtl: 60_000, cacheMax: 10_000, timeout: 5_000, ...v }
    } else {
      throw new FST_ERR_MCP_SSE_INVALID_OPTION('OAuthAuthProvider.validation', 'Use { type: "jwt", jwksUri } or { type: "introspection", endpoint, clientId, clientSecret }.')
    }
  }

  /** The metadata document and where to serve it (the plugin registers the routes). */
  protectedResourceMetadata (): ProtectedResourceMetadata {
    return this.#metadata
  }

  #challenge (extra = ''): string {
    return `Bearer resource_metadata="${this.resourceMetadataUrl}"${extra}`
  }

  #invalid (why: string): McpAuthError {
    return new McpAuthError({
      status: 401,
      message: `Unauthorized: ${why}.`,
      headers: { 'WWW-Authenticate': this.#challenge(`, error="invalid_token", error_description="${why}"`) }
    })
  }

  async authenticate (request: FastifyRequest): Promise<AuthResult | boolean> {
    const token = bearerToken(request.headers.authorization)
    if (token === undefined) return false
    const result = this.#jwt !== undefined ? await this.#verifyJwt(this.#jwt, token) : await this.#introspect(token)
    const granted = new Set(result.scopes ?? [])
    const missing = this.#requiredScopes.filter(s => !granted.has(s))
    if (missing.length > 0) {
      throw new McpAuthError({
        status: 403,
        message: `Forbidden: the token lacks the scope(s) ${missing.join(', ')}.`,
        headers: { 'WWW-Authenticate': this.#challenge(`, error="insufficient_scope", scope="${this.#requiredScopes.join(' ')}"`) }
      })
    }
    return result
  }

  async #verifyJwt (jwt: JwtAuthProvider, token: string): Promise<AuthResult> {
    let payload: JWTPayload
    try {
      payload = await jwt.verify(token)
    } catch (err) {
      throw this.#invalid(describeJwtError(err))
    }
    return resultOf(token, payload)
  }

  async #introspect (token: string): Promise<AuthResult> {
    const key = createHash('sha256').update(token).digest('base64url')
    const now = Date.now()
    const cached = this.#cache.get(key)
    if (cached !== undefined) {
      if (cached.until > now) return cached.result
      this.#cache.delete(key)
    }
    // Concurrent requests with the same new token share one introspection call.
    let pending = this.#inflight.get(key)
    if (pending === undefined) {
      pending = this.#callIntrospection(token, key, now)
      this.#inflight.set(key, pending)
      const done = (): void => { this.#inflight.delete(key) }
      pending.then(done, done)
    }
    return await pending
  }

  async #callIntrospection (token: string, key: string, now: number): Promise<AuthResult> {
    const v = this.#introspection as Required<OAuthIntrospectionValidation>
    const res = await fetch(v.endpoint, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        accept: 'application/json',
        authorization: `Basic ${Buffer.from(`${encodeURIComponent(v.clientId)}:${encodeURIComponent(v.clientSecret)}`).toString('base64')}`
      },
      body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
      signal: AbortSignal.timeout(v.timeout)
    })
    if (!res.ok) {
      await res.body?.cancel()
      throw new Error(`token introspection answered HTTP ${res.status}`)
    }
    const body = await res.json() as IntrospectionResponse
    if (body.active !== true) throw this.#invalid('the token is not active')
    const exp = typeof body.exp === 'number' ? body.exp : undefined
    if (exp !== undefined && exp * 1000 <= now) throw this.#invalid('the token has expired')
    if (body.aud !== undefined) {
      const aud = Array.isArray(body.aud) ? body.aud : [body.aud]
      if (!aud.includes(this.resource)) throw this.#invalid('the token is not meant for this resource')
    }
    const principal = typeof body.sub === 'string' ? body.sub : typeof body.client_id === 'string' ? body.client_id : undefined
    if (principal === undefined) throw this.#invalid('the token names no subject')
    const result: AuthResult = {
      principal,
      token,
      data: { ...body },
      scopes: scopesOf(body as JWTPayload),
      ...(typeof body.client_id === 'string' ? { clientId: body.client_id } : {}),
      ...(exp !== undefined ? { expiresAt: exp } : {})
    }

    // Bounded cache: the oldest entry goes first; nothing outlives the token.
    if (this.#cache.size >= v.cacheMax) {
      const oldest = this.#cache.keys().next()
      if (oldest.done !== true) this.#cache.delete(oldest.value)
    }
    this.#cache.set(key, { result, until: Math.min(now + v.cacheTtl, exp !== undefined ? exp * 1000 : Infinity) })
    return result
  }

  /** Number of cached introspection results (for tests and metrics). */
  get cacheSize (): number {
    return this.#cache.size
  }

  getAuthError (): AuthErrorInfo {
    return {
      status: 401,
      message: 'Unauthorized: a bearer token is required.',
      headers: { 'WWW-Authenticate': this.#challenge() }
    }
  }
}
