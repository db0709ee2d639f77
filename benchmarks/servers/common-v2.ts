// The benchmark MCP server on the SDK v2 line (@modelcontextprotocol/server): the same
// `echo` and `progress` tools as buildBenchServer() in common.ts, in v2's API (a z.object
// input schema, `ctx` instead of `extra`). Kept apart from common.ts so that the v1
// servers do not load the v2 SDK.
import { McpServer } from '@modelcontextprotocol/server'
import { z } from 'zod'

export function buildBenchServerV2 (): McpServer {
  const server = new McpServer({ name: 'fastify-mcp-sse-bench', version: '1.0.0' })
  server.registerTool('echo', {
    description: 'Echoes the text back',
    inputSchema: z.object({ text: z.string() })
  }, async ({ text }) => ({ content: [{ type: 'text', text }] }))
  server.registerTool('progress', {
    description: 'Reports progress `steps` times, then answers',
    inputSchema: z.object({ steps: z.number().int().min(0).max(100) })
  }, async ({ steps }, ctx) => {
    const progressToken = ctx.mcpReq._meta?.progressToken
    if (progressToken !== undefined) {
      for (let i = 1; i <= steps; i++) {
        await ctx.mcpReq.notify({ method: 'notifications/progress', params: { progressToken, progress: i, total: steps } })
      }
    }
    return { content: [{ type: 'text', text: `done ${steps}` }] }
  })
  return server
}
