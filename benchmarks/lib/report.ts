// Results: their shape (written as JSON) and the Markdown table made from them.
import type { RunSample } from './load.js'
import type { ScaleSample } from './scale.js'
import { familyOf, SCENARIO_TITLES, type Scenario } from './scenarios.js'
import { REFERENCES, SERVERS, type ServerName } from './servers.js'
import { median } from './stats.js'
import { targetsMarkdown } from './targets.js'

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
  /** Warm-up before a server's first runs: requests of its first scenario (a third as many of each other one). */
  warmupRequests: number
  /** Whether the warm-up covers every scenario, or the first only. */
  warmupEach: boolean
  scaleN: number
  scaleServers: ServerName[]
  scaleRuns: number
  scaleConcurrency: number
  /** Streamable HTTP idle-session scenario (results from before it existed lack these three). */
  streamableScaleN: number
  streamableScaleServers: ServerName[]
  streamableScaleRuns: number
}

export interface LoadCell {
  server: ServerName
  /** Sessions the load was spread over; 0: none (stateless servers, 2026-07-28 requests). */
  sessions: number
  scenario: Scenario
  samples: RunSample[]
  error?: string
  median?: RunSample
  /**
   * Median req/s over the ceiling's median req/s (fastify-bare for HTTP+SSE,
   * fastify-bare-streamable otherwise), same scenario and sessions, same invocation.
   */
  ratio?: number
  /** Median req/s over the SDK path's (see REFERENCES in servers.ts), same scenario and sessions. */
  sdkRatio?: number
  /** The server `sdkRatio` compares with. */
  sdkReference?: ServerName
  /** Lowest and highest req/s of the runs. */
  range?: [number, number]
  verdict: string
  /** Totals over the runs, for the verdict. */
  totals?: { accepted: number, answered: number, bad: number, non2xx: number, errors: number, streamsLost: number, sseReplies: number, progressExpected: number, progressSeen: number, progressMissingOnStreams: number }
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
  /** Idle HTTP+SSE streams, or idle Streamable HTTP sessions (absent: sse, from before). */
  transport?: 'sse' | 'streamable'
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

/** The references of a cell: the SDK path and the ceiling it is compared with. */
export function referencesOf (cell: Pick<LoadCell, 'scenario' | 'sessions'>): { sdk: ServerName, ceiling: ServerName } {
  const family = familyOf(cell.scenario)
  if (family === 'streamable') return cell.sessions === 0 ? REFERENCES['streamable-stateless'] : REFERENCES.streamable
  return REFERENCES[family]
}

/**
 * The cell of `server` that `cell` is compared with: same scenario and session count. A
 * sessionless row (stateless, 2026-07-28) compared with a sessionful server (the ceiling)
 * takes that server's first measured session count, measured in the same pass.
 */
export function referenceCell (results: Pick<Results, 'load'>, cell: Pick<LoadCell, 'scenario' | 'sessions'>, server: ServerName): LoadCell | undefined {
  return results.load.find(c => c.server === server && c.scenario === cell.scenario && c.sessions === cell.sessions) ??
    (cell.sessions === 0 ? results.load.find(c => c.server === server && c.scenario === cell.scenario && c.median !== undefined) : undefined)
}

/** Medians, ratios and verdict of every cell (called once all runs are in). */
export function summarize (results: Results): void {
  for (const cell of results.load) {
    if (cell.samples.length === 0) {
      cell.verdict = `FAILED: ${cell.error ?? 'no run completed'}`
      continue
    }
    const fields = Object.keys(cell.samples[0]!) as Array<keyof RunSample>
    cell.median = Object.fromEntries(fields.map(f => [f, median(cell.samples.map(s => s[f]))])) as unknown as RunSample
    const sum = (f: keyof RunSample): number => cell.samples.reduce((a, s) => a + (s[f] ?? 0), 0)
    const totals = {
      accepted: sum('accepted'),
      answered: sum('answered'),
      bad: sum('bad'),
      non2xx: sum('non2xx'),
      errors: sum('errors'),
      streamsLost: sum('streamsLost'),
      sseReplies: sum('sseReplies'),
      progressExpected: sum('progressExpected'),
      progressSeen: sum('progressSeen'),
      progressMissingOnStreams: sum('progressMissingOnStreams')
    }
    cell.totals = totals
    const rates = cell.samples.map(s => s.reqPerSec)
    cell.range = [Math.min(...rates), Math.max(...rates)]
    const where = familyOf(cell.scenario) === 'sse' ? 'on the stream' : 'in their response'
    const problems: string[] = []
    const lost = totals.accepted - totals.answered
    if (totals.accepted === 0) problems.push('BROKEN: no request was accepted')
    if (lost > 0) problems.push(`BROKEN: ${lost} of ${totals.accepted} accepted POSTs never answered ${where} (${pct(lost, totals.accepted)})`)
    if (totals.bad > 0) problems.push(`BROKEN: ${totals.bad} wrong or error replies`)
    if (totals.progressMissingOnStreams > 0) problems.push(`INCOMPLETE: ${totals.progressMissingOnStreams} progress notifications missing from event-stream answers`)
    if (totals.streamsLost > 0) problems.push(`${totals.streamsLost} streams dropped by the server`)
    if (totals.non2xx > 0) problems.push(`${totals.non2xx} non-2xx`)
    if (totals.errors > 0) problems.push(`${totals.errors} socket errors/timeouts`)
    if (cell.error !== undefined) problems.push(`stopped early: ${cell.error}`)
    cell.verdict = problems.length === 0 ? 'ok' : problems.join('; ')
  }
  for (const cell of results.load) {
    if (cell.median === undefined) continue
    const refs = referencesOf(cell)
    const ceiling = referenceCell(results, cell, refs.ceiling)?.median
    if (ceiling !== undefined) cell.ratio = cell.median.reqPerSec / ceiling.reqPerSec
    const sdk = referenceCell(results, cell, refs.sdk)?.median
    cell.sdkReference = refs.sdk
    if (sdk !== undefined) cell.sdkRatio = cell.median.reqPerSec / sdk.reqPerSec
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
  return b === 0 ? 'n/a' : `${(100 * a / b).toFixed(a === b || a === 0 ? 0 : 2)}%`
}

const int = (n: number | undefined): string => n === undefined || !Number.isFinite(n) ? '–' : Math.round(n).toLocaleString('en-US')
const kilo = (n: number): string => n >= 1000 ? `${(n / 1000).toFixed(1)}k` : String(Math.round(n))
const ms = (n: number | undefined): string => n === undefined || !Number.isFinite(n) ? '–' : n < 10 ? n.toFixed(2) : n.toFixed(1)
const kib = (n: number | undefined): string => n === undefined || !Number.isFinite(n) ? '–' : (n / 1024).toFixed(1)
const mib = (n: number | undefined): string => n === undefined || !Number.isFinite(n) ? '–' : (n / 1048576).toFixed(1)

const ratio = (x: number | undefined): string => x === undefined || !Number.isFinite(x) ? '–' : `${x.toFixed(2)}×`
const sessionsLabel = (n: number): string => n === 0 ? '–' : String(n)
const answeredLabel = (t: LoadCell['totals']): string => t === undefined ? '–' : `${int(t.answered)} / ${int(t.accepted)} (${pct(t.answered, t.accepted)})`

/** Cells of one scenario, by session count (sessionless ones first) in the order of the run. */
function cellsOf (r: Results, scenario: Scenario): LoadCell[] {
  const order = [0, ...r.config.sessions]
  return r.load.filter(x => x.scenario === scenario).sort((a, b) => order.indexOf(a.sessions) - order.indexOf(b.sessions))
}

function crossTable (r: Results, out: string[], pairName: ServerName, single: ServerName, title: string): void {
  const cross = r.load.filter(x => x.server === pairName && x.median !== undefined)
  if (cross.length === 0) return
  out.push(`## ${title}`, '')
  out.push(`| scenario | sessions | ${pairName} req/s | ${single} req/s | ratio | ${pairName} p99 ms | ${single} p99 ms | answered / accepted |`)
  out.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
  for (const cell of cross) {
    const mem = r.load.find(x => x.server === single && x.scenario === cell.scenario && x.sessions === cell.sessions)?.median
    const m = cell.median as RunSample
    out.push(`| ${cell.scenario} | ${cell.sessions} | ${int(m.reqPerSec)} | ${int(mem?.reqPerSec)} | ${mem === undefined ? '–' : ratio(m.reqPerSec / mem.reqPerSec)} | ${ms(m.e2eP99)} | ${ms(mem?.e2eP99)} | ${answeredLabel(cell.totals)} |`)
  }
  out.push('')
}

function scaleTable (out: string[], cells: ScaleCell[], title: string): void {
  if (cells.length === 0) return
  out.push(title, '')
  out.push('| server | N | opened | open time s | opens/s | RSS / session KiB | heap / session KiB | close time s | sessions left after close | RSS kept after close MiB | heap kept after close MiB |')
  out.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
  for (const cell of cells) {
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

export function toMarkdown (r: Results): string {
  const c = r.config
  const out: string[] = []
  out.push('# fastify-mcp-sse benchmarks', '')
  out.push(`- Date: ${r.date}${r.complete ? '' : ' (**incomplete run**)'}; took ${Math.round(r.elapsedSec)} s (${c.mode} mode)`)
  out.push(`- Machine: ${r.machine.cpu}, ${r.machine.cores} cores, ${r.machine.memoryGiB} GiB; Node ${r.machine.node}; ${r.machine.os}; load average at start ${r.machine.loadAverageAtStart.map(x => x.toFixed(2)).join(' ')}; open-file limit ${r.machine.fileLimit}`)
  out.push(`- Code: ${r.machine.commit}`)
  out.push(`- Load: autocannon, ${c.connections} connections, ${c.durationSec} s per run, median of ${c.runs} run${c.runs === 1 ? '' : 's'} (servers interleaved within each run); warm-up before a server's first runs: ${c.warmupRequests} requests of its first scenario${c.warmupEach ? `, ${Math.ceil(c.warmupRequests / 3)} of each other` : ''}; the server, autocannon and the readers share the machine's cores`)
  out.push('- Numbers from a shared development machine are indicative: compare rows of one table, not tables of different days.')
  out.push('- Chart: the `.svg` next to this file (req/s per server and scenario, ratio to the SDK path, p99).', '')

  for (const scenario of c.scenarios) {
    const cells = cellsOf(r, scenario)
    if (cells.length === 0) continue
    out.push(`## Throughput: ${SCENARIO_TITLES[scenario]}`, '')
    if (familyOf(scenario) === 'sse') {
      out.push('| server | sessions | req/s | runs min–max | vs fastify-bare | vs SDK (sdk-express) | POST p50 ms | POST p99 ms | e2e p50 ms | e2e p99 ms | non-2xx | answered / accepted | verdict |')
      out.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |')
      for (const cell of cells) {
        const m = cell.median
        const range = cell.range === undefined || c.runs === 1 ? '–' : `${kilo(cell.range[0])}–${kilo(cell.range[1])}`
        out.push(`| ${cell.server} | ${cell.sessions} | ${int(m?.reqPerSec)} | ${range} | ${ratio(cell.ratio)} | ${ratio(cell.sdkRatio)} | ${ms(m?.postP50)} | ${ms(m?.postP99)} | ${ms(m?.e2eP50)} | ${ms(m?.e2eP99)} | ${cell.totals === undefined ? '–' : int(cell.totals.non2xx)} | ${answeredLabel(cell.totals)} | ${cell.verdict} |`)
      }
    } else {
      const family = familyOf(scenario)
      const refs = family === 'modern' ? `\`${referencesOf({ scenario, sessions: 0 }).sdk}\`` : `\`${referencesOf({ scenario, sessions: 1 }).sdk}\` (stateless rows: \`${referencesOf({ scenario, sessions: 0 }).sdk}\`)`
      out.push(`vs SDK: to ${refs}; vs ceiling: to \`${referencesOf({ scenario, sessions: 1 }).ceiling}\`. Sessions "–": none (stateless, or 2026-07-28).`, '')
      out.push('| server | sessions | req/s | runs min–max | vs SDK | vs ceiling | p50 ms | p99 ms | non-2xx | answered / accepted | as event stream | progress delivered | verdict |')
      out.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |')
      for (const cell of cells) {
        const m = cell.median
        const t = cell.totals
        const range = cell.range === undefined || c.runs === 1 ? '–' : `${kilo(cell.range[0])}–${kilo(cell.range[1])}`
        const progress = t === undefined || t.progressExpected === 0 ? '–' : `${int(t.progressSeen)} / ${int(t.progressExpected)} (${pct(t.progressSeen, t.progressExpected)})`
        out.push(`| ${cell.server} | ${sessionsLabel(cell.sessions)} | ${int(m?.reqPerSec)} | ${range} | ${ratio(cell.sdkRatio)} | ${ratio(cell.ratio)} | ${ms(m?.e2eP50)} | ${ms(m?.e2eP99)} | ${t === undefined ? '–' : int(t.non2xx)} | ${answeredLabel(t)} | ${t === undefined ? '–' : pct(t.sseReplies, t.answered)} | ${progress} | ${cell.verdict} |`)
      }
    }
    out.push('')
  }

  out.push(...targetsMarkdown(r))
  crossTable(r, out, 'cross-instance', 'fastify-mcp-sse', 'Cross-instance HTTP+SSE (Redis) against one in-memory instance, same run')
  crossTable(r, out, 'cross-instance-streamable', 'fastify-mcp-sse-json', 'Cross-instance Streamable HTTP (Redis) against one in-memory instance, same run')
  crossTable(r, out, 'fastify-mcp-sse-json', 'fastify-mcp-sse-json-quiet', 'What metrics and tracing cost: the default (both on, no OpenTelemetry SDK installed) against both off, same run')

  scaleTable(out, r.scale.filter(x => (x.transport ?? 'sse') === 'sse'),
    `## Connection scale: N idle HTTP+SSE sessions (median of ${c.scaleRuns} run${c.scaleRuns === 1 ? '' : 's'} for fastify-mcp-sse, a fresh server process each)`)
  scaleTable(out, r.scale.filter(x => x.transport === 'streamable'),
    `## Idle Streamable HTTP sessions: N sessions initialized, no stream open (${c.streamableScaleRuns ?? 1} run${(c.streamableScaleRuns ?? 1) === 1 ? '' : 's'} each, a fresh server process each; closed with DELETE)`)

  if (r.memAfterLoad.length > 0) {
    out.push('## Server memory after the load runs (full GC, sessions still open)', '')
    out.push('| server | sessions | RSS MiB | heap used MiB |')
    out.push('| --- | ---: | ---: | ---: |')
    for (const m of r.memAfterLoad) out.push(`| ${m.server} | ${sessionsLabel(m.sessions)} | ${mib(m.rss)} | ${mib(m.heapUsed)} |`)
    out.push('')
  }

  out.push('## Reading the tables', '')
  out.push('- **req/s**: POSTs completed per second (any status), median of the runs; **runs min–max** shows how far apart the runs were (a wide range means the machine was busy with something else).')
  out.push('- **vs SDK**: req/s over the SDK\'s own path on the same transport in the same table (HTTP+SSE: `sdk-express`; Streamable HTTP: `sdk-express-streamable`, stateless rows `sdk-express-stateless`; 2026-07-28: `sdk2-handler`). **vs fastify-bare** / **vs ceiling**: over the bare Fastify route with no MCP work.')
  out.push('- HTTP+SSE: **POST p50/p99** from building a request to its `202`; **e2e p50/p99** from building it to its JSON-RPC response read off the session\'s SSE stream: what an MCP client waits. Streamable HTTP: **p50/p99** from building a request to its whole response read (the answer travels on the POST\'s own response).')
  out.push('- **answered / accepted**: accepted (2xx) POSTs whose JSON-RPC response arrived (HTTP+SSE: on the stream, counted after the readers drained; Streamable HTTP: in the POST\'s response, JSON or event stream, checked by id and content). Below 100% the server is **broken, not fast**: it accepted work it never answered.')
  out.push('- **as event stream**: answers that came as `text/event-stream` rather than JSON. **progress delivered**: progress notifications that came before the result, of those asked for (a JSON answer cannot carry them: `responseMode: json` drops them by design; missing ones on an event stream are flagged INCOMPLETE).')
  out.push('- **RSS / session**: (server RSS with N open sessions − RSS before) / N, each after a full GC in the server process (`GET /__mem`). **kept after close**: RSS and heap above the starting point once every session is closed (RSS rarely returns fully: the allocator keeps pages).')
  out.push('- Servers:')
  const listed = new Set<ServerName>([...r.load.map(x => x.server), ...r.scale.map(x => x.server)])
  for (const name of Object.keys(SERVERS) as ServerName[]) if (listed.has(name)) out.push(`  - \`${name}\`: ${SERVERS[name].title}`)
  if (r.notes.length > 0) {
    out.push('', '## Notes', '')
    for (const n of r.notes) out.push(`- ${n}`)
  }
  out.push('')
  return out.join('\n')
}
