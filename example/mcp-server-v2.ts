import { McpServer } from '@modelcontextprotocol/server'
import { z } from 'zod'

/**
 * The example MCP server built on SDK v2 (`@modelcontextprotocol/server`), with the same
 * tools as the v1 one in ./mcp-server.ts. SDK v2 ships no HTTP+SSE server transport: this
 * plugin is how a v2 server reaches SSE clients.
 */
export function buildExampleServerV2 (): McpServer {
  const server = new McpServer({ name: 'fastify-mcp-sse-example', version: '1.0.0' })

  server.registerTool('echo', {
    description: 'Echoes the text back',
    inputSchema: z.object({ text: z.string() })
  }, async ({ text }) => ({ content: [{ type: 'text', text }] }))

  server.registerTool('countdown', {
    description: 'Counts down from `from` to zero, one step every `intervalMs`, reporting progress',
    inputSchema: z.object({ from: z.number().int().min(1).max(100), intervalMs: z.number().int().min(0).max(10_000).default(200) })
  }, async ({ from, intervalMs }, ctx) => {
    const progressToken = ctx.mcpReq._meta?.progressToken
    for (let i = 0; i < from; i++) {
      // Progress goes out at the start of each step, so the last one is not racing the result.
      if (progressToken !== undefined) {
        await ctx.mcpReq.notify({
          method: 'notifications/progress',
          params: { progressToken, progress: i, total: from, message: `${from - i} to go` }
        })
      }
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, intervalMs)
        ctx.mcpReq.signal.addEventListener('abort', () => { clearTimeout(timer); reject(new Error('cancelled')) }, { once: true })
      })
    }
    return { content: [{ type: 'text', text: `Counted down from ${from}` }] }
  })

  return server
}
