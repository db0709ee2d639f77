// mcp-framework: the `mcp-framework` package with its SSE transport (one SDK Server per
// session, made by the framework). Its HTTP server is its own, so the memory route lives
// on a small side server in the same process (reported as memPort).
import { createServer, type Server } from 'node:http'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { MCPServer, MCPTool } from 'mcp-framework'
import { announce, listenHost, listenPort, memReport } from './common.js'

// mcp-framework checks schemas with `instanceof` against its own zod (3.x, nested under it;
// the project's is 4.x), so the tool's schema is built with that very module: its ESM entry,
// the one the framework's own `import 'zod'` loads (the CommonJS build would be a different
// class, and `instanceof` would fail).
const requireFromFramework = createRequire(fileURLToPath(import.meta.resolve('mcp-framework')))
const zodPackageJson = requireFromFramework.resolve('zod/package.json')
const zodExports = (requireFromFramework('zod/package.json') as { exports: { '.': { import: string } } }).exports
const { z } = await import(pathToFileURL(join(dirname(zodPackageJson), zodExports['.'].import)).href) as { z: any }

class EchoTool extends MCPTool {
  name = 'echo'
  description = 'Echoes the text back'
  protected schema = z.object({ text: z.string().describe('The text to echo') })
  // An array of content items goes out as is (a bare string would be JSON-stringified).
  protected async execute (input: { text: string }): Promise<Array<{ type: 'text', text: string }>> {
    return [{ type: 'text', text: input.text }]
  }
}

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
