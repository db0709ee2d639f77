// sdk-express-streamable: the official SDK's (v1) StreamableHTTPServerTransport with
// express, sessionful, set up as the SDK's Streamable HTTP examples show it:
// createMcpExpressApp() (express.json() and Host validation), a map of transports by
// session id, a new transport and McpServer for each `initialize`, the session's transport
// for every later POST, GET and DELETE. SDK defaults otherwise: answers go out as event
// streams, no event store. (The examples' console.log lines are left out.)
import { randomUUID } from 'node:crypto'
import type { Request, Response } from 'express'
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js'
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js'
import { announce, buildBenchServer, listenHost, listenPort, memReport } from './common.js'

const app = createMcpExpressApp()
const transports = new Map<string, StreamableHTTPServerTransport>()

app.post('/mcp', async (req: Request, res: Response) => {
  const sessionId = req.headers['mcp-session-id'] as string | undefined
  try {
    let transport = sessionId === undefined ? undefined : transports.get(sessionId)
    if (transport === undefined) {
      if (sessionId !== undefined) {
        res.status(404).json({ jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null })
        return
      }
      if (!isInitializeRequest(req.body)) {
        res.status(400).json({ jsonrpc: '2.0', error: { code: -32000, message: 'Bad Request: No valid session ID provided' }, id: null })
        return
      }
      const created = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: id => { transports.set(id, created) }
      })
      created.onclose = () => {
        if (created.sessionId !== undefined) transports.delete(created.sessionId)
      }
      await buildBenchServer().connect(created)
      transport = created
    }
    await transport.handleRequest(req, res, req.body)
  } catch (err) {
    if (!res.headersSent) res.status(500).json({ jsonrpc: '2.0', error: { code: -32603, message: 'Internal server error' }, id: null })
    process.stderr.write(`error handling an MCP request: ${String(err)}\n`)
  }
})

// GET (the standalone stream) and DELETE (end the session) go to the session's transport.
async function sessionRequest (req: Request, res: Response): Promise<void> {
  const sessionId = req.headers['mcp-session-id'] as string | undefined
  const transport = sessionId === undefined ? undefined : transports.get(sessionId)
  if (transport === undefined) {
    res.status(sessionId === undefined ? 400 : 404).json({ jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null })
    return
  }
  await transport.handleRequest(req, res)
}
app.get('/mcp', sessionRequest)
app.delete('/mcp', sessionRequest)

app.get('/__mem', (_req, res) => { res.json(memReport(transports.size)) })

const server = app.listen(listenPort, listenHost, () => {
  announce({ port: (server.address() as { port: number }).port })
})
