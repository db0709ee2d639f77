// fastify-bare: the ceiling for a Fastify route with no MCP protocol work. GET /sse sends
// the endpoint event; POST /messages parses JSON, writes a hand-made reply on the session's
// stream and answers 202.
import { randomUUID } from 'node:crypto'
import type { ServerResponse } from 'node:http'
import Fastify from 'fastify'
import { announce, bareReply, endpointFrame, listenHost, listenPort, memReport, SSE_HEADERS } from './common.js'

const streams = new Map<string, ServerResponse>()
const app = Fastify({ logger: false })

app.get('/sse', (_request, reply) => {
  reply.hijack()
  const res = reply.raw
  const id = randomUUID()
  res.writeHead(200, SSE_HEADERS)
  res.write(endpointFrame(id))
  streams.set(id, res)
  res.on('close', () => streams.delete(id))
})

app.post('/messages', (request, reply) => {
  const id = (request.query as { sessionId?: string }).sessionId
  const res = id === undefined ? undefined : streams.get(id)
  if (res === undefined) {
    reply.code(404).send()
    return
  }
  const frame = bareReply(request.body)
  if (frame !== undefined) res.write(frame)
  reply.code(202).send()
})

app.get('/__mem', async () => memReport(streams.size))

await app.listen({ host: listenHost, port: listenPort })
announce({ port: (app.server.address() as { port: number }).port })
