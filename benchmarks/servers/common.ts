// Shared by the benchmark servers: the MCP server they serve, how a server reports itself
// to the driver, its memory route, and the hand-made replies of the "bare" servers (no MCP
// protocol work at all).
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { z } from 'zod'

/**
 * The MCP server of every SDK-based benchmark server, one per session: the `echo` tool of
 * example/mcp-server.ts and nothing else (mcp-framework gets the same single tool), so
 * that per-session memory compares like with like.
 */
export function buildEchoServer (): McpServer {
  const server = new McpServer({ name: 'fastify-mcp-sse-bench', version: '1.0.0' })
  server.registerTool('echo', {
    description: 'Echoes the text back',
    inputSchema: { text: z.string() }
  }, async ({ text }) => ({ content: [{ type: 'text', text }] }))
  return server
}

/**
 * The MCP server of the Streamable HTTP benchmark servers (SDK v1): `echo`, and `progress`,
 * which sends `steps` progress notifications (when the request has a progress token)
 * before its result, so that its answer goes out as an event stream. The SDK v2 servers
 * serve the same two tools (common-v2.ts), mcp-framework equivalents of them.
 */
export function buildBenchServer (): McpServer {
  const server = buildEchoServer()
  server.registerTool('progress', {
    description: 'Reports progress `steps` times, then answers',
    inputSchema: { steps: z.number().int().min(0).max(100) }
  }, async ({ steps }, extra) => {
    const progressToken = extra._meta?.progressToken
    if (progressToken !== undefined) {
      for (let i = 1; i <= steps; i++) {
        await extra.sendNotification({ method: 'notifications/progress', params: { progressToken, progress: i, total: steps } })
      }
    }
    return { content: [{ type: 'text', text: `done ${steps}` }] }
  })
  return server
}

export interface MemReport {
  rss: number
  heapTotal: number
  heapUsed: number
  external: number
  arrayBuffers: number
  /** Open sessions, as the server itself counts them. */
  sessions: number
  /** Whether a full GC ran first (the child was started with --expose-gc). */
  gc: boolean
}

/** `process.memoryUsage()` of this process, after two full GCs when they are available. */
export function memReport (sessions: number): MemReport {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc !== undefined) { gc(); gc() }
  const m = process.memoryUsage()
  return { rss: m.rss, heapTotal: m.heapTotal, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers, sessions, gc: gc !== undefined }
}

/** Port to listen on: PORT for a manual run, otherwise a free one the OS picks. */
export const listenPort = Number(process.env.PORT ?? 0)
export const listenHost = '127.0.0.1'

/**
 * Tells the driver where we listen (one JSON line on stdout), and ties our life to it:
 * when the driver goes away, whatever the reason, the IPC channel closes and we exit.
 */
export function announce (info: { port: number, memPort?: number }): void {
  process.stdout.write(JSON.stringify({ ready: true, pid: process.pid, ...info }) + '\n')
  if (process.send !== undefined) process.on('disconnect', () => process.exit(0))
  process.on('SIGTERM', () => process.exit(0))
}

/** The `endpoint` event every server sends first. */
export function endpointFrame (sessionId: string): string {
  return `event: endpoint\ndata: /messages?sessionId=${sessionId}\n\n`
}

export const SSE_HEADERS = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' }

/**
 * The reply a bare server writes on the stream for one POSTed message, without any MCP
 * machinery: `tools/call` gets a tools/call-shaped result echoing `arguments.text`,
 * `initialize` a minimal initialize result, any other request an empty result, and
 * notifications nothing.
 */
export function bareReply (message: unknown): string | undefined {
  if (typeof message !== 'object' || message === null) return undefined
  const msg = message as { id?: unknown, method?: unknown, params?: { arguments?: { text?: unknown }, protocolVersion?: unknown } }
  if (msg.id === undefined || typeof msg.method !== 'string') return undefined
  let result: unknown
  if (msg.method === 'tools/call') {
    result = { content: [{ type: 'text', text: String(msg.params?.arguments?.text ?? '') }] }
  } else if (msg.method === 'initialize') {
    result = { protocolVersion: msg.params?.protocolVersion ?? '2025-06-18', capabilities: { tools: {} }, serverInfo: { name: 'bare', version: '1.0.0' } }
  } else {
    result = {}
  }
  return 'event: message\ndata: ' + JSON.stringify({ jsonrpc: '2.0', id: msg.id, result }) + '\n\n'
}

/** What a bare Streamable HTTP server answers a request with (no MCP machinery). */
export interface BareAnswer {
  /** Progress notifications to send first (as an event stream), when the request asked for progress. */
  progress: Array<Record<string, unknown>>
  response: Record<string, unknown>
}

const BARE_TOOLS = [
  { name: 'echo', description: 'Echoes the text back', inputSchema: { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] } },
  { name: 'progress', description: 'Reports progress `steps` times, then answers', inputSchema: { type: 'object', properties: { steps: { type: 'integer', minimum: 0, maximum: 100 } }, required: ['steps'] } }
]

/**
 * The hand-made answer of a bare Streamable HTTP server to a JSON-RPC request: `initialize`
 * (echoing the requested revision), `tools/list` (a fixed list), `tools/call` of `echo` and
 * of `progress` (its notifications when the request has a progress token), an empty
 * result for anything else. Undefined for notifications and responses.
 */
export function bareAnswer (message: unknown): BareAnswer | undefined {
  if (typeof message !== 'object' || message === null) return undefined
  const msg = message as { id?: unknown, method?: unknown, params?: { name?: unknown, arguments?: { text?: unknown, steps?: unknown }, protocolVersion?: unknown, _meta?: { progressToken?: unknown } } }
  if (msg.id === undefined || typeof msg.method !== 'string') return undefined
  const progress: Array<Record<string, unknown>> = []
  let result: unknown
  if (msg.method === 'tools/call' && msg.params?.name === 'progress') {
    const steps = Number(msg.params.arguments?.steps ?? 0)
    const progressToken = msg.params._meta?.progressToken
    if (progressToken !== undefined) {
      for (let i = 1; i <= steps; i++) progress.push({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken, progress: i, total: steps } })
    }
    result = { content: [{ type: 'text', text: `done ${steps}` }] }
  } else if (msg.method === 'tools/call') {
    result = { content: [{ type: 'text', text: String(msg.params?.arguments?.text ?? '') }] }
  } else if (msg.method === 'tools/list') {
    result = { tools: BARE_TOOLS }
  } else if (msg.method === 'initialize') {
    result = { protocolVersion: msg.params?.protocolVersion ?? '2025-11-25', capabilities: { tools: {} }, serverInfo: { name: 'bare', version: '1.0.0' } }
  } else {
    result = {}
  }
  return { progress, response: { jsonrpc: '2.0', id: msg.id, result } }
}
