// sdk2-fastify: SDK v2 through its official Fastify path, sessionful:
// createMcpFastifyApp() from @modelcontextprotocol/fastify (Fastify with Host and Origin
// validation) and NodeStreamableHTTPServerTransport from @modelcontextprotocol/node, one
// transport and McpServer (@modelcontextprotocol/server) per session, kept in a map by
// session id, as the v2 README ("with sessions: one pair per session") and its serving
// guide (sessions) show. SDK defaults otherwise: answers go out as event streams, no event
// store.
import { randomUUID } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { createMcpFastifyApp } from '@modelcontextprotocol/fastify'
import { NodeStreamableHTTPServerTransport } from '@modelcontextprotocol/node'
import { isInitializeRequest } from '@modelcontextprotocol/server'
import { announce, listenHost, listenPort, memReport } from './common.js'
import { buildBenchServerV2 } from './common-v2.js'

const app = createMcpFastifyApp()
const sessions = new Map<string, NodeStreamableHTTPServerTransport>()

async function route (request: FastifyRequest, reply: FastifyReply): Promise<void> {
  const sessionId = request.headers['mcp-session-id'] as string | undefined
  const known = sessionId === undefined ? undefined : sessions.get(sessionId)
  if (known !== undefined) {
    await known.handleRequest(request.raw, reply.raw, request.body)
    return
  }
  if (sessionId === undefined && request.method === 'POST' && isInitializeRequest(request.body)) {
    const transport = new NodeStreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: id => { sessions.set(id, transport) }
    })
    transport.onclose = () => {
      if (transport.sessionId !== undefined) sessions.delete(transport.sessionId)
    }
    await buildBenchServerV2().connect(transport)
    await transport.handleRequest(request.raw, reply.raw, request.body)
    return
  }
  if (sessionId !== undefined) {
    await reply.code(404).send({ jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null })
    return
  }
  await reply.code(400).send({ jsonrpc: '2.0', error: { code: -32000, message: 'Bad Request: Session ID required' }, id: null })
}
app.post('/mcp', route)
app.get('/mcp', route)
app.delete('/mcp', route)

app.get('/__mem', async () => memReport(sessions.size))

await app.listen({ host: listenHost, port: listenPort })
announce({ port: (app.server.address() as { port: number }).port })
