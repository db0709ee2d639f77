// fastify-mcp: the `fastify-mcp` npm package's Streamable HTTP plugin (`streamableHttp`),
// sessionful (`stateful: true`, its `Sessions` map), registered as its README shows, with
// `createServer` returning the low-level Server of an SDK v1 McpServer with the echo and
// progress tools.
import Fastify from 'fastify'
import type { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import { Sessions, streamableHttp } from 'fastify-mcp'
import { announce, buildBenchServer, listenHost, listenPort, memReport } from './common.js'

const sessions = new Sessions<StreamableHTTPServerTransport>()
const app = Fastify({ logger: false })
await app.register(streamableHttp, {
  stateful: true,
  mcpEndpoint: '/mcp',
  sessions,
  createServer: () => buildBenchServer().server
})
app.get('/__mem', async () => memReport(sessions.count))

await app.listen({ host: listenHost, port: listenPort })
announce({ port: (app.server.address() as { port: number }).port })
