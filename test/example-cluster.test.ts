// `npm run example:cluster` as users run it: two instances behind its round-robin
// balancer, on free ports, serving Streamable HTTP at /mcp and HTTP+SSE at /sse.
import { spawn } from 'node:child_process'
import t from 'tap'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js'
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js'
import { REDIS_URL, testPrefix } from './support/cluster.js'
import { freePort } from './support/helpers.js'

const text = (r: unknown): string => {
  const first = (r as CallToolResult).content[0]
  return first?.type === 'text' ? first.text : ''
}

// The example runs src/ through tsx, as users run it. Its coverage is not recorded
// (tap's hooks follow every child): tsx's line maps are not the ones tap reads src/ with, and
// merged into the suite's they would report src/ all wrong.
const UNMEASURED = { _TAPJS_PROCESSINFO_COVERAGE_: '0' }

t.test('npm run example:cluster serves both transports through its balancer, and stops on SIGTERM', async t => {
  const [port, a, b] = [await freePort(), await freePort(), await freePort()]
  const proc = spawn('npm', ['run', '--silent', 'example:cluster'], {
    env: { ...process.env, ...UNMEASURED, REDIS_URL, PORT: String(port), INSTANCE_PORTS: `${a},${b}`, KEY_PREFIX: testPrefix(), LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
    // Its own process group, so npm and the node it starts stop together.
    detached: true
  })
  const pid = proc.pid as number
  let out = ''
  // Ends once every process of the group has let go of stdout (npm and the example).
  const ended = new Promise<void>(resolve => proc.stdout?.once('end', resolve))
  t.teardown(() => { try { process.kill(-pid, 'SIGKILL') } catch {} })
  await new Promise<void>((resolve, reject) => {
    proc.stdout?.on('data', (c: Buffer) => {
      out += c.toString()
      if (out.includes('load balancer on')) resolve()
    })
    proc.once('exit', code => { if (!out.includes('load balancer on')) reject(new Error(`example:cluster exited (${code}): ${out}`)) })
  })
  const base = `http://127.0.0.1:${port}`

  const modern = new Client({ name: 'streamable', version: '1' })
  await modern.connect(new StreamableHTTPClientTransport(new URL(`${base}/mcp`)))
  const echoes: string[] = []
  // Every request through the balancer lands on the other instance than the last.
  for (let i = 0; i < 4; i++) echoes.push(text(await modern.callTool({ name: 'echo', arguments: { text: `m${i}` } })))
  t.same(echoes, ['m0', 'm1', 'm2', 'm3'], 'Streamable HTTP at /mcp, across both instances')
  const progress: number[] = []
  const counted = await modern.callTool({ name: 'countdown', arguments: { from: 2, intervalMs: 10 } }, undefined, { onprogress: p => { progress.push(p.progress) } })
  t.equal(text(counted), 'Counted down from 2')
  t.same(progress, [0, 1], 'with progress')
  await modern.close()

  const legacy = new Client({ name: 'sse', version: '1' })
  await legacy.connect(new SSEClientTransport(new URL(`${base}/sse`)))
  const { tools } = await legacy.listTools()
  t.same(tools.map(x => x.name).sort(), ['countdown', 'echo'], 'HTTP+SSE at /sse')
  t.equal(text(await legacy.callTool({ name: 'echo', arguments: { text: 'legacy' } })), 'legacy')
  await legacy.close()

  process.kill(-pid, 'SIGTERM')
  const timer = setTimeout(() => { process.kill(-pid, 'SIGKILL') }, 10_000)
  await ended
  clearTimeout(timer)
  t.match(out, /stopped: both instances closed/, 'on SIGTERM it closed both instances and exited')
})
