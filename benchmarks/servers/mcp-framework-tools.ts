// The tools of the mcp-framework benchmark servers: `echo` (both) and `progress` (the
// Streamable HTTP one), equivalents of buildEchoServer() and buildBenchServer() in
// common.ts written as mcp-framework tool classes.
import { dirname, join } from 'node:path'
import { createRequire } from 'node:module'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { MCPTool } from 'mcp-framework'

// mcp-framework checks schemas with `instanceof` against its own zod (3.x, nested under it;
// the project's is 4.x), so the tools' schemas are built with that very module: its ESM
// entry, the one the framework's own `import 'zod'` loads (the CommonJS build would be a
// different class, and `instanceof` would fail).
const requireFromFramework = createRequire(fileURLToPath(import.meta.resolve('mcp-framework')))
const zodPackageJson = requireFromFramework.resolve('zod/package.json')
const zodExports = (requireFromFramework('zod/package.json') as { exports: { '.': { import: string } } }).exports
const { z } = await import(pathToFileURL(join(dirname(zodPackageJson), zodExports['.'].import)).href) as { z: any }

export class EchoTool extends MCPTool {
  name = 'echo'
  description = 'Echoes the text back'
  protected schema = z.object({ text: z.string().describe('The text to echo') })
  // An array of content items goes out as is (a bare string would be JSON-stringified).
  protected async execute (input: { text: string }): Promise<Array<{ type: 'text', text: string }>> {
    return [{ type: 'text', text: input.text }]
  }
}

export class ProgressTool extends MCPTool {
  name = 'progress'
  description = 'Reports progress `steps` times, then answers'
  protected schema = z.object({ steps: z.number().int().min(0).max(100).describe('How many progress notifications') })
  // reportProgress() is the framework's way (it sends nothing without a progress token).
  protected async execute (input: { steps: number }): Promise<Array<{ type: 'text', text: string }>> {
    for (let i = 1; i <= input.steps; i++) await this.reportProgress(i, input.steps)
    return [{ type: 'text', text: `done ${input.steps}` }]
  }
}
