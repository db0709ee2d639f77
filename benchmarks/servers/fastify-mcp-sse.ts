// fastify-mcp-sse: this plugin (from src/, run through tsx), in-memory sessions, every
// feature on: TypeBox schemas, content-type check, session lookup, CORS, Origin allowlist
// (requests without Origin pass, as MCP clients send none), keep-alive pings, bounded
// buffers with backpressure, the session cap.
// With BENCH_REDIS_URL set it shares sessions through that Redis instead (one instance of
// the `cross-instance` pair; BENCH_KEY_PREFIX keeps a run's keys apart).
import Fastify from 'fastify'
import mcpSse from '../../src/index.js'
import { announce, buildEchoServer, listenHost, listenPort, memReport } from './common.js'

const redisUrl = process.env.BENCH_REDIS_URL
const app = Fastify({ logger: false })
await app.register(mcpSse, {
  server: () => buildEchoServer(),
  keepAliveInterval: 15_000,
  maxBufferedBytes: '4mb',
  maxMessageSize: '4mb',
  // Above the default (10,000) so the connection-scale scenario's 10,000 sessions fit
  // whatever is still closing from before; the cap is checked all the same.
  maxSessions: 20_000,
  allowedOrigins: ['http://127.0.0.1'],
  ...(redisUrl !== undefined ? { redis: { url: redisUrl, keyPrefix: process.env.BENCH_KEY_PREFIX ?? 'mcp-bench:' } } : {})
})
app.get('/__mem', async () => memReport(app.mcpSessions.size))

await app.listen({ host: listenHost, port: listenPort })
announce({ port: (app.server.address() as { port: number }).port })
