// sdk2-fastify-stateless: SDK v2 through its official Fastify path, stateless, exactly as
// the @modelcontextprotocol/fastify README shows it: createMcpFastifyApp(), and for every
// POST a new McpServer and NodeStreamableHTTPServerTransport({ sessionIdGenerator:
// undefined }), closed when the response closes; GET and DELETE answer 405.
import { createMcpFastifyApp } from '@modelcontextprotocol/fastify'
import { NodeStreamableHTTPServerTransport } from '@modelcontextprotocol/node'
import { announce, listenHost, listenPort, memReport } from './common.js'
import { buildBenchServerV2 } from './common-v2.js'

const app = createMcpFastifyApp()

app.post('/mcp', async (request, reply) => {
  const mcpServer = buildBenchServerV2()
  const transport = new NodeStreamableHTTPServerTransport({ sessionIdGenerator: undefined })
  await mcpServer.connect(transport)
  reply.raw.on('close', () => {
    void transport.close()
    void mcpServer.close()
  })
  await transport.handleRequest(request.raw, reply.raw, request.body)
})

const methodNotAllowed = { jsonrpc: '2.0', error: { code: -32000, message: 'Method not allowed.' }, id: null }
app.get('/mcp', async (_request, reply) => await reply.code(405).send(methodNotAllowed))
app.delete('/mcp', async (_request, reply) => await reply.code(405).send(methodNotAllowed))

app.get('/__mem', async () => memReport(0))

await app.listen({ host: listenHost, port: listenPort })
announce({ port: (app.server.address() as { port: number }).port })
