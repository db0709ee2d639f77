// Runs the example MCP server: `npm start`, then point an MCP client at
// http://127.0.0.1:8080/mcp (Streamable HTTP; HTTP+SSE clients may use that URL or /sse).
// In-memory sessions, no other service needed.
import Fastify from 'fastify'
import mcpSse from '../src/index.js'
import { buildExampleServer } from './mcp-server.js'

const port = Number(process.env.PORT ?? 8080)
const host = process.env.HOST ?? '127.0.0.1'

// Force-close on shutdown: a client's idle spare connection would otherwise hold
// app.close() until Node's headersTimeout.
const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'info' }, forceCloseConnections: true })
await app.register(mcpSse, { server: () => buildExampleServer() })
app.get('/health', async () => ({ ok: true, sessions: app.mcpSessions.size }))

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => { void app.close().then(() => process.exit(0)) })
}
await app.listen({ port, host })
