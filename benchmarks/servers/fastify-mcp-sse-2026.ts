// The plugin's 2026-07-28 path (`/mcp`, from src/ through tsx): requests that carry their
// protocol version in `_meta` are served one by one by SDK v2 servers from the factory
// (era 'modern'), with the same features on as the other plugin benchmark servers and the
// echo and progress tools (common-v2.ts). BENCH_REUSE sets `modern.reuseServers`: 0 (the
// default) builds a server for every request, as SDK v2's own createMcpHandler does;
// more keeps that many idle servers per caller for its later requests.
import Fastify from 'fastify'
import mcpSse from '../../src/index.js'
import { announce, listenHost, listenPort, memReport } from './common.js'
import { buildBenchServerV2 } from './common-v2.js'

const reuseServers = Number(process.env.BENCH_REUSE ?? 0)
const app = Fastify({ logger: false })
await app.register(mcpSse, {
  server: () => buildBenchServerV2(),
  modern: { reuseServers },
  keepAliveInterval: 15_000,
  maxBufferedBytes: '4mb',
  maxMessageSize: '4mb',
  maxSessions: 20_000,
  allowedOrigins: ['http://127.0.0.1']
})
app.get('/__mem', async () => memReport(app.mcpSessions.size))

await app.listen({ host: listenHost, port: listenPort })
announce({ port: (app.server.address() as { port: number }).port })
