// fastify-mcp-sse sharing sessions through Redis (REDIS_URL, default redis://127.0.0.1:6379),
// one instance of the `cross-instance` pair. Same settings as fastify-mcp-sse otherwise.
// BENCH_KEY_PREFIX keeps a run's keys apart from anything else in that Redis.
import Fastify from 'fastify'
import mcpSse from '../../src/index.js'
import { announce, buildEchoServer, listenHost, listenPort, memReport } from './common.js'

const app = Fastify({ logger: false })
await app.register(mcpSse, {
  server: () => buildEchoServer(),
  keepAliveInterval: 15_000,
  maxBufferedBytes: '4mb',
  maxMessageSize: '4mb',
  maxSessions: 20_000,
  allowedOrigins: ['http://127.0.0.1'],
  redis: { url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', keyPrefix: process.env.BENCH_KEY_PREFIX ?? 'mcp-bench:' }
})
app.get('/__mem', async () => memReport(app.mcpSessions.size))

await app.listen({ host: listenHost, port: listenPort })
announce({ port: (app.server.address() as { port: number }).port })
