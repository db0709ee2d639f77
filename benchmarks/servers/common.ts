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
