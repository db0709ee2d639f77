// The plugin's Streamable HTTP endpoint (`/mcp`, from src/ through tsx), with the same
// features on as the HTTP+SSE benchmark server (fastify-mcp-sse.ts) and the echo and
// progress tools. BENCH_MODE picks how it answers:
//   json       responseMode 'json' (one JSON response per POST; progress is dropped)
//   sse        responseMode 'sse' (every answer an event stream)
//   stateless  stateless: true (a server from the factory for every POST; responseMode auto)
//              (BENCH_REUSE=n: stateless: { reuseServers: n }, kept servers lent to later POSTs)
// BENCH_TELEMETRY=off turns metrics and tracing off (they are on by default).
// With BENCH_REDIS_URL set it shares sessions through that Redis (one instance of the
// `cross-instance-streamable` pair; BENCH_KEY_PREFIX keeps a run's keys apart).
import Fastify from 'fastify'
import mcpSse from '../../src/index.js'
import { announce, buildBenchServer, listenHost, listenPort, memReport } from './common.js'

const mode = process.env.BENCH_MODE ?? 'json'
if (mode !== 'json' && mode !== 'sse' && mode !== 'stateless') throw new Error(`BENCH_MODE must be json, sse or stateless, not "${mode}"`)
const redisUrl = process.env.BENCH_REDIS_URL
const app = Fastify({ logger: false })
await app.register(mcpSse, {
  server: () => buildBenchServer(),
  responseMode: mode === 'stateless' ? 'auto' : mode,
  stateless: mode !== 'stateless' ? false : process.env.BENCH_REUSE !== undefined ? { reuseServers: Number(process.env.BENCH_REUSE) } : true,
  keepAliveInterval: 15_000,
  maxBufferedBytes: '4mb',
  maxMessageSize: '4mb',
  // Above the default (10,000) so the idle-session scenario's 10,000 sessions fit.
  maxSessions: 20_000,
  allowedOrigins: ['http://127.0.0.1'],
  ...(process.env.BENCH_TELEMETRY === 'off' ? { metrics: false, tracing: false } : {}),
  ...(redisUrl !== undefined ? { redis: { url: redisUrl, keyPrefix: process.env.BENCH_KEY_PREFIX ?? 'mcp-bench:' } } : {})
})
app.get('/__mem', async () => memReport(app.mcpSessions.size))

await app.listen({ host: listenHost, port: listenPort })
announce({ port: (app.server.address() as { port: number }).port })
