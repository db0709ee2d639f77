// sdk-express-stateless: the official SDK's (v1) StreamableHTTPServerTransport with express
// in stateless mode, as the SDK's stateless example shows it: for every POST a new
// McpServer and a transport with `sessionIdGenerator: undefined`, both closed when the
// response closes; GET and DELETE answer 405.
import type { Request, Response } from 'express'
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js'
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import { announce, buildBenchServer, listenHost, listenPort, memReport } from './common.js'

const app = createMcpExpressApp()

app.post('/mcp', async (req: Request, res: Response) => {
  const server = buildBenchServer()
  try {
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined })
    await server.connect(transport)
    await transport.handleRequest(req, res, req.body)
    res.on('close', () => {
      void transport.close()
      void server.close()
    })
  } catch (err) {
    if (!res.headersSent) res.status(500).json({ jsonrpc: '2.0', error: { code: -32603, message: 'Internal server error' }, id: null })
    process.stderr.write(`error handling an MCP request: ${String(err)}\n`)
  }
})

function methodNotAllowed (_req: Request, res: Response): void {
  res.writeHead(405).end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: 'Method not allowed.' }, id: null }))
}
app.get('/mcp', methodNotAllowed)
app.delete('/mcp', methodNotAllowed)

app.get('/__mem', (_req, res) => { res.json(memReport(0)) })

const server = app.listen(listenPort, listenHost, () => {
  announce({ port: (server.address() as { port: number }).port })
})
