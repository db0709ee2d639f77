// Results: their shape (written as JSON) and the Markdown table made from them.
import type { RunSample, Scenario } from './load.js'
import type { ScaleSample } from './scale.js'
import type { ServerName } from './servers.js'
import { median } from './stats.js'

export interface Machine {
  cpu: string
  cores: number
  memoryGiB: number
  node: string
  os: string
  loadAverageAtStart: number[]
  fileLimit: number
  commit: string
}

export interface Config {
  mode: 'quick' | 'full'
  servers: ServerName[]
  sessions: number[]
  scenarios: Scenario[]
  durationSec: number
  runs: number
  connections: number
  warmupSec: number
  scaleN: number
  scaleServers: ServerName[]
  scaleRuns: number
  scaleConcurrency: number
}

export interface LoadCell {
  server: ServerName
  sessions: number
  scenario: Scenario
  samples: RunSample[]
  error?: string
  median?: RunSample
  /** Median req/s over fastify-bare's median req/s, same sessions and scenario, same invocation. */
  ratio?: number
  /** Lowest and highest req/s of the runs. */
  range?: [number, number]
  verdict: string
  /** Totals over the runs, for the verdict. */
  totals?: { accepted: number, answered: number, bad: number, non2xx: number, errors: number, streamsLost: number }
}

export interface ServerMemAfterLoad {
  server: ServerName
  sessions: number
  rss: number
  heapUsed: number
  serverSessions: number
}

export interface ScaleCell {
  server: ServerName
  n: number
  samples: ScaleSample[]
  error?: string
  median?: {
    openMs: number
    opensPerSec: number
    rssPerSession: number
    heapPerSession: number
    rssRetained: number
    heapRetained: number
    closeMs: number
    sessionsAfterClose: number
    opened: number
    failed: number
  }
}

export interface Results {
  date: string
  complete: boolean
  elapsedSec: number
  machine: Machine
  config: Config
  load: LoadCell[]
  memAfterLoad: ServerMemAfterLoad[]
  scale: ScaleCell[]
  notes: string[]
}

/** Medians, ratio and verdict of every cell (called once all runs are in). */
export function summarize (results: Results): void {
  for (const cell of results.load) {
    if (cell.samples.length === 0) {
      cell.verdict = `FAILED: ${cell.error ?? 'no run completed'}`
      continue
    }
    const fields = Object.keys(cell.samples[0]!) as Array<keyof RunSample>
    cell.median = Object.fromEntries(fields.map(f => [f, median(cell.samples.map(s => s[f]))])) as unknown as RunSample
    const sum = (f: keyof RunSample): number => cell.samples.reduce((a, s) => a + s[f], 0)
    const totals = { accepted: sum('accepted'), answered: sum('answered'), bad: sum('bad'), non2xx: sum('non2xx'), errors: sum('errors'), streamsLost: sum('streamsLost') }
    cell.totals = totals
    const rates = cell.samples.map(s => s.reqPerSec)
    cell.range = [Math.min(...rates), Math.max(...rates)]
    const problems: string[] = []
    const lost = totals.accepted - totals.answered
    if (lost > 0) problems.push(`BROKEN: ${lost} of ${totals.accepted} accepted POSTs never answered on the stream (${pct(lost, totals.accepted)})`)
    if (totals.bad > 0) problems.push(`BROKEN: ${totals.bad} wrong or error replies`)
    if (totals.streamsLost > 0) problems.push(`${totals.streamsLost} streams dropped by the server`)
    if (totals.non2xx > 0) problems.push(`${totals.non2xx} non-2xx`)
    if (totals.errors > 0) problems.push(`${totals.errors} socket errors/timeouts`)
    if (cell.error !== undefined) problems.push(`stopped early: ${cell.error}`)
    cell.verdict = problems.length === 0 ? 'ok' : problems.join('; ')
  }
  for (const cell of results.load) {
    const bare = results.load.find(c => c.server === 'fastify-bare' && c.sessions === cell.sessions && c.scenario === cell.scenario)
    if (cell.median !== undefined && bare?.median !== undefined) cell.ratio = cell.median.reqPerSec / bare.median.reqPerSec
  }
  for (const cell of results.scale) {
    const s = cell.samples
    if (s.length === 0) continue
    cell.median = {
      openMs: median(s.map(x => x.openMs)),
      opensPerSec: median(s.map(x => x.opened / (x.openMs / 1000))),
      rssPerSession: median(s.map(x => x.rssPerSession)),
      heapPerSession: median(s.map(x => x.heapPerSession)),
      rssRetained: median(s.map(x => x.rssRetained)),
      heapRetained: median(s.map(x => x.heapRetained)),
      closeMs: median(s.map(x => x.closeMs)),
      sessionsAfterClose: Math.max(...s.map(x => x.afterClose.sessions)),
      opened: Math.min(...s.map(x => x.opened)),
      failed: Math.max(...s.map(x => x.failed))
    }
  }
}

function pct (a: number, b: number): string {
  return b === 0 ? 'n/a' : `${(100 * a / b).toFixed(a === b ? 0 : 2)}%`
}

const int = (n: number | undefined): string => n === undefined || !Number.isFinite(n) ? '–' : Math.round(n).toLocaleString('en-US')
const kilo = (n: number): string => n >= 1000 ? `${(n / 1000).toFixed(1)}k` : String(Math.round(n))
const ms = (n: number | undefined): string => n === undefined || !Number.isFinite(n) ? '–' : n < 10 ? n.toFixed(2) : n.toFixed(1)
const kib = (n: number | undefined): string => n === undefined || !Number.isFinite(n) ? '–' : (n / 1024).toFixed(1)
const mib = (n: number | undefined): string => n === undefined || !Number.isFinite(n) ? '–' : (n / 1048576).toFixed(1)

const SCENARIO_TITLES: Record<Scenario, string> = {
  echo: '`tools/call` echo',
  ping: '`ping`'
}

export function toMarkdown (r: Results): string {
  const c = r.config
  const out: string[] = []
  out.push('# fastify-mcp-sse benchmarks', '')
  out.push(`- Date: ${r.date}${r.complete ? '' : ' (**incomplete run**)'}; took ${Math.round(r.elapsedSec)} s (${c.mode} mode)`)
  out.push(`- Machine: ${r.machine.cpu}, ${r.machine.cores} cores, ${r.machine.memoryGiB} GiB; Node ${r.machine.node}; ${r.machine.os}; load average at start ${r.machine.loadAverageAtStart.map(x => x.toFixed(2)).join(' ')}; open-file limit ${r.machine.fileLimit}`)
  out.push(`- Code: ${r.machine.commit}`)
  out.push(`- Load: autocannon, ${c.connections} connections, ${c.durationSec} s per run, median of ${c.runs} run${c.runs === 1 ? '' : 's'} (servers interleaved within each run), ${c.warmupSec} s warm-up per server and session count; the server, autocannon and the SSE readers share the machine's cores`)
  out.push('- Numbers from a shared development machine are indicative: compare rows of one table, not tables of different days.', '')

  for (const scenario of c.scenarios) {
    out.push(`## Throughput: ${SCENARIO_TITLES[scenario]}`, '')
    out.push('| server | sessions | req/s | runs min–max | vs fastify-bare | POST p50 ms | POST p99 ms | e2e p50 ms | e2e p99 ms | non-2xx | answered / accepted | verdict |')
    out.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |')
    for (const sessions of c.sessions) {
      for (const cell of r.load.filter(x => x.scenario === scenario && x.sessions === sessions)) {
        const m = cell.median
        const t = cell.totals
        const range = cell.range === undefined || c.runs === 1 ? '–' : `${kilo(cell.range[0])}–${kilo(cell.range[1])}`
        out.push(`| ${cell.server} | ${sessions} | ${int(m?.reqPerSec)} | ${range} | ${cell.ratio === undefined ? '–' : cell.ratio.toFixed(2) + '×'} | ${ms(m?.postP50)} | ${ms(m?.postP99)} | ${ms(m?.e2eP50)} | ${ms(m?.e2eP99)} | ${t === undefined ? '–' : int(t.non2xx)} | ${t === undefined ? '–' : `${int(t.answered)} / ${int(t.accepted)} (${pct(t.answered, t.accepted)})`} | ${cell.verdict} |`)
      }
    }
    out.push('')
  }

  const cross = r.load.filter(x => x.server === 'cross-instance' && x.median !== undefined)
  if (cross.length > 0) {
    out.push('## Cross-instance (Redis) against one in-memory instance, same run', '')
    out.push('| scenario | sessions | cross-instance req/s | fastify-mcp-sse req/s | ratio | cross-instance e2e p99 ms | in-memory e2e p99 ms | answered / accepted |')
    out.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
    for (const cell of cross) {
      const mem = r.load.find(x => x.server === 'fastify-mcp-sse' && x.scenario === cell.scenario && x.sessions === cell.sessions)?.median
      const m = cell.median as RunSample
      const t = cell.totals
      out.push(`| ${cell.scenario} | ${cell.sessions} | ${int(m.reqPerSec)} | ${int(mem?.reqPerSec)} | ${mem === undefined ? '–' : (m.reqPerSec / mem.reqPerSec).toFixed(2) + '×'} | ${ms(m.e2eP99)} | ${ms(mem?.e2eP99)} | ${t === undefined ? '–' : `${int(t.answered)} / ${int(t.accepted)} (${pct(t.answered, t.accepted)})`} |`)
    }
    out.push('')
  }

  if (r.scale.length > 0) {
    out.push(`## Connection scale: N idle SSE sessions (median of ${c.scaleRuns} run${c.scaleRuns === 1 ? '' : 's'}, a fresh server process each)`, '')
    out.push('| server | N | opened | open time s | opens/s | RSS / session KiB | heap / session KiB | close time s | sessions left after close | RSS kept after close MiB | heap kept after close MiB |')
    out.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
    for (const cell of r.scale) {
      const m = cell.median
      if (m === undefined) {
        out.push(`| ${cell.server} | ${cell.n} | FAILED: ${cell.error ?? '?'} | | | | | | | | |`)
        continue
      }
      const failed = m.failed > 0 ? ` (${m.failed} failed)` : ''
      out.push(`| ${cell.server} | ${int(cell.n)} | ${int(m.opened)}${failed} | ${(m.openMs / 1000).toFixed(2)} | ${int(m.opensPerSec)} | ${kib(m.rssPerSession)} | ${kib(m.heapPerSession)} | ${Number.isFinite(m.closeMs) ? (m.closeMs / 1000).toFixed(2) : 'never'} | ${int(m.sessionsAfterClose)} | ${mib(m.rssRetained)} | ${mib(m.heapRetained)} |`)
    }
    out.push('')
  }

  if (r.memAfterLoad.length > 0) {
    out.push('## Server memory after the load runs (full GC, sessions still open)', '')
    out.push('| server | sessions | RSS MiB | heap used MiB |')
    out.push('| --- | ---: | ---: | ---: |')
    for (const m of r.memAfterLoad) out.push(`| ${m.server} | ${m.sessions} | ${mib(m.rss)} | ${mib(m.heapUsed)} |`)
    out.push('')
  }

  out.push('## Reading the tables', '')
  out.push('- **req/s**: POSTs completed per second (any status), median of the runs; **runs min–max** shows how far apart the runs were (a wide range means the machine was busy with something else). **vs fastify-bare**: that over fastify-bare\'s req/s in the same table (a Fastify route with no MCP work: the ceiling).')
  out.push('- **POST p50/p99**: from building a request to its `202`. **e2e p50/p99**: from building it to its JSON-RPC response read off the session\'s SSE stream: what an MCP client waits.')
  out.push('- **answered / accepted**: accepted (2xx) POSTs whose response arrived on the stream, counted after the readers drained. Below 100% the server is **broken, not fast**: it accepted work it never answered.')
  out.push('- **RSS / session**: (server RSS with N open sessions − RSS before) / N, each after a full GC in the server process (`GET /__mem`). **kept after close**: RSS and heap above the starting point once every session is closed (RSS rarely returns fully: the allocator keeps pages).')
  out.push('- Servers: `fastify-bare` and `node-bare` write a hand-made reply with no MCP protocol work; `fastify-sdk-min` hands messages to the SDK\'s `McpServer` through a transport with no checks; `fastify-mcp-sse` is this plugin with every feature on; `sdk-express` is the SDK\'s `SSEServerTransport` with express as its README shows; `mcp-framework` is the `mcp-framework` package\'s SSE transport; `cross-instance` is two fastify-mcp-sse processes sharing sessions through Redis, streams held by one and every POST sent to the other.')
  if (r.notes.length > 0) {
    out.push('', '## Notes', '')
    for (const n of r.notes) out.push(`- ${n}`)
  }
  out.push('')
  return out.join('\n')
}
