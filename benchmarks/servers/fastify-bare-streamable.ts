// fastify-bare-streamable: the ceiling for a Fastify route serving Streamable HTTP with no
// MCP protocol work. POST /mcp parses JSON and answers a hand-made result on the POST's own
// response: `application/json`, or an event stream (progress notifications, then the
// result) when a `progress` call asked for progress. `initialize` mints an Mcp-Session-Id
// (kept in a Set, checked on later requests, dropped by DELETE); requests that carry the
// 2026-07-28 `_meta` envelope need no session (the revision has none).
import { randomUUID } from 'node:crypto'
import Fastify from 'fastify'
import { announce, bareAnswer, listenHost, listenPort, memReport } from './common.js'

const PROTOCOL_VERSION_META_KEY = 'io.modelcontextprotocol/protocolVersion'
const sessions = new Set<string>()
const app = Fastify({ logger: false })

interface Message { id?: unknown, method?: unknown, params?: { _meta?: Record<string, unknown> } }

app.post('/mcp', (request, reply) => {
  const msg = request.body as Message
  const sessionId = request.headers['mcp-session-id']
  const modern = typeof msg?.params?._meta?.[PROTOCOL_VERSION_META_KEY] === 'string'
  if (msg?.method === 'initialize' && sessionId === undefined) {
    const id = randomUUID()
    sessions.add(id)
    reply.header('mcp-session-id', id)
  } else if (!modern && (typeof sessionId !== 'string' || !sessions.has(sessionId))) {
    reply.code(sessionId === undefined ? 400 : 404).send({ jsonrpc: '2.0', error: { code: -32000, message: 'unknown session' }, id: null })
    return
  }
  const answer = bareAnswer(msg)
  if (answer === undefined) {
    reply.code(202).send()
    return
  }
  if (answer.progress.length === 0) {
    reply.send(answer.response)
    return
  }
  reply.hijack()
  let frames = ''
  for (const m of [...answer.progress, answer.response]) frames += 'event: message\ndata: ' + JSON.stringify(m) + '\n\n'
  reply.raw.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
  reply.raw.end(frames)
})

app.get('/mcp', (_request, reply) => { reply.code(405).header('allow', 'POST, DELETE').send() })

app.delete('/mcp', (request, reply) => {
  const sessionId = request.headers['mcp-session-id']
  reply.code(typeof sessionId === 'string' && sessions.delete(sessionId) ? 204 : 404).send()
})

app.get('/__mem', async () => memReport(sessions.size))

await app.listen({ host: listenHost, port: listenPort })
announce({ port: (app.server.address() as { port: number }).port })
