// Where the time goes: runs a benchmark server (fastify-mcp-sse by default) under
// --cpu-prof, loads it with the same driver as `npm run bench` (tools/call echo, or
// --scenario), and splits the server's CPU time into Fastify, the plugin's own code, schema
// validation, the MCP SDK (with zod), and Node itself.
// `npm run bench:profile [-- --duration 10 --sessions 100]`;
// `npm run bench:profile -- --server fastify-mcp-sse-json` for Streamable HTTP.
import { spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { closeSessions, loadRun, openSessions, type LoadSession } from './lib/load.js'
import { familyOf, SCENARIOS, type HttpScenario, type Scenario, type SseScenario } from './lib/scenarios.js'
import { ROOT, SERVER_NAMES, SERVERS, type ServerName } from './lib/servers.js'
import { closeStreamableSessions, openStreamableSessions, streamableRun, type StreamableSession } from './lib/streamable.js'

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    sessions: { type: 'string', default: '100' },
    connections: { type: 'string', default: '50' },
    server: { type: 'string', default: 'fastify-mcp-sse' },
    scenario: { type: 'string' }
  }
})
if (!(SERVER_NAMES as readonly string[]).includes(args.server) || SERVERS[args.server as ServerName].pair === true) {
  throw new Error(`--server: one of ${SERVER_NAMES.filter(n => SERVERS[n].pair !== true).join(', ')}`)
}
const spec = SERVERS[args.server as ServerName]
const scenario = (args.scenario ?? (spec.transport === 'sse' ? 'echo' : spec.legacy === false ? 'modern-echo' : 'streamable-echo')) as Scenario
if (!SCENARIOS.includes(scenario)) throw new Error(`--scenario: one of ${SCENARIOS.join(', ')}`)
const family = familyOf(scenario)
if ((family === 'sse') !== (spec.transport === 'sse')) throw new Error(`${args.server} does not serve ${scenario}`)
const sessionless = family === 'modern' || spec.stateless === true

interface ProfileNode {
  id: number
  callFrame: { functionName: string, url: string, lineNumber: number }
  hitCount?: number
}
interface Profile { nodes: ProfileNode[], startTime: number, endTime: number, samples: number[], timeDeltas: number[] }

const CATEGORIES = [
  ['plugin (src/)', (u: string) => u.includes(`${join(ROOT, 'src')}/`)],
  ['schema validation (TypeBox)', (u: string) => u.includes('/@sinclair/typebox/')],
  ['MCP SDK + zod', (u: string) => u.includes('/@modelcontextprotocol/') || u.includes('/node_modules/zod/')],
  ['Fastify (fastify, find-my-way, avvio, light deps)', (u: string) => /\/node_modules\/(fastify|find-my-way|avvio|@fastify\/|fast-json-stringify|secure-json-parse|fast-querystring|fast-decode-uri-component|light-my-request|toad-cache|abstract-logging|process-warning|rfdc|fast-content-type-parse|ret|safe-regex2|json-schema-ref-resolver|fastq|reusify)/.test(u)],
  ['benchmark harness', (u: string) => u.includes('/benchmarks/')],
  ['Node.js (http, net, streams, timers)', (u: string) => u.startsWith('node:')],
  ['other JS', (u: string) => u !== '']
] as const

function categorize (node: ProfileNode): string {
  const { url, functionName } = node.callFrame
  if (functionName === '(idle)') return 'idle'
  if (functionName === '(garbage collector)') return 'V8: garbage collector'
  if (functionName === '(program)' || url === '') return 'V8 and native (program, builtins)'
  for (const [name, test] of CATEGORIES) if (test(url)) return name
  return 'other JS'
}

async function main (): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'mcp-prof-'))
  const child = spawn(process.execPath, ['--cpu-prof', '--cpu-prof-dir', dir, '--import', 'tsx', join(ROOT, 'benchmarks', 'servers', `${spec.file}.ts`)], {
    cwd: ROOT,
    env: { ...process.env, ...spec.env },
    stdio: ['ignore', 'pipe', 'inherit', 'ipc']
  })
  const port = await new Promise<number>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! })
    lines.on('line', line => { if (line.startsWith('{"ready":true')) resolve((JSON.parse(line) as { port: number }).port) })
    child.once('exit', code => reject(new Error(`server exited (${code})`)))
  })
  const sessions: LoadSession[] = []
  const streamable: StreamableSession[] = []
  try {
    let sample
    if (family === 'sse') {
      await openSessions(port, Number(args.sessions), sessions)
      sample = await loadRun(port, sessions, scenario as SseScenario, Number(args.duration), Number(args.connections))
    } else {
      if (!sessionless) await openStreamableSessions(port, Number(args.sessions), streamable)
      sample = await streamableRun(port, streamable, scenario as HttpScenario, Number(args.duration), Number(args.connections))
    }
    process.stdout.write(`load: ${Math.round(sample.reqPerSec)} req/s, answered ${sample.answered}/${sample.accepted}\n`)
  } finally {
    closeSessions(sessions)
    await closeStreamableSessions(port, streamable).catch(() => {})
    const exited = new Promise(resolve => child.once('exit', resolve))
    child.kill('SIGTERM') // the server calls process.exit(0), which writes the profile
    await exited
  }

  const file = readdirSync(dir).find(f => f.endsWith('.cpuprofile'))
  if (file === undefined) throw new Error('no profile written')
  const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Profile
  rmSync(dir, { recursive: true, force: true })

  // Self time per node from the samples and their time deltas.
  const byId = new Map(profile.nodes.map(n => [n.id, n]))
  const self = new Map<number, number>()
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i] as number
    self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0))
  }
  const categories = new Map<string, number>()
  const functions = new Map<string, number>()
  let busy = 0
  for (const [id, us] of self) {
    const node = byId.get(id) as ProfileNode
    const cat = categorize(node)
    categories.set(cat, (categories.get(cat) ?? 0) + us)
    if (cat === 'idle') continue
    busy += us
    const where = node.callFrame.url.replace(/^file:\/\/.*?\/(node_modules\/|src\/|benchmarks\/)/, '$1')
    const key = `${node.callFrame.functionName || '(anonymous)'} ${where}:${node.callFrame.lineNumber + 1}`
    functions.set(`${cat}|${key}`, (functions.get(`${cat}|${key}`) ?? 0) + us)
  }

  const pct = (us: number): string => `${(100 * us / busy).toFixed(1)}%`
  const rows = [...categories].filter(([c]) => c !== 'idle').sort((a, b) => b[1] - a[1])
  const top = [...functions].sort((a, b) => b[1] - a[1]).slice(0, 25)
  const plugin = [...functions].filter(([k]) => k.startsWith('plugin')).sort((a, b) => b[1] - a[1]).slice(0, 10)
  const md = [
    `# CPU profile of ${args.server} under load`,
    '',
    `- ${new Date().toISOString()}, Node ${process.version}; ${scenario}, ${sessionless ? 'no' : args.sessions} sessions, ${args.connections} connections, ${args.duration} s`,
    `- busy CPU time in the server process: ${(busy / 1e6).toFixed(2)} s (idle excluded)`,
    '',
    '| where | share of busy time |',
    '| --- | ---: |',
    ...rows.map(([c, us]) => `| ${c} | ${pct(us)} |`),
    '',
    '## Hottest functions (self time)',
    '',
    '| function | category | self |',
    '| --- | --- | ---: |',
    ...top.map(([k, us]) => { const [cat, fn] = k.split('|'); return `| \`${fn}\` | ${cat} | ${pct(us)} |` }),
    '',
    '## The plugin\'s own functions',
    '',
    '| function | self |',
    '| --- | ---: |',
    ...plugin.map(([k, us]) => `| \`${k.split('|')[1]}\` | ${pct(us)} |`),
    ''
  ].join('\n')
  mkdirSync(join(ROOT, 'benchmarks', 'results'), { recursive: true })
  writeFileSync(join(ROOT, 'benchmarks', 'results', `profile-${args.server}.md`), md)
  process.stdout.write(md)
}

await main()
