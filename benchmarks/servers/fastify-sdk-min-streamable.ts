// fastify-sdk-min-streamable: a bare Fastify route handing Streamable HTTP messages to the
// SDK's McpServer (one per session) through a minimal transport with no checks at all: the
// ceiling for any Streamable HTTP server that lets the SDK do the protocol work. Each
// request is answered on its own POST: as JSON, or as an event stream once something
// related to it (progress) comes before its response.
import { randomUUID } from 'node:crypto'
import type { ServerResponse } from 'node:http'
import Fastify, { type FastifyReply } from 'fastify'
import type { Transport, TransportSendOptions } from '@modelcontextprotocol/sdk/shared/transport.js'
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js'
import { announce, buildBenchServer, listenHost, listenPort, memReport } from './common.js'

type Id = string | number
interface Pending { reply: FastifyReply, stream: ServerResponse | undefined }

class MinTransport implements Transport {
  readonly sessionId = randomUUID()
  readonly pending = new Map<Id, Pending>()
  onmessage?: Transport['onmessage']
  onclose?: () => void
  onerror?: (error: Error) => void
  async start (): Promise<void> {}
  async send (message: JSONRPCMessage, options?: TransportSendOptions): Promise<void> {
    const isResponse = 'result' in message || 'error' in message
    const id = isResponse ? (message as { id: Id }).id : options?.relatedRequestId
    const p = id === undefined ? undefined : this.pending.get(id)
    if (p === undefined) return // nothing to carry it (no standalone stream here)
    if (isResponse) {
      this.pending.delete(id!)
      if (p.stream !== undefined) p.stream.end('event: message\ndata: ' + JSON.stringify(message) + '\n\n')
      else p.reply.send(message)
      return
    }
    if (p.stream === undefined) {
      p.reply.hijack()
      p.stream = p.reply.raw
      p.stream.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
    }
    p.stream.write('event: message\ndata: ' + JSON.stringify(message) + '\n\n')
  }
  async close (): Promise<void> { this.onclose?.() }
}

const sessions = new Map<string, { transport: MinTransport, close: () => Promise<void> }>()
const app = Fastify({ logger: false })

app.post('/mcp', async (request, reply) => {
  const msg = request.body as JSONRPCMessage & { id?: Id, method?: string }
  const sessionId = request.headers['mcp-session-id']
  let transport: MinTransport
  if (sessionId === undefined && msg.method === 'initialize') {
    transport = new MinTransport()
    const server = buildBenchServer()
    await server.connect(transport)
    sessions.set(transport.sessionId, { transport, close: () => server.close() })
    reply.header('mcp-session-id', transport.sessionId)
  } else {
    const session = typeof sessionId === 'string' ? sessions.get(sessionId) : undefined
    if (session === undefined) return await reply.code(404).send()
    transport = session.transport
  }
  if (msg.id === undefined || msg.method === undefined) {
    transport.onmessage?.(msg)
    return await reply.code(202).send()
  }
  transport.pending.set(msg.id, { reply, stream: undefined })
  transport.onmessage?.(msg)
  return reply // answered by the transport
})

app.get('/mcp', (_request, reply) => { reply.code(405).header('allow', 'POST, DELETE').send() })

app.delete('/mcp', async (request, reply) => {
  const sessionId = request.headers['mcp-session-id']
  const session = typeof sessionId === 'string' ? sessions.get(sessionId) : undefined
  if (session === undefined) return await reply.code(404).send()
  sessions.delete(sessionId as string)
  await session.close()
  return await reply.code(204).send()
})

app.get('/__mem', async () => memReport(sessions.size))

await app.listen({ host: listenHost, port: listenPort })
announce({ port: (app.server.address() as { port: number }).port })
