// Type-level tests: checked by `tsc -p tsconfig.json --noEmit` (part of `npm test`). An
// `@ts-expect-error` that finds no error fails the type check, so each one proves the
// types refuse that mistake. The runtime part checks that the typed calls really work.
import t from 'tap'
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { Server } from '@modelcontextprotocol/sdk/server/index.js'
import mcpSse, {
  ApiKeyAuthProvider,
  fastifyMcpSse,
  type AuthResult,
  type McpServerLike,
  type McpSession,
  type McpSessionContext,
  type McpSessionStore,
  type McpSseOptions
} from '../src/index.js'

/** True only when A and B are the same type (any is not the same as anything else). */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false
function expectType<A, B> (_proof: Equal<A, B>): void {}

const mcpServer = () => new McpServer({ name: 'types', version: '1.0.0' })
const lowLevelServer = () => new Server({ name: 'types-low', version: '1.0.0' }, { capabilities: {} })

// --- Wrong option types are refused -------------------------------------------------

// @ts-expect-error server is required
const noServer: McpSseOptions = { endpoint: '/sse' }

const endpointAsNumber: McpSseOptions = {
  server: mcpServer,
  // @ts-expect-error endpoint is a string
  endpoint: 1
}

const corsMaxAgeAsNumber: McpSseOptions = {
  server: mcpServer,
  // @ts-expect-error cors.maxAge is a string of seconds, as in the documented shape
  cors: { maxAge: 86400 }
}

const keepAliveAsString: McpSseOptions = {
  server: mcpServer,
  // @ts-expect-error keepAliveInterval is a number of milliseconds
  keepAliveInterval: '15000'
}

const serverNotAFactory: McpSseOptions = {
  // @ts-expect-error server is a factory, not a server instance
  server: mcpServer()
}

// Only a type check: a function passes register's runtime check, whatever it returns.
export const factoryReturnsNoServer: McpSseOptions = {
  // @ts-expect-error the factory must return something with connect() and close()
  server: () => ({ name: 'not a server' })
}

const corsUnknownField: McpSseOptions = {
  server: mcpServer,
  // @ts-expect-error cors has only the documented fields
  cors: { allowOrigin: '*', credentials: true }
}

const corsTrue: McpSseOptions = {
  server: mcpServer,
  // @ts-expect-error cors is an object or false
  cors: true
}

const originsAsString: McpSseOptions = {
  server: mcpServer,
  // @ts-expect-error allowedOrigins is an array
  allowedOrigins: 'https://app.example.com'
}

const authWithoutProvider: McpSseOptions = {
  server: mcpServer,
  // @ts-expect-error auth needs a provider
  auth: { endpoints: { sse: true } }
}

const headersNotStrings: McpSseOptions = {
  server: mcpServer,
  // @ts-expect-error header values are strings
  headers: { 'X-Count': 1 }
}

/** Every refused shape, kept so the runtime test can show register refuses them too. */
const refused = { noServer, endpointAsNumber, corsMaxAgeAsNumber, keepAliveAsString, serverNotAFactory, corsUnknownField, corsTrue, originsAsString, authWithoutProvider, headersNotStrings }

function registerTyped (app: FastifyInstance): void {
  // @ts-expect-error register() checks the plugin's options: server is required
  void app.register(mcpSse, { endpoint: '/sse' })
  // @ts-expect-error register() checks the plugin's options: endpoint is a string
  void app.register(mcpSse, { server: mcpServer, endpoint: 1 })
}

// --- Valid options compile ----------------------------------------------------------

const withMcpServer: McpSseOptions = { server: mcpServer }
const withLowLevelServer: McpSseOptions = { server: lowLevelServer }
const withAsyncFactory: McpSseOptions = { server: async () => mcpServer() }

const everything: McpSseOptions = {
  server: (context) => {
    expectType<typeof context, McpSessionContext>(true)
    expectType<typeof context.sessionId, string>(true)
    expectType<typeof context.request, FastifyRequest>(true)
    expectType<typeof context.auth, AuthResult | undefined>(true)
    return mcpServer()
  },
  endpoint: '/sse',
  messageEndpoint: '/messages',
  maxMessageSize: '4mb',
  headers: { 'X-Custom-Header': 'value' },
  cors: {
    allowOrigin: '*',
    allowMethods: 'GET, POST, OPTIONS',
    allowHeaders: 'Content-Type, Authorization, x-api-key',
    exposeHeaders: 'Content-Type, Authorization, x-api-key',
    maxAge: '86400'
  },
  keepAliveInterval: 15000,
  maxSessions: 100,
  maxBufferedBytes: 1024 * 1024,
  allowedOrigins: ['https://app.example.com'],
  auth: { provider: new ApiKeyAuthProvider({ keys: ['k'] }), endpoints: { sse: true, messages: true } }
}
const sizesAsNumbers: McpSseOptions = { server: mcpServer, maxMessageSize: 4096, maxBufferedBytes: '1mb', cors: false }

// Both SDK servers fit the factory's return type.
const asLike: McpServerLike[] = [mcpServer(), lowLevelServer()]
expectType<ReturnType<McpSseOptions['server']>, McpServerLike | Promise<McpServerLike>>(true)

// --- The decorated session store is typed -------------------------------------------

function storeTypes (app: FastifyInstance): number {
  const store: McpSessionStore = app.mcpSessions
  expectType<typeof app.mcpSessions, McpSessionStore>(true)
  expectType<typeof store.size, number>(true)
  expectType<ReturnType<McpSessionStore['get']>, McpSession | undefined>(true)
  expectType<ReturnType<McpSessionStore['has']>, boolean>(true)
  expectType<ReturnType<McpSessionStore['close']>, Promise<boolean>>(true)
  let total = store.size
  const one = store.get('id')
  expectType<typeof one, McpSession | undefined>(true)
  if (one !== undefined) {
    expectType<typeof one.id, string>(true)
    expectType<typeof one.createdAt, number>(true)
    expectType<typeof one.transport.sessionId, string>(true)
  }
  for (const session of store) {
    expectType<typeof session, McpSession>(true)
    total += session.createdAt > 0 ? 0 : 1
  }
  for (const id of store.ids()) {
    expectType<typeof id, string>(true)
  }
  return total
}

/** Compile-time only (never called): mistakes the store's types refuse. */
export function storeMisuse (store: McpSessionStore): void {
  // @ts-expect-error size is read-only
  store.size = 3
  // @ts-expect-error get() takes a session id string
  store.get(42)
  // @ts-expect-error a session may be missing: get() can return undefined
  store.get('id').close()
}

// --- Runtime: the typed calls really work --------------------------------------------

t.test('registering with typed options works and the store starts empty', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(mcpSse, withMcpServer)
  await app.ready()
  t.equal(app.mcpSessions.size, 0)
  t.equal(storeTypes(app), 0)
  t.equal(app.mcpSessions.get('nope'), undefined)
  t.same([...app.mcpSessions], [])
  const res = await app.inject({ method: 'POST', url: '/messages?sessionId=nope', payload: { jsonrpc: '2.0', id: 1, method: 'ping' } })
  t.equal(res.statusCode, 404)
  t.equal(res.json().error.data.type, 'session_not_found')
})

t.test('every valid option object registers', async t => {
  for (const [name, opts] of Object.entries({ withMcpServer, withLowLevelServer, withAsyncFactory, everything, sizesAsNumbers })) {
    const app = Fastify()
    await app.register(mcpSse, opts)
    await app.ready()
    t.equal(app.mcpSessions.size, 0, name)
    await app.close()
  }
})

t.test('the named export is the default export', async t => {
  t.equal(fastifyMcpSse, mcpSse)
})

t.test('both SDK servers have connect() and close()', async t => {
  for (const s of asLike) {
    t.type(s.connect, 'function')
    t.type(s.close, 'function')
  }
})

t.test('the shapes the types refuse are also refused at register', async t => {
  for (const [name, opts] of Object.entries(refused)) {
    const app = Fastify()
    const err = await app.register(mcpSse, opts).then(() => undefined, (e: unknown) => e)
    t.match(err, { code: 'FST_ERR_MCP_SSE_INVALID_OPTION' }, name)
    await app.close().catch(() => {})
  }
})

t.test('register() with wrong options is refused at runtime too', async t => {
  const app = Fastify()
  registerTyped(app)
  await t.rejects(async () => { await app.ready() }, { code: 'FST_ERR_MCP_SSE_INVALID_OPTION' })
  await app.close().catch(() => {})
})
