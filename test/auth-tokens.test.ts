// Token-based authentication over real sockets: JwtAuthProvider (HS256 secret, PEM public
// key, JWKS) and OAuthAuthProvider (JWT validation against a JWKS, RFC 7662 introspection),
// with keys generated here, a local JWKS endpoint and a local introspection endpoint.
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import Fastify from 'fastify'
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, UnsecuredJWT, type JWTPayload } from 'jose'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import type { SSEClientTransportOptions } from '@modelcontextprotocol/sdk/client/sse.js'
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js'
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js'
import { z } from 'zod'
import mcpSse, {
  JwtAuthProvider,
  OAuthAuthProvider,
  type McpSessionContext,
  type McpSseOptions,
  type OAuthAuthProviderOptions
} from '../src/index.js'
import { connectClient, freePort, post, RawStream, startApp, type PostResult, tsNodeArgs, type TestApp } from './support/helpers.js'

interface Teardown { teardown: (fn: () => unknown) => void }
/** A subtest, as tap passes it to a test function. */
type Test = Parameters<Parameters<typeof t.test>[0]>[0]

// ---------------------------------------------------------------------------------------
// Keys and tokens

const ISSUER = 'https://issuer.example.com'
const AUDIENCE = 'mcp-test-audience'
const AS = 'https://auth.example.com'
const SECRET = randomBytes(32).toString('base64url')
const secretKey = new TextEncoder().encode(SECRET)
const { publicKey, privateKey } = await generateKeyPair('RS256')
const stranger = await generateKeyPair('RS256')
const KID = 'test-key-1'
const jwk = { ...(await exportJWK(publicKey)), kid: KID, alg: 'RS256', use: 'sig' }
const spki = await exportSPKI(publicKey)

const now = (): number => Math.floor(Date.now() / 1000)

/** The claims of a good token; `over` replaces (or, with undefined, removes) claims. */
function claims (over: JWTPayload = {}): JWTPayload {
  return {
    iss: ISSUER,
    aud: AUDIENCE,
    sub: 'alice',
    scope: 'tools:read tools:call',
    client_id: 'client-123',
    iat: now(),
    exp: now() + 300,
    ...over
  }
}

function sign (payload: JWTPayload, key: typeof privateKey | Uint8Array = privateKey, alg = 'RS256', kid: string | undefined = KID): Promise<string> {
  return new SignJWT(payload).setProtectedHeader({ alg, ...(kid !== undefined ? { kid } : {}) }).sign(key)
}

const hsToken = (payload: JWTPayload = claims()): Promise<string> => sign(payload, secretKey, 'HS256', undefined)

/** Changes one character of the `sub` claim after signing: valid JSON, broken signature. */
function tamper (token: string): string {
  const [header, payload, signature] = token.split('.') as [string, string, string]
  const json = Buffer.from(payload, 'base64url').toString('utf8')
  const changed = json.replace('"sub":"alice"', '"sub":"alicf"')
  if (changed === json) throw new Error('nothing to tamper with')
  return `${header}.${Buffer.from(changed).toString('base64url')}.${signature}`
}

const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` })

// ---------------------------------------------------------------------------------------
// Local servers


/** A JWKS endpoint serving the test public key. */
async function startJwks (t: Teardown): Promise<{ url: string, calls: () => number }> {
  const app = Fastify({ forceCloseConnections: true })
  let calls = 0
  app.get('/jwks.json', async () => { calls++; return { keys: [jwk] } })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const { port } = app.server.address() as AddressInfo
  return { url: `http://127.0.0.1:${port}/jwks.json`, calls: () => calls }
}

const CLIENT_ID = 'mcp-resource-server'
// Characters that must be form-urlencoded before Basic encoding (RFC 6749, 2.3.1).
const CLIENT_SECRET = 's3cr3t:with/odd+chars'

interface Introspection {
  url: string
  /** Introspections answered (with good client credentials). */
  calls: number
  /** Requests refused for bad client credentials. */
  rejected: number
}

/** Decodes RFC 6749 client credentials from a Basic header. */
function basicCredentials (header: string | undefined): { id: string, secret: string } | undefined {
  const match = /^Basic ([A-Za-z0-9+/=]+)$/.exec(header ?? '')
  if (match === null) return undefined
  const decoded = Buffer.from(match[1] as string, 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon === -1) return undefined
  const form = (s: string): string => decodeURIComponent(s.replace(/\+/g, ' '))
  return { id: form(decoded.slice(0, colon)), secret: form(decoded.slice(colon + 1)) }
}

/** An RFC 7662 introspection endpoint answering from a table of tokens. */
async function startIntrospection (t: Teardown, tokens: Record<string, Record<string, unknown>>): Promise<Introspection> {
  const app = Fastify({ forceCloseConnections: true })
  const state: Introspection = { url: '', calls: 0, rejected: 0 }
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_request, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)))
  })
  app.post('/introspect', async (request, reply) => {
    const creds = basicCredentials(request.headers.authorization)
    if (creds?.id !== CLIENT_ID || creds.secret !== CLIENT_SECRET) {
      state.rejected++
      return reply.code(401).header('www-authenticate', 'Basic realm="introspection"').send({ error: 'invalid_client' })
    }
    const token = (request.body as Record<string, string> | undefined)?.token
    if (typeof token !== 'string' || token === '') return reply.code(400).send({ error: 'invalid_request' })
    state.calls++
    return tokens[token] ?? { active: false }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const { port } = app.server.address() as AddressInfo
  state.url = `http://127.0.0.1:${port}/introspect`
  return state
}

// ---------------------------------------------------------------------------------------
// The MCP side

interface Seen {
  /** `auth.principal` of the server factory's context, per session. */
  factoryPrincipals: Array<string | undefined>
  /** `extra.authInfo` of the last `whoami` call. */
  authInfo: AuthInfo | undefined
}

/** A server factory with `echo` and `whoami` (which records `extra.authInfo`). */
function recordingServer (seen: Seen) {
  return ({ auth }: McpSessionContext): McpServer => {
    seen.factoryPrincipals.push(auth?.principal)
    const server = new McpServer({ name: 'auth-tokens', version: '1.0.0' })
    server.registerTool('echo', { inputSchema: { text: z.string() } }, async ({ text }) => ({ content: [{ type: 'text', text }] }))
    server.registerTool('whoami', { inputSchema: { x: z.string().optional() } }, async (_args, extra) => {
      seen.authInfo = extra.authInfo
      return { content: [{ type: 'text', text: extra.authInfo?.extra?.principal as string ?? '' }] }
    })
    return server
  }
}

const newSeen = (): Seen => ({ factoryPrincipals: [], authInfo: undefined })

function text (result: unknown): string {
  const first = (result as CallToolResult).content[0]
  return first !== undefined && first.type === 'text' ? first.text : ''
}

/** SDK client options sending the token on the stream and on every POST. */
function clientWithToken (token: string): SSEClientTransportOptions {
  const authorization = `Bearer ${token}`
  return {
    requestInit: { headers: { authorization } },
    eventSourceInit: {
      fetch: (url, init) => fetch(url, { ...init, headers: { ...Object.fromEntries(new Headers(init?.headers)), authorization } })
    }
  }
}

/** An app on a given port (for a `resource` URL that names the app's own port). */
async function startOn (t: Teardown, port: number, opts: McpSseOptions, prefix?: string): Promise<TestApp> {
  const app = Fastify({ forceCloseConnections: true })
  await app.register(mcpSse, { ...opts, ...(prefix !== undefined ? { prefix } : {}) })
  await app.listen({ port, host: '127.0.0.1' })
  t.teardown(() => app.close())
  return { app, base: `http://127.0.0.1:${port}` }
}

/** GET a stream URL; a 200 event stream is cancelled as soon as its headers arrive. */
async function getSse (url: string, headers: Record<string, string> = {}): Promise<PostResult> {
  const res = await fetch(url, { headers: { accept: 'text/event-stream', ...headers } })
  if (res.headers.get('content-type')?.startsWith('text/event-stream') === true) {
    await res.body?.cancel().catch(() => {})
    return { status: res.status, headers: res.headers, body: undefined, text: '' }
  }
  const body = await res.text()
  let parsed: unknown
  try { parsed = body === '' ? undefined : JSON.parse(body) } catch { parsed = undefined }
  return { status: res.status, headers: res.headers, body: parsed, text: body }
}

const ping = { jsonrpc: '2.0', id: 41, method: 'ping' }

/**
 * Asserts a refusal: status, challenge (`error: null` means it names no error, undefined
 * leaves it unchecked), JSON-RPC body, no token echoed.
 */
function assertRefused (
  t: Test,
  res: PostResult,
  want: { status?: number, error?: string | null, challenge?: RegExp | string, token?: string }
): void {
  const status = want.status ?? 401
  t.equal(res.status, status, `answers ${status}`)
  const challenge = res.headers.get('www-authenticate') ?? ''
  t.match(challenge, /^Bearer /, 'with a Bearer challenge')
  if (want.error === null) t.notMatch(challenge, /error=/, 'the challenge names no error')
  else if (want.error !== undefined) t.match(challenge, `error="${want.error}"`, `the challenge says error="${want.error}"`)
  if (want.challenge !== undefined) t.match(challenge, want.challenge)
  t.match(res.headers.get('content-type') ?? '', /^application\/json/)
  t.match(res.body, { jsonrpc: '2.0', error: { code: -32000, data: { type: 'authentication_error' } } }, 'with the JSON-RPC error body')
  if (want.token !== undefined) t.notMatch(res.text + challenge, want.token, 'never echoing the token')
}

// ---------------------------------------------------------------------------------------
// JwtAuthProvider: accepted tokens, for each way of giving it a key

const jwtKinds: Array<{ name: string, provider: (t: Teardown) => Promise<JwtAuthProvider>, token: () => Promise<string> }> = [
  {
    name: 'an HS256 secret',
    provider: async () => new JwtAuthProvider({ secret: SECRET, issuer: ISSUER, audience: AUDIENCE }),
    token: () => hsToken()
  },
  {
    name: 'a PEM public key',
    provider: async () => new JwtAuthProvider({ publicKey: spki, issuer: ISSUER, audience: AUDIENCE }),
    token: () => sign(claims())
  },
  {
    name: 'a JWKS URI',
    provider: async t => new JwtAuthProvider({ jwksUri: (await startJwks(t)).url, issuer: ISSUER, audience: AUDIENCE }),
    token: () => sign(claims())
  }
]

for (const kind of jwtKinds) {
  t.test(`JwtAuthProvider with ${kind.name}: a valid token opens a session and the SDK client lists and calls tools`, async t => {
    const seen = newSeen()
    const { base, app } = await startApp(t, { auth: { provider: await kind.provider(t) }, server: recordingServer(seen) })
    const client = await connectClient(t, `${base}/sse`, clientWithToken(await kind.token()))
    const { tools } = await client.listTools()
    t.same(tools.map(x => x.name).sort(), ['echo', 'whoami'])
    t.equal(text(await client.callTool({ name: 'echo', arguments: { text: 'signed' } })), 'signed')
    t.equal(app.mcpSessions.size, 1)
    t.equal([...app.mcpSessions][0]?.principal, 'alice', 'the session belongs to the token\'s sub')
  })

  t.test(`JwtAuthProvider with ${kind.name}: a tool sees the token, client, scopes, expiry and principal in extra.authInfo`, async t => {
    const seen = newSeen()
    const { base } = await startApp(t, { auth: { provider: await kind.provider(t) }, server: recordingServer(seen) })
    const token = await kind.token()
    const client = await connectClient(t, `${base}/sse`, clientWithToken(token))
    t.equal(text(await client.callTool({ name: 'whoami', arguments: {} })), 'alice')
    const info = seen.authInfo
    t.ok(info, 'authInfo is set')
    t.equal(info?.token, token)
    t.equal(info?.clientId, 'client-123')
    t.same(info?.scopes, ['tools:read', 'tools:call'])
    const exp = JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString()).exp as number
    t.equal(info?.expiresAt, exp)
    t.equal(info?.extra?.principal, 'alice')
    t.equal(info?.extra?.iss, ISSUER, 'the claims are passed on')
  })
}

t.test('JwtAuthProvider: the server factory\'s context names the token\'s sub as auth.principal', async t => {
  const seen = newSeen()
  const provider = new JwtAuthProvider({ secret: SECRET, issuer: ISSUER, audience: AUDIENCE })
  const { base } = await startApp(t, { auth: { provider }, server: recordingServer(seen) })
  await connectClient(t, `${base}/sse`, clientWithToken(await hsToken(claims({ sub: 'user-77' }))))
  t.same(seen.factoryPrincipals, ['user-77'])
})

t.test('JwtAuthProvider: without a client_id or azp claim, authInfo.clientId falls back to the principal', async t => {
  const seen = newSeen()
  const provider = new JwtAuthProvider({ secret: SECRET })
  const { base } = await startApp(t, { auth: { provider }, server: recordingServer(seen) })
  const client = await connectClient(t, `${base}/sse`, clientWithToken(await hsToken(claims({ client_id: undefined }))))
  await client.callTool({ name: 'whoami', arguments: {} })
  t.equal(seen.authInfo?.clientId, 'alice')
})

// ---------------------------------------------------------------------------------------
// JwtAuthProvider: refused tokens, on both routes

t.test('JwtAuthProvider refuses bad tokens on GET /sse and POST /messages', async t => {
  const provider = new JwtAuthProvider({ publicKey: spki, issuer: ISSUER, audience: AUDIENCE })
  const { base, app } = await startApp(t, { auth: { provider }, server: recordingServer(newSeen()) })
  // A real session, opened with a good token: a bad token must not reach it either.
  const stream = await RawStream.open(`${base}/sse`, bearer(await sign(claims())))
  t.teardown(() => stream.close())
  const messageUrl = await stream.endpoint(base)

  const cases: Array<[string, () => Promise<string>]> = [
    ['an expired token', () => sign(claims({ iat: now() - 600, exp: now() - 60 }))],
    ['a token not valid yet (nbf in the future)', () => sign(claims({ nbf: now() + 300 }))],
    ['a token for another audience', () => sign(claims({ aud: 'someone-else' }))],
    ['a token from another issuer', () => sign(claims({ iss: 'https://evil.example.com' }))],
    ['a token whose payload was changed after signing', async () => tamper(await sign(claims()))],
    ['a token signed with another key', () => sign(claims(), stranger.privateKey)],
    ['an HS256 token on an RS256 provider', () => hsToken()],
    ['an unsigned (alg none) token', async () => new UnsecuredJWT(claims()).encode()],
    ['a token without sub', () => sign(claims({ sub: undefined }))],
    ['a string that is not a JWT', async () => 'not-a-jwt']
  ]
  for (const [name, make] of cases) {
    t.test(`${name} answers 401 invalid_token on GET /sse`, async t => {
      const token = await make()
      assertRefused(t, await getSse(`${base}/sse`, bearer(token)), { error: 'invalid_token', token })
    })
    t.test(`${name} answers 401 invalid_token on POST /messages, even into an open session`, async t => {
      const token = await make()
      assertRefused(t, await post(messageUrl, ping, bearer(token)), { error: 'invalid_token', token })
    })
  }

  t.test('a missing token answers 401 with a challenge that names no error, on both routes', async t => {
    assertRefused(t, await getSse(`${base}/sse`), { error: null, challenge: /^Bearer realm="mcp"$/ })
    assertRefused(t, await post(messageUrl, ping), { error: null, challenge: /^Bearer realm="mcp"$/ })
  })

  t.test('a refused request opens no session and leaves the open one alone', async t => {
    t.equal(app.mcpSessions.size, 1)
    t.notOk(stream.ended)
    t.equal((await post(messageUrl, ping, bearer(await sign(claims())))).status, 202)
    t.same(JSON.parse((await stream.next('message')).data), { jsonrpc: '2.0', id: 41, result: {} })
  })
})

t.test('JwtAuthProvider: the challenge for a refused claim is a well-formed RFC 6750 header', async t => {
  const provider = new JwtAuthProvider({ secret: SECRET, audience: AUDIENCE })
  const { base } = await startApp(t, { auth: { provider } })
  const res = await getSse(`${base}/sse`, bearer(await hsToken(claims({ aud: 'someone-else' }))))
  t.equal(res.status, 401)
  // RFC 6750 3: auth-params are token="quoted"; error_description excludes %x22 and %x5C.
  t.match(res.headers.get('www-authenticate') ?? '', /^Bearer [a-z_]+="[^"\\]*"(, [a-z_]+="[^"\\]*")*$/)
})

// ---------------------------------------------------------------------------------------
// OAuthAuthProvider, JWT validation

t.test('OAuthAuthProvider with JWT validation', async t => {
  const jwks = await startJwks(t)
  const port = await freePort()
  const resource = `http://127.0.0.1:${port}/mcp`
  const metadataUrl = `http://127.0.0.1:${port}/.well-known/oauth-protected-resource/mcp`
  const provider = new OAuthAuthProvider({
    resource,
    authorizationServers: [AS],
    validation: { type: 'jwt', jwksUri: jwks.url, issuer: AS },
    requiredScopes: ['mcp:tools']
  })
  const seen = newSeen()
  const { base } = await startOn(t, port, { auth: { provider }, server: recordingServer(seen) }, '/mcp')
  const oauthClaims = (over: JWTPayload = {}): JWTPayload => claims({ iss: AS, aud: resource, sub: 'bob', scope: 'mcp:tools profile', client_id: 'oauth-client', ...over })
  const stream = await RawStream.open(`${base}/mcp/sse`, bearer(await sign(oauthClaims())))
  t.teardown(() => stream.close())
  const messageUrl = await stream.endpoint(base)
  t.match(messageUrl, `${base}/mcp/messages?sessionId=`)

  t.test('the metadata document is served at the well-known path and its path-suffixed form, without credentials', async t => {
    const want = {
      resource,
      authorization_servers: [AS],
      bearer_methods_supported: ['header'],
      scopes_supported: ['mcp:tools']
    }
    for (const path of ['/.well-known/oauth-protected-resource', '/.well-known/oauth-protected-resource/mcp']) {
      const res = await fetch(`${base}${path}`)
      t.equal(res.status, 200, path)
      t.match(res.headers.get('content-type') ?? '', /^application\/json/)
      t.same(await res.json(), want, path)
    }
  })

  t.test('a missing token answers 401 with a resource_metadata challenge and no error, on both routes', async t => {
    const challenge = `Bearer resource_metadata="${metadataUrl}"`
    for (const res of [await getSse(`${base}/mcp/sse`), await post(messageUrl, ping)]) {
      assertRefused(t, res, { error: null })
      t.equal(res.headers.get('www-authenticate'), challenge)
    }
  })

  t.test('the resource_metadata URL of a challenge leads to the metadata document', async t => {
    const res = await getSse(`${base}/mcp/sse`)
    const url = /resource_metadata="([^"]+)"/.exec(res.headers.get('www-authenticate') ?? '')?.[1]
    t.equal(url, metadataUrl)
    const doc = await (await fetch(url as string)).json() as Record<string, unknown>
    t.equal(doc.resource, resource)
  })

  t.test('a token signed with another key answers 401 invalid_token with resource_metadata, on both routes', async t => {
    const token = await sign(oauthClaims(), stranger.privateKey)
    for (const res of [await getSse(`${base}/mcp/sse`, bearer(token)), await post(messageUrl, ping, bearer(token))]) {
      assertRefused(t, res, { error: 'invalid_token', challenge: `resource_metadata="${metadataUrl}"`, token })
    }
  })

  t.test('a token without the required scope answers 403 insufficient_scope naming the scope, on both routes', async t => {
    const token = await sign(oauthClaims({ scope: 'profile' }))
    for (const res of [await getSse(`${base}/mcp/sse`, bearer(token)), await post(messageUrl, ping, bearer(token))]) {
      assertRefused(t, res, { status: 403, error: 'insufficient_scope', challenge: `resource_metadata="${metadataUrl}"`, token })
      t.match(res.headers.get('www-authenticate') ?? '', 'scope="mcp:tools"')
    }
  })

  t.test('the audience defaults to the resource: a token for another audience answers 401 invalid_token', async t => {
    const token = await sign(oauthClaims({ aud: 'http://127.0.0.1:1/other' }))
    assertRefused(t, await getSse(`${base}/mcp/sse`, bearer(token)), { error: 'invalid_token', token })
    assertRefused(t, await post(messageUrl, ping, bearer(token)), { error: 'invalid_token', token })
  })

  t.test('a token from another issuer answers 401 invalid_token', async t => {
    const token = await sign(oauthClaims({ iss: ISSUER }))
    assertRefused(t, await getSse(`${base}/mcp/sse`, bearer(token)), { error: 'invalid_token', token })
  })

  t.test('a good token works end to end with the SDK client, and tools see its scopes', async t => {
    const token = await sign(oauthClaims())
    const client = await connectClient(t, `${base}/mcp/sse`, clientWithToken(token))
    t.same((await client.listTools()).tools.map(x => x.name).sort(), ['echo', 'whoami'])
    t.equal(text(await client.callTool({ name: 'whoami', arguments: {} })), 'bob')
    t.same(seen.authInfo?.scopes, ['mcp:tools', 'profile'])
    t.equal(seen.authInfo?.clientId, 'oauth-client')
    t.equal(seen.authInfo?.token, token)
    t.ok(jwks.calls() >= 1, 'the keys came from the JWKS endpoint')
  })
})

// ---------------------------------------------------------------------------------------
// OAuthAuthProvider, introspection

const RESOURCE = 'https://mcp.example.com/sse'

function activeToken (over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    active: true,
    sub: 'carol',
    client_id: 'intro-client',
    scope: 'mcp:tools files:read',
    exp: now() + 300,
    aud: [RESOURCE, 'https://other.example.com'],
    iss: AS,
    ...over
  }
}

function introspectionProvider (endpoint: string, over: Partial<OAuthAuthProviderOptions['validation']> = {}, requiredScopes?: string[]): OAuthAuthProvider {
  return new OAuthAuthProvider({
    resource: RESOURCE,
    authorizationServers: [AS],
    validation: { type: 'introspection', endpoint, clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, ...over } as OAuthAuthProviderOptions['validation'],
    ...(requiredScopes !== undefined ? { requiredScopes } : {})
  })
}

t.test('introspection: an active token works end to end and tools see the introspected scopes', async t => {
  const intro = await startIntrospection(t, { 'tok-active': activeToken() })
  const seen = newSeen()
  const provider = introspectionProvider(intro.url, {}, ['mcp:tools'])
  const { base } = await startApp(t, { auth: { provider }, server: recordingServer(seen) })
  const client = await connectClient(t, `${base}/sse`, clientWithToken('tok-active'))
  t.same((await client.listTools()).tools.map(x => x.name).sort(), ['echo', 'whoami'])
  t.equal(text(await client.callTool({ name: 'whoami', arguments: {} })), 'carol')
  t.same(seen.authInfo?.scopes, ['mcp:tools', 'files:read'])
  t.equal(seen.authInfo?.clientId, 'intro-client')
  t.equal(seen.authInfo?.token, 'tok-active')
  t.type(seen.authInfo?.expiresAt, 'number')
  t.same(seen.factoryPrincipals, ['carol'])
})

t.test('introspection: repeated requests with one token reuse the cached result', async t => {
  const intro = await startIntrospection(t, { 'tok-cached': activeToken() })
  const { base } = await startApp(t, { auth: { provider: introspectionProvider(intro.url) }, server: recordingServer(newSeen()) })
  const client = await connectClient(t, `${base}/sse`, clientWithToken('tok-cached'))
  await client.listTools()
  for (let i = 0; i < 3; i++) await client.callTool({ name: 'echo', arguments: { text: `n${i}` } })
  t.equal(intro.calls, 1, 'one introspection for the stream and every POST')
})

t.test('introspection: concurrent requests with one new token share a single introspection call', async t => {
  const intro = await startIntrospection(t, { 'tok-burst': activeToken() })
  const { base } = await startApp(t, { auth: { provider: introspectionProvider(intro.url) } })
  const answers = await Promise.all(Array.from({ length: 10 }, () => post(`${base}/messages?sessionId=none`, ping, bearer('tok-burst'))))
  t.same(answers.map(a => a.status), Array(10).fill(404), 'all accepted (404: no such session)')
  t.equal(intro.calls, 1)
})

t.test('introspection: with cacheTtl 50 a token is introspected again once its entry expires', async t => {
  const intro = await startIntrospection(t, { 'tok-ttl': activeToken() })
  const { base } = await startApp(t, { auth: { provider: introspectionProvider(intro.url, { cacheTtl: 50 }) } })
  // Auth runs before the session lookup: 404 means the token was accepted.
  const url = `${base}/messages?sessionId=none`
  const start = Date.now()
  t.equal((await post(url, ping, bearer('tok-ttl'))).status, 404)
  t.equal((await post(url, ping, bearer('tok-ttl'))).status, 404)
  // On a loaded machine the two requests may be 50 ms apart: only then is a miss allowed.
  if (Date.now() - start < 45) t.equal(intro.calls, 1, 'cached within the TTL')
  else t.comment('the two requests took too long to check the cache hit')
  const before = intro.calls
  await new Promise(resolve => setTimeout(resolve, 120))
  t.equal((await post(url, ping, bearer('tok-ttl'))).status, 404)
  t.equal(intro.calls, before + 1, 'introspected again after the TTL')
})

t.test('introspection: cacheMax 2 keeps at most two cached results after five tokens', async t => {
  const tokens = Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`tok-${i}`, activeToken({ sub: `user-${i}` })]))
  const intro = await startIntrospection(t, tokens)
  const provider = introspectionProvider(intro.url, { cacheMax: 2 })
  const { base } = await startApp(t, { auth: { provider } })
  for (const token of Object.keys(tokens)) {
    t.equal((await post(`${base}/messages?sessionId=none`, ping, bearer(token))).status, 404, `${token} accepted`)
    t.ok(provider.cacheSize <= 2, `cacheSize ${provider.cacheSize} <= 2`)
  }
  t.equal(intro.calls, 5)
  t.ok(provider.cacheSize > 0, 'results are still cached')
})

t.test('introspection: an inactive token answers 401 invalid_token', async t => {
  const intro = await startIntrospection(t, { 'tok-inactive': { active: false } })
  const { base } = await startApp(t, { auth: { provider: introspectionProvider(intro.url) } })
  assertRefused(t, await getSse(`${base}/sse`, bearer('tok-inactive')), { error: 'invalid_token', challenge: 'resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/sse"', token: 'tok-inactive' })
  t.equal(intro.calls, 1)
})

t.test('introspection: a token whose aud does not include the resource answers 401 invalid_token', async t => {
  const intro = await startIntrospection(t, { 'tok-aud': activeToken({ aud: ['https://other.example.com'] }) })
  const { base } = await startApp(t, { auth: { provider: introspectionProvider(intro.url) } })
  assertRefused(t, await getSse(`${base}/sse`, bearer('tok-aud')), { error: 'invalid_token', token: 'tok-aud' })
})

t.test('introspection: a token without the required scope answers 403 insufficient_scope', async t => {
  const intro = await startIntrospection(t, { 'tok-scope': activeToken({ scope: 'files:read' }) })
  const { base } = await startApp(t, { auth: { provider: introspectionProvider(intro.url, {}, ['mcp:tools']) } })
  assertRefused(t, await getSse(`${base}/sse`, bearer('tok-scope')), { status: 403, error: 'insufficient_scope', challenge: 'scope="mcp:tools"' })
})

t.test('introspection: wrong client credentials at the endpoint answer 401, not 500, and the app keeps serving', async t => {
  const intro = await startIntrospection(t, { 'tok-good': activeToken() })
  const provider = introspectionProvider(intro.url, { clientSecret: 'wrong' })
  const { base } = await startApp(t, { auth: { provider } })
  const first = await getSse(`${base}/sse`, bearer('tok-good'))
  assertRefused(t, first, { challenge: 'resource_metadata=', token: 'tok-good' })
  t.equal(intro.rejected, 1, 'the endpoint refused the client credentials')
  assertRefused(t, await post(`${base}/messages?sessionId=none`, ping, bearer('tok-good')), {})
  t.equal(intro.rejected, 2, 'a failed introspection is not cached')
  t.equal((await fetch(`${base}/.well-known/oauth-protected-resource/sse`)).status, 200, 'the app still answers')
})

t.test('introspection: an unreachable endpoint answers 401 and does not crash the app', async t => {
  const closed = await freePort()
  const provider = introspectionProvider(`http://127.0.0.1:${closed}/introspect`)
  const { base } = await startApp(t, { auth: { provider } })
  assertRefused(t, await getSse(`${base}/sse`, bearer('tok-any')), { challenge: 'resource_metadata=', token: 'tok-any' })
  assertRefused(t, await post(`${base}/messages?sessionId=none`, ping, bearer('tok-any')), {})
  t.equal((await fetch(`${base}/.well-known/oauth-protected-resource`)).status, 200, 'the app still answers')
})

// ---------------------------------------------------------------------------------------
// Constructor errors

const INVALID = { code: 'FST_ERR_MCP_SSE_INVALID_OPTION' }
const jwtValidation = { type: 'jwt' as const, jwksUri: 'https://auth.example.com/jwks.json' }

t.test('JwtAuthProvider without secret, publicKey or jwksUri throws FST_ERR_MCP_SSE_INVALID_OPTION', async t => {
  t.throws(() => new JwtAuthProvider({}), INVALID)
})

t.test('JwtAuthProvider with both a secret and a publicKey throws FST_ERR_MCP_SSE_INVALID_OPTION', async t => {
  t.throws(() => new JwtAuthProvider({ secret: SECRET, publicKey: spki }), INVALID)
})

t.test('JwtAuthProvider with both a publicKey and a jwksUri throws FST_ERR_MCP_SSE_INVALID_OPTION', async t => {
  t.throws(() => new JwtAuthProvider({ publicKey: spki, jwksUri: 'https://auth.example.com/jwks.json' }), INVALID)
})

t.test('JwtAuthProvider with an empty secret throws FST_ERR_MCP_SSE_INVALID_OPTION', async t => {
  t.throws(() => new JwtAuthProvider({ secret: '' }), INVALID)
})

t.test('OAuthAuthProvider with a resource that is not a URL throws FST_ERR_MCP_SSE_INVALID_OPTION', async t => {
  t.throws(() => new OAuthAuthProvider({ resource: 'mcp server', authorizationServers: [AS], validation: jwtValidation }), INVALID)
})

t.test('OAuthAuthProvider with no authorization servers throws FST_ERR_MCP_SSE_INVALID_OPTION', async t => {
  t.throws(() => new OAuthAuthProvider({ resource: RESOURCE, authorizationServers: [], validation: jwtValidation }), INVALID)
})

t.test('OAuthAuthProvider with an unknown validation type throws FST_ERR_MCP_SSE_INVALID_OPTION', async t => {
  const validation = { type: 'saml', endpoint: 'https://auth.example.com/saml' } as unknown as OAuthAuthProviderOptions['validation']
  t.throws(() => new OAuthAuthProvider({ resource: RESOURCE, authorizationServers: [AS], validation }), INVALID)
})

t.test('a JwtAuthProvider given a publicKey that is not a PEM neither crashes the process nor accepts a token', async t => {
  // In a child process: an unhandled rejection there must not take the test runner down.
  const jwtModule = new URL('../src/auth/jwt.ts', import.meta.url).href
  const token = await sign(claims())
  const code = `
    import(${JSON.stringify(jwtModule)}).then(async ({ JwtAuthProvider }) => {
      let provider
      try { provider = new JwtAuthProvider({ publicKey: 'not a pem' }) } catch (err) { console.log('threw ' + err.code); process.exit(0) }
      await new Promise(resolve => setTimeout(resolve, 100))
      const verdict = await provider.verify(${JSON.stringify(token)}).then(() => 'accepted', () => 'refused')
      console.log('alive ' + verdict)
      process.exit(0)
    })`
  const result = await new Promise<{ code: number | null, stdout: string }>(resolve => {
    execFile(process.execPath, [...tsNodeArgs(), '--input-type=module', '-e', code], { cwd: fileURLToPath(new URL('..', import.meta.url)), timeout: 10_000 }, (err, stdout) => {
      resolve({ code: err === null ? 0 : (typeof err.code === 'number' ? err.code : 1), stdout })
    })
  })
  t.equal(result.code, 0, 'the process survives')
  t.match(result.stdout, /^(threw FST_ERR_MCP_SSE_INVALID_OPTION|alive refused)$/m, 'the key is reported at construction or every token is refused')
})
