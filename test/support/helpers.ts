// Shared test helpers: a real listening app on 127.0.0.1:0, the SDK's own client, and a
// raw SSE reader for the cases the SDK client hides (headers, pings, slow readers).
import http from 'node:http'
import net, { type AddressInfo } from 'node:net'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { SSEClientTransport, type SSEClientTransportOptions } from '@modelcontextprotocol/sdk/client/sse.js'
import mcpSse, { type McpSseOptions } from '../../src/index.js'
import { buildExampleServer } from '../../example/mcp-server.js'
import { buildExampleServerV2 } from '../../example/mcp-server-v2.js'

/**
 * The SDK line of the example server the suites run against: `MCP_TEST_SDK=v2` runs them
 * against `@modelcontextprotocol/server` 2.x (see test/sdk-v2/), otherwise 1.x.
 */
export const SDK_LINE: 'v1' | 'v2' = process.env.MCP_TEST_SDK === 'v2' ? 'v2' : 'v1'

/** The example server (echo, countdown) of the SDK line under test. */
export function exampleServer (): ReturnType<typeof buildExampleServer> | ReturnType<typeof buildExampleServerV2> {
  return SDK_LINE === 'v2' ? buildExampleServerV2() : buildExampleServer()
}

export interface TestApp {
  app: FastifyInstance
  /** http://127.0.0.1:PORT */
  base: string
}

export interface StartOptions {
  fastify?: FastifyServerOptions
  prefix?: string
  /** Runs before the plugin is registered (host-app routes, other plugins). */
  before?: (app: FastifyInstance) => void | Promise<void>
}

/** Starts an app with the plugin on a real socket; closes it when the test ends. */
export async function startApp (
  t: { teardown: (fn: () => unknown) => void },
  opts: Partial<McpSseOptions> = {},
  start: StartOptions = {}
): Promise<TestApp> {
  // The SDK client's fetch pool can open a spare connection that never sends a request;
  // Node counts it as busy until headersTimeout, so tests force-close. The shutdown test
  // passes its own options to check that streams end without force.
  const app = Fastify(start.fastify ?? { forceCloseConnections: true })
  await start.before?.(app)
  await app.register(mcpSse, { server: () => exampleServer(), ...opts, ...(start.prefix !== undefined ? { prefix: start.prefix } : {}) })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  const { port } = app.server.address() as AddressInfo
  return { app, base: `http://127.0.0.1:${port}` }
}

/** Connects the SDK's own `Client` over `SSEClientTransport`. */
export async function connectClient (
  t: { teardown: (fn: () => unknown) => void },
  url: string,
  transportOpts?: SSEClientTransportOptions
): Promise<Client> {
  const client = new Client({ name: 'test-client', version: '1.0.0' })
  const transport = new SSEClientTransport(new URL(url), transportOpts)
  await client.connect(transport)
  t.teardown(() => client.close())
  return client
}

export interface SseEvent {
  event: string
  data: string
}

/**
 * Moves every complete event of `buffer` (the plugin's framing: `event:` and `data:` lines,
 * a blank line after each) into `out`; returns what is left, an incomplete event.
 */
export function parseSseEvents (buffer: string, out: SseEvent[]): string {
  let i
  while ((i = buffer.indexOf('\n\n')) !== -1) {
    const raw = buffer.slice(0, i)
    buffer = buffer.slice(i + 2)
    const ev: SseEvent = { event: 'message', data: '' }
    const data: string[] = []
    for (const line of raw.split('\n')) {
      if (line.startsWith('event: ')) ev.event = line.slice(7)
      else if (line.startsWith('data: ')) data.push(line.slice(6))
    }
    ev.data = data.join('\n')
    out.push(ev)
  }
  return buffer
}

/** A raw SSE stream read with node:http, one parsed event at a time. */
export class RawStream {
  readonly res: http.IncomingMessage
  readonly req: http.ClientRequest
  #buffer = ''
  #events: SseEvent[] = []
  #waiters: Array<() => void> = []
  ended = false

  private constructor (req: http.ClientRequest, res: http.IncomingMessage) {
    this.req = req
    this.res = res
    res.setEncoding('utf8')
    res.on('data', (chunk: string) => {
      this.#buffer = parseSseEvents(this.#buffer + chunk, this.#events)
      this.#wake()
    })
    res.on('close', () => { this.ended = true; this.#wake() })
  }

  #wake (): void {
    const w = this.#waiters
    this.#waiters = []
    for (const fn of w) fn()
  }

  static open (url: string, headers: http.OutgoingHttpHeaders = {}): Promise<RawStream> {
    return new Promise((resolve, reject) => {
      const req = http.get(url, { headers: { accept: 'text/event-stream', ...headers } }, res => resolve(new RawStream(req, res)))
      req.on('error', reject)
    })
  }

  /** Resolves with the next event (of `name`, if given), skipping others; rejects on timeout or end. */
  async next (name?: string, timeoutMs = 5000): Promise<SseEvent> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const idx = this.#events.findIndex(e => name === undefined || e.event === name)
      if (idx !== -1) {
        const [ev] = this.#events.splice(0, idx + 1).slice(-1)
        return ev as SseEvent
      }
      if (this.ended) throw new Error(`stream ended while waiting for ${name ?? 'an event'}`)
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for ${name ?? 'an event'}`)
      await new Promise<void>(resolve => {
        const timer = setTimeout(resolve, left)
        this.#waiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
  }

  /** Waits for the server to end the stream. */
  async waitEnd (timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!this.ended) {
      const left = deadline - Date.now()
      if (left <= 0) throw new Error('timed out waiting for the stream to end')
      await new Promise<void>(resolve => {
        const timer = setTimeout(resolve, left)
        this.#waiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
  }

  /** The message URL announced by the endpoint event (absolute, against `base`). */
  async endpoint (base: string): Promise<string> {
    const ev = await this.next('endpoint')
    return new URL(ev.data, base).toString()
  }

  close (): void {
    this.req.destroy()
  }
}

export interface PostResult {
  status: number
  headers: Headers
  body: unknown
  text: string
}

/** POSTs a body (object as JSON, or a raw string) and reads the answer. */
export async function post (url: string, body: unknown, headers: Record<string, string> = {}): Promise<PostResult> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body)
  })
  const text = await res.text()
  let parsed: unknown
  try { parsed = text === '' ? undefined : JSON.parse(text) } catch { parsed = undefined }
  return { status: res.status, headers: res.headers, body: parsed, text }
}

/** Polls until `fn` returns true (for effects that land on the next tick, like cleanup). */
export async function until (fn: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

export const initialize = (id: number | string = 1) => ({
  jsonrpc: '2.0' as const,
  id,
  method: 'initialize',
  params: { protocolVersion: '2024-11-05', capabilities: {}, clientInfo: { name: 'raw', version: '1' } }
})

/** A port nothing listens on (taken, then released). */
export async function freePort (): Promise<number> {
  const srv = net.createServer()
  await new Promise<void>(resolve => srv.listen(0, '127.0.0.1', resolve))
  const { port } = srv.address() as AddressInfo
  await new Promise<void>(resolve => srv.close(() => resolve()))
  return port
}

export interface ObservedApp extends TestApp {
  /** clientInfo of every session that initialized. */
  clients: Array<{ name: string, version: string } | undefined>
  /** Method and path of every request the app received. */
  requests: string[]
}

/** The example server, recording which clients initialized and which requests came in. */
export async function startObservedApp (
  t: { teardown: (fn: () => unknown) => void },
  opts: Partial<McpSseOptions> = {},
  prefix?: string
): Promise<ObservedApp> {
  const clients: ObservedApp['clients'] = []
  const requests: string[] = []
  const started = await startApp(t, {
    server: () => {
      const server = exampleServer()
      server.server.oninitialized = () => { clients.push(server.server.getClientVersion()) }
      return server
    },
    ...opts
  }, {
    ...(prefix === undefined ? {} : { prefix }),
    before: (app: FastifyInstance) => {
      app.addHook('onRequest', async request => { requests.push(`${request.method} ${request.url.split('?')[0] as string}`) })
    }
  })
  return { ...started, clients, requests }
}

/**
 * Node flags for a child process that runs a TypeScript file: the test runner's own
 * loaders when there are some (so the child's coverage of src/ maps onto the same lines
 * as ours and merges with it), else tsx.
 */
export function tsNodeArgs (): string[] {
  return process.execArgv.some(a => a.includes('@tapjs/typescript')) ? [...process.execArgv] : ['--import', 'tsx']
}

/** What a test expects of a JSON-RPC error answer (DESIGN.md's error shape). */
export interface ExpectedError {
  status: number
  code: number
  type: string
  id?: string | number | null
  method?: string | null
  sessionId?: string | null
  connectionActive?: boolean
}

type Test = Parameters<Parameters<typeof import('tap').default.test>[0]>[0]

/** Asserts the whole error answer: status, JSON content type, and the exact JSON-RPC error body. */
export function assertError (t: Test, res: { status: number, contentType: string | null | undefined, body: unknown, text: string }, want: ExpectedError): void {
  t.equal(res.status, want.status, 'status')
  t.match(res.contentType, /^application\/json(;|$)/, 'content-type is application/json')
  const body = res.body as Record<string, any> | undefined
  t.ok(body !== undefined && typeof body === 'object', `the body is JSON: ${res.text.slice(0, 200)}`)
  if (body === undefined) return
  t.same(Object.keys(body).sort(), ['error', 'id', 'jsonrpc'], 'top-level members')
  t.equal(body.jsonrpc, '2.0')
  t.equal(body.id, want.id ?? null, 'id')
  t.same(Object.keys(body.error ?? {}).sort(), ['code', 'data', 'message'], 'error members')
  t.equal(body.error?.code, want.code, 'error.code')
  t.type(body.error?.message, 'string')
  t.ok(typeof body.error?.message === 'string' && body.error.message.length > 0, 'error.message is not empty')
  t.same(body.error?.data, {
    type: want.type,
    method: want.method ?? null,
    sessionId: want.sessionId ?? null,
    connectionActive: want.connectionActive ?? false
  }, 'error.data')
}

/** One request as it reached the socket, and how its answer's head was written. */
export interface WireRequest {
  method: string
  path: string
  /** The Mcp-Session-Id it carried. */
  sessionId: string | undefined
  /** Status and content type of the answer (set once the head is out). */
  status?: number
  type?: string
  /** The Mcp-Session-Id the answer issued, if any. */
  issued?: string
}

/** Records every request that reaches the app's server, with the headers that tell the transports apart. */
export function recordWire (app: { server: http.Server }): WireRequest[] {
  const seen: WireRequest[] = []
  app.server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const id = req.headers['mcp-session-id']
    const entry: WireRequest = { method: req.method ?? '', path: (req.url ?? '').split('?')[0] as string, sessionId: typeof id === 'string' ? id : undefined }
    seen.push(entry)
    // Fastify and the plugin's streams write their heads with writeHead(status, headers).
    const writeHead = res.writeHead
    res.writeHead = function (this: http.ServerResponse, status: number, ...rest: unknown[]) {
      const headers = rest.find(x => typeof x === 'object' && x !== null && !Array.isArray(x)) as http.OutgoingHttpHeaders | undefined
      entry.status = status
      entry.type = String(headers?.['content-type'] ?? res.getHeader('content-type') ?? '')
      const issued = headers?.['mcp-session-id'] ?? res.getHeader('mcp-session-id')
      if (typeof issued === 'string') entry.issued = issued
      return (writeHead as (...args: unknown[]) => http.ServerResponse).call(this, status, ...rest)
    } as typeof res.writeHead
  })
  return seen
}
