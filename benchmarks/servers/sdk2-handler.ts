// sdk2-handler: SDK v2's createMcpHandler (@modelcontextprotocol/server), mounted on Fastify
// as the SDK's serving guide shows it: createMcpFastifyApp(), toNodeHandler(handler) from
// @modelcontextprotocol/node, one `app.all('/mcp')` route handing it request.raw,
// reply.raw and the parsed body. A new McpServer from the factory serves every request:
// 2026-07-28 requests (the `_meta` envelope, no initialize) on the modern path, 2025
// requests through its default stateless legacy fallback (no sessions).
import { createMcpFastifyApp } from '@modelcontextprotocol/fastify'
import { toNodeHandler } from '@modelcontextprotocol/node'
import { createMcpHandler } from '@modelcontextprotocol/server'
import { announce, listenHost, listenPort, memReport } from './common.js'
import { buildBenchServerV2 } from './common-v2.js'

const handler = createMcpHandler(() => buildBenchServerV2())
const app = createMcpFastifyApp()
const node = toNodeHandler(handler)
app.all('/mcp', (request, reply) => node(request.raw, reply.raw, request.body))

app.get('/__mem', async () => memReport(0))

await app.listen({ host: listenHost, port: listenPort })
announce({ port: (app.server.address() as { port: number }).port })
