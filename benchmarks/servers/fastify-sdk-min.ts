// fastify-sdk-min: bare Fastify routes handing messages to the SDK's McpServer through a
// minimal transport with no checks at all: the ceiling for any server that lets the SDK
// do the protocol work.
import { randomUUID } from 'node:crypto'
import type { ServerResponse } from 'node:http'
import Fastify from 'fastify'
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js'
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js'
import { announce, buildEchoServer, endpointFrame, listenHost, listenPort, memReport, SSE_HEADERS } from './common.js'

class MinTransport implements Transport {
  sessionId = randomUUID()
  onmessage?: Transport['onmessage']
  onclose?: () => void
  onerror?: (error: Error) => void
  constructor (readonly res: ServerResponse) {}
  async start (): Promise<void> { this.res.writeHead(200, SSE_HEADERS).write(endpointFrame(this.sessionId)) }
  async send (message: JSONRPCMessage): Promise<void> { this.res.write('event: message\ndata: ' + JSON.stringify(message) + '\n\n') }
  async close (): Promise<void> { this.res.end(); this.onclose?.() }
}

const sessions = new Map<string, MinTransport>()
const app = Fastify({ logger: false })

app.get('/sse', async (_request, reply) => {
  reply.hijack()
  const transport = new MinTransport(reply.raw)
  const server = buildEchoServer()
  sessions.set(transport.sessionId, transport)
  reply.raw.on('close', () => {
    sessions.delete(transport.sessionId)
    void server.close()
  })
  await server.connect(transport)
})

app.post('/messages', (request, reply) => {
  const transport = sessions.get((request.query as { sessionId?: string }).sessionId ?? '')
  if (transport === undefined) {
    reply.code(404).send()
    return
  }
  transport.onmessage?.(request.body as JSONRPCMessage)
  reply.code(202).send()
})

app.get('/__mem', async () => memReport(sessions.size))

await app.listen({ host: listenHost, port: listenPort })
announce({ port: (app.server.address() as { port: number }).port })
