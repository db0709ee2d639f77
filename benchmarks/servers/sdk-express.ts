// sdk-express: the official SDK's SSEServerTransport with express, as the SDK's README
// shows it (express.json(), a map of transports, one McpServer per session).
import express from 'express'
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js'
import { announce, buildEchoServer, listenHost, listenPort, memReport } from './common.js'

const app = express()
app.use(express.json())

const transports: Record<string, SSEServerTransport> = {}

app.get('/sse', async (_req, res) => {
  const transport = new SSEServerTransport('/messages', res)
  transports[transport.sessionId] = transport
  res.on('close', () => {
    delete transports[transport.sessionId]
  })
  await buildEchoServer().connect(transport)
})

app.post('/messages', async (req, res) => {
  const sessionId = req.query.sessionId as string
  const transport = transports[sessionId]
  if (transport !== undefined) {
    await transport.handlePostMessage(req, res, req.body)
  } else {
    res.status(400).send('No transport found for sessionId')
  }
})

app.get('/__mem', (_req, res) => {
  res.json(memReport(Object.keys(transports).length))
})

const server = app.listen(listenPort, listenHost, () => {
  announce({ port: (server.address() as { port: number }).port })
})
