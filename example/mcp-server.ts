import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { z } from 'zod'

/**
 * The example MCP server: one instance per session (the plugin calls this factory for
 * every new SSE connection).
 */
export function buildExampleServer (): McpServer {
  const server = new McpServer({ name: 'fastify-mcp-sse-example', version: '1.0.0' })

  server.registerTool('echo', {
    description: 'Echoes the text back',
    inputSchema: { text: z.string() }
  }, async ({ text }) => ({ content: [{ type: 'text', text }] }))

  server.registerTool('countdown', {
    description: 'Counts down from `from` to zero, one step every `intervalMs`, reporting progress',
    inputSchema: { from: z.number().int().min(1).max(100), intervalMs: z.number().int().min(0).max(10_000).default(200) }
  }, async ({ from, intervalMs }, extra) => {
    const progressToken = extra._meta?.progressToken
    for (let i = 0; i < from; i++) {
      // Progress goes out at the start of each step, so the last one is not racing the
      // result (the SDK client drops progress that arrives with the response).
      if (progressToken !== undefined) {
        await extra.sendNotification({
          method: 'notifications/progress',
          params: { progressToken, progress: i, total: from, message: `${from - i} to go` }
        })
      }
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, intervalMs)
        extra.signal.addEventListener('abort', () => { clearTimeout(timer); reject(new Error('cancelled')) }, { once: true })
      })
    }
    return { content: [{ type: 'text', text: `Counted down from ${from}` }] }
  })

  return server
}
