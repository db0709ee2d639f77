// The targets the benchmarks are held to, checked against a run's results: each a ratio of
// two servers measured in the same run (their runs interleaved), given as the median of the
// per-run ratios with the lowest and highest, so a target's spread over repeats shows.
import type { LoadCell, Results, ScaleCell } from './report.js'
import type { RunSample } from './load.js'
import type { Scenario } from './scenarios.js'
import type { ServerName } from './servers.js'
import { median } from './stats.js'

/** One comparison: `server` over `against`, per run. */
interface LoadTarget {
  kind: 'load'
  what: string
  server: ServerName
  against: ServerName
  scenarios: readonly Scenario[]
  /** Throughput: server / against >= want. p99: server / against <= want. */
  measure: 'throughput' | 'p99'
  want: number
}

/** Idle memory per session: server / against <= want, for RSS and heap. */
interface MemoryTarget {
  kind: 'memory'
  what: string
  server: ServerName
  against: ServerName
  transport: 'sse' | 'streamable'
  want: number
}

type Target = LoadTarget | MemoryTarget

const SESSIONFUL_ECHO_LIST = ['streamable-echo', 'streamable-list'] as const
const STREAMABLE = ['streamable-echo', 'streamable-progress', 'streamable-list'] as const
const MODERN = ['modern-echo', 'modern-progress', 'modern-list'] as const

/**
 * The targets of the benchmark issue. The plugin's sessionful rows are its default
 * behaviour: JSON answers where nothing precedes the result (`fastify-mcp-sse-json`:
 * echo, list), an event stream when progress comes first (`fastify-mcp-sse-stream`).
 */
export const TARGETS: readonly Target[] = [
  { kind: 'load', what: 'sessionful Streamable HTTP ≥ 2× SDK v2 on Fastify', server: 'fastify-mcp-sse-json', against: 'sdk2-fastify', scenarios: SESSIONFUL_ECHO_LIST, measure: 'throughput', want: 2 },
  { kind: 'load', what: 'sessionful Streamable HTTP (progress, as event streams) ≥ 2× SDK v2 on Fastify', server: 'fastify-mcp-sse-stream', against: 'sdk2-fastify', scenarios: ['streamable-progress'], measure: 'throughput', want: 2 },
  { kind: 'load', what: 'sessionful Streamable HTTP ≥ 4× SDK v1 + express', server: 'fastify-mcp-sse-json', against: 'sdk-express-streamable', scenarios: SESSIONFUL_ECHO_LIST, measure: 'throughput', want: 4 },
  { kind: 'load', what: 'sessionful Streamable HTTP (progress) ≥ 4× SDK v1 + express', server: 'fastify-mcp-sse-stream', against: 'sdk-express-streamable', scenarios: ['streamable-progress'], measure: 'throughput', want: 4 },
  { kind: 'load', what: 'sessionful Streamable HTTP ≥ 0.9× its SDK-path ceiling', server: 'fastify-mcp-sse-json', against: 'fastify-sdk-min-streamable', scenarios: SESSIONFUL_ECHO_LIST, measure: 'throughput', want: 0.9 },
  { kind: 'load', what: 'sessionful Streamable HTTP (progress) ≥ 0.9× its SDK-path ceiling', server: 'fastify-mcp-sse-stream', against: 'fastify-sdk-min-streamable', scenarios: ['streamable-progress'], measure: 'throughput', want: 0.9 },
  { kind: 'load', what: 'sessionful Streamable HTTP p99 no worse than SDK v2 on Fastify', server: 'fastify-mcp-sse-json', against: 'sdk2-fastify', scenarios: SESSIONFUL_ECHO_LIST, measure: 'p99', want: 1 },
  { kind: 'load', what: 'sessionful Streamable HTTP p99 no worse than SDK v1 + express', server: 'fastify-mcp-sse-json', against: 'sdk-express-streamable', scenarios: SESSIONFUL_ECHO_LIST, measure: 'p99', want: 1 },
  { kind: 'load', what: 'stateless 2025 ≥ 3× createMcpHandler (its stateless legacy fallback)', server: 'fastify-mcp-sse-stateless', against: 'sdk2-handler', scenarios: STREAMABLE, measure: 'throughput', want: 3 },
  { kind: 'load', what: 'stateless 2025 (kept servers, reuseServers 4) ≥ 3× createMcpHandler', server: 'fastify-mcp-sse-stateless-reuse', against: 'sdk2-handler', scenarios: STREAMABLE, measure: 'throughput', want: 3 },
  { kind: 'load', what: '2026-07-28 (a server per request) ≥ 3× createMcpHandler', server: 'fastify-mcp-sse-2026', against: 'sdk2-handler', scenarios: MODERN, measure: 'throughput', want: 3 },
  { kind: 'load', what: '2026-07-28 (kept servers, reuseServers 4) ≥ 3× createMcpHandler', server: 'fastify-mcp-sse-2026-reuse', against: 'sdk2-handler', scenarios: MODERN, measure: 'throughput', want: 3 },
  { kind: 'load', what: 'cross-instance Streamable HTTP ≥ 0.7× one in-memory instance', server: 'cross-instance-streamable', against: 'fastify-mcp-sse-json', scenarios: STREAMABLE, measure: 'throughput', want: 0.7 },
  { kind: 'load', what: 'cross-instance HTTP+SSE ≥ 0.7× one in-memory instance', server: 'cross-instance', against: 'fastify-mcp-sse', scenarios: ['echo', 'ping'], measure: 'throughput', want: 0.7 },
  { kind: 'load', what: 'metrics and tracing on cost ≤ 5% (on / off ≥ 0.95×)', server: 'fastify-mcp-sse-json', against: 'fastify-mcp-sse-json-quiet', scenarios: STREAMABLE, measure: 'throughput', want: 0.95 },
  { kind: 'load', what: 'HTTP+SSE where it was: ≥ 0.8× its SDK-path ceiling (0.81–0.92× before)', server: 'fastify-mcp-sse', against: 'fastify-sdk-min', scenarios: ['echo', 'ping'], measure: 'throughput', want: 0.8 },
  { kind: 'load', what: 'HTTP+SSE where it was: ≥ 2.4× the SDK\'s SSEServerTransport', server: 'fastify-mcp-sse', against: 'sdk-express', scenarios: ['echo', 'ping'], measure: 'throughput', want: 2.4 },
  { kind: 'memory', what: 'idle HTTP+SSE session no bigger than the SDK\'s', server: 'fastify-mcp-sse', against: 'sdk-express', transport: 'sse', want: 1 },
  { kind: 'memory', what: 'idle Streamable HTTP session no bigger than SDK v1\'s', server: 'fastify-mcp-sse-json', against: 'sdk-express-streamable', transport: 'streamable', want: 1 },
  { kind: 'memory', what: 'idle Streamable HTTP session no bigger than SDK v2\'s', server: 'fastify-mcp-sse-json', against: 'sdk2-fastify', transport: 'streamable', want: 1 }
]

/** One checked row: a target at one scenario and session count. */
export interface TargetRow {
  what: string
  server: ServerName
  against: ServerName
  /** Scenario and sessions ("–" for none), or the idle-memory figure. */
  where: string
  want: string
  /** Median of the per-run ratios. */
  ratio: number
  /** Lowest and highest per-run ratio; equal with one run. */
  spread: [number, number]
  runs: number
  met: boolean
}

function perRunRatios (a: RunSample[], b: RunSample[], measure: LoadTarget['measure']): number[] {
  const n = Math.min(a.length, b.length)
  const out: number[] = []
  for (let i = 0; i < n; i++) {
    const x = measure === 'throughput' ? a[i]!.reqPerSec / b[i]!.reqPerSec : a[i]!.e2eP99 / b[i]!.e2eP99
    if (Number.isFinite(x)) out.push(x)
  }
  return out
}

function loadRows (r: Results, t: LoadTarget): TargetRow[] {
  const rows: TargetRow[] = []
  for (const scenario of t.scenarios) {
    const mine = r.load.filter(c => c.server === t.server && c.scenario === scenario && c.samples.length > 0)
    for (const cell of mine) {
      const other: LoadCell | undefined = r.load.find(c => c.server === t.against && c.scenario === scenario && c.sessions === cell.sessions && c.samples.length > 0)
      if (other === undefined) continue
      const ratios = perRunRatios(cell.samples, other.samples, t.measure)
      if (ratios.length === 0) continue
      const ratio = median(ratios)
      rows.push({
        what: t.what,
        server: t.server,
        against: t.against,
        where: `${scenario}, ${cell.sessions === 0 ? 'no session' : `${cell.sessions} session${cell.sessions === 1 ? '' : 's'}`}`,
        want: `${t.measure === 'throughput' ? '≥' : '≤'} ${t.want}×`,
        ratio,
        spread: [Math.min(...ratios), Math.max(...ratios)],
        runs: ratios.length,
        met: t.measure === 'throughput' ? ratio >= t.want : ratio <= t.want
      })
    }
  }
  return rows
}

function memoryRows (r: Results, t: MemoryTarget): TargetRow[] {
  const find = (server: ServerName): ScaleCell | undefined =>
    r.scale.find(c => c.server === server && (c.transport ?? 'sse') === t.transport && c.median !== undefined)
  const mine = find(t.server)
  const other = find(t.against)
  if (mine?.median === undefined || other?.median === undefined) return []
  const rows: TargetRow[] = []
  for (const [label, key] of [['RSS', 'rssPerSession'], ['heap', 'heapPerSession']] as const) {
    const ratio = mine.median[key] / other.median[key]
    const each = mine.samples.map(s => s[key] / other.median![key]).filter(Number.isFinite)
    rows.push({
      what: t.what,
      server: t.server,
      against: t.against,
      where: `${label} per idle session, N = ${mine.n.toLocaleString('en-US')} (${(mine.median[key] / 1024).toFixed(1)} vs ${(other.median[key] / 1024).toFixed(1)} KiB)`,
      want: `≤ ${t.want}×`,
      ratio,
      spread: each.length === 0 ? [ratio, ratio] : [Math.min(...each), Math.max(...each)],
      runs: Math.max(1, each.length),
      met: ratio <= t.want
    })
  }
  return rows
}

/** Every target that the run has both sides of, checked. */
export function checkTargets (r: Results): TargetRow[] {
  return TARGETS.flatMap(t => t.kind === 'load' ? loadRows(r, t) : memoryRows(r, t))
}

/** The Markdown section of the checked targets (nothing when the run measured none). */
export function targetsMarkdown (r: Results): string[] {
  const rows = checkTargets(r)
  if (rows.length === 0) return []
  const x = (n: number): string => `${n.toFixed(2)}×`
  const out = [
    '## Targets',
    '',
    'Each ratio is the median of the per-run ratios of the two servers (measured in the same run, interleaved), with the lowest and highest run.',
    '',
    '| target | server | against | where | want | ratio | runs min–max | runs | |',
    '| --- | --- | --- | --- | ---: | ---: | ---: | ---: | --- |'
  ]
  for (const row of rows) {
    out.push(`| ${row.what} | ${row.server} | ${row.against} | ${row.where} | ${row.want} | ${x(row.ratio)} | ${x(row.spread[0])}–${x(row.spread[1])} | ${row.runs} | ${row.met ? 'met' : '**missed**'} |`)
  }
  out.push('')
  return out
}
