// mcp-framework-streamable: the `mcp-framework` package with its HTTP stream transport
// (`http-stream`, Streamable HTTP at /mcp, its default response mode 'stream': event
// streams), with `echo` and `progress` tools. The framework keeps one SDK Server for all
// sessions and one SDK StreamableHTTPServerTransport per session. Its HTTP server is its
// own, so the memory route lives on a small side server in the same process (memPort).
import { createServer, type Server } from 'node:http'
import { fileURLToPath } from 'node:url'
import { MCPServer } from 'mcp-framework'
import { announce, listenHost, listenPort, memReport } from './common.js'
import { EchoTool, ProgressTool } from './mcp-framework-tools.js'

const server = new MCPServer({
  name: 'mcp-framework-bench',
  version: '1.0.0',
  // A folder with no tools/, prompts/ or resources/ in it: the tools are added below.
  basePath: fileURLToPath(new URL('.', import.meta.url)),
  transport: { type: 'http-stream', options: { port: listenPort, host: listenHost, endpoint: '/mcp' } }
})
server.addTool(EchoTool)
server.addTool(ProgressTool)

interface Internals { bindings: Array<{ transport: { _server?: Server, _transports: Record<string, unknown> } }> }
const internals = server as unknown as Internals

// start() resolves only when the server stops; wait for its HTTP server to listen.
void server.start()
let http: Server | undefined
for (let i = 0; i < 600 && http?.listening !== true; i++) {
  await new Promise(resolve => setTimeout(resolve, 50))
  http = internals.bindings[0]?.transport._server
}
if (http?.listening !== true) throw new Error('mcp-framework did not start listening')

const sessions = (): number => Object.keys(internals.bindings[0]?.transport._transports ?? {}).length
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
