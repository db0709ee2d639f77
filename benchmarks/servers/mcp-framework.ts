// mcp-framework: the `mcp-framework` package with its SSE transport (one SDK Server per
// session, made by the framework). Its HTTP server is its own, so the memory route lives
// on a small side server in the same process (reported as memPort).
import { createServer, type Server } from 'node:http'
import { fileURLToPath } from 'node:url'
import { MCPServer } from 'mcp-framework'
import { announce, listenHost, listenPort, memReport } from './common.js'
import { EchoTool } from './mcp-framework-tools.js'

const server = new MCPServer({
  name: 'mcp-framework-bench',
  version: '1.0.0',
  // A folder with no tools/, prompts/ or resources/ in it: the echo tool is added below.
  basePath: fileURLToPath(new URL('.', import.meta.url)),
  transport: { type: 'sse', options: { port: listenPort, host: listenHost, endpoint: '/sse', messageEndpoint: '/messages' } }
})
server.addTool(EchoTool)

interface Internals { bindings: Array<{ transport: { _server?: Server, _sessions: Map<string, unknown> } }> }
const internals = server as unknown as Internals

// start() resolves only when the server stops; wait for its HTTP server to listen.
void server.start()
let http: Server | undefined
for (let i = 0; i < 600 && http?.listening !== true; i++) {
  await new Promise(resolve => setTimeout(resolve, 50))
  http = internals.bindings[0]?.transport._server
}
if (http?.listening !== true) throw new Error('mcp-framework did not start listening')

const sessions = (): number => internals.bindings[0]?.transport._sessions.size ?? 0
const side = createServer((req, res) => {
  if (req.url === '/__mem') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(memReport(sessions())))
  } else {
    res.writeHead(404).end()
  }
})
side.listen(0, listenHost, () => {
  announce({ port: (http.address() as { port: number }).port, memPort: (side.address() as { port: number }).port })
})
