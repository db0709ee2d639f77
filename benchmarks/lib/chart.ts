// The results as an SVG chart, written by hand (no chart library): one panel per load
// scenario, a row per server, a bar per session count (req/s, longer is better) labelled
// with its ratio to the SDK's own path on that transport, and each bar's p99 latency as a
// dot on a latency axis of its own; then the idle-session memory per session. The SVG
// depends on nothing but the results JSON (no clock, no randomness): the same JSON always
// gives the same file.
import { referenceCell, referencesOf, type LoadCell, type Results, type ScaleCell } from './report.js'
import { familyOf, SCENARIO_TITLES, type Scenario } from './scenarios.js'
import { REFERENCES, SERVER_NAMES, SERVERS, type ServerName, type ServerSpec } from './servers.js'

const W = 1120
const NAME_X = 16 // server names, left-aligned
const TAG_X = 262 // session count, right-aligned
const BAR_X = 270
const BAR_W = 540
const P99_X = 860
const P99_W = 230
const BAR_H = 13
const BAR_GAP = 2
const ROW_GAP = 7
const FONT = 'font-family="Helvetica, Arial, sans-serif"'

/** Fill colours by kind of server; the first is for the first session count (lighter). */
const COLOURS: Record<ServerSpec['kind'], [string, string, string]> = {
  plugin: ['#fdae6b', '#e6550d', '#f16913'],
  sdk: ['#a1d99b', '#31a354', '#41ab5d'],
  ceiling: ['#d9d9d9', '#969696', '#b0b0b0'],
  other: ['#9ecae1', '#3182bd', '#4292c6']
}
const KIND_LABELS: Record<ServerSpec['kind'], string> = {
  plugin: 'fastify-mcp-sse (this plugin)',
  sdk: 'official SDK paths',
  ceiling: 'ceilings (no MCP work, or the SDK with no transport checks)',
  other: 'other packages'
}

function esc (text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
}
const f1 = (n: number): string => (Math.round(n * 10) / 10).toString()
const int = (n: number): string => Math.round(n).toLocaleString('en-US')
const msText = (n: number): string => n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : Math.round(n).toString()
/** An axis tick: as many decimals as the step needs. */
const tick = (v: number, step: number): string => step >= 1 ? int(v) : v.toFixed(step >= 0.1 ? 1 : 2)

/** A round axis maximum and its step (1, 2 or 5 times a power of ten), at least `max`. */
function niceAxis (max: number, ticks = 5): { top: number, step: number } {
  if (!(max > 0)) return { top: 1, step: 0.2 }
  const raw = max / ticks
  const pow = 10 ** Math.floor(Math.log10(raw))
  const step = [1, 2, 2.5, 5, 10].map(m => m * pow).find(s => s >= raw) ?? 10 * pow
  return { top: Math.ceil(max / step) * step, step }
}

function text (x: number, y: number, body: string, attrs = ''): string {
  return `<text x="${f1(x)}" y="${f1(y)}" ${attrs}>${esc(body)}</text>`
}

class Svg {
  readonly parts: string[] = []
  y = 0
  add (part: string): void { this.parts.push(part) }
}

function header (svg: Svg, r: Results): void {
  const c = r.config
  svg.y = 28
  svg.add(text(NAME_X, svg.y, 'fastify-mcp-sse benchmarks: req/s per server (longer is better), ratio to the SDK\'s own path, p99 latency', `${FONT} font-size="16" font-weight="bold"`))
  svg.y += 20
  const when = `${r.date.slice(0, 16).replace('T', ' ')} UTC${r.complete ? '' : ' (incomplete run)'}, ${c.mode} mode`
  svg.add(text(NAME_X, svg.y, `${when}; ${r.machine.cpu}, ${r.machine.cores} cores, Node ${r.machine.node}; code ${r.machine.commit}`, `${FONT} font-size="11" fill="#444"`))
  svg.y += 15
  svg.add(text(NAME_X, svg.y, `autocannon, ${c.connections} connections, ${c.durationSec} s per run, median of ${c.runs}; server, load generator and readers share the cores: compare rows of one panel, not machines.`, `${FONT} font-size="11" fill="#444"`))
  svg.y += 20
  // Legend: colours by kind, shades by session count.
  let x = NAME_X
  for (const kind of ['plugin', 'sdk', 'ceiling', 'other'] as const) {
    svg.add(`<rect x="${x}" y="${svg.y - 10}" width="10" height="10" fill="${COLOURS[kind][1]}"/>`)
    svg.add(text(x + 14, svg.y, KIND_LABELS[kind], `${FONT} font-size="11"`))
    x += 24 + KIND_LABELS[kind].length * 5.6
  }
  svg.y += 16
  const shades = `bar shades: lighter = ${c.sessions[0] ?? 1} session${(c.sessions[0] ?? 1) === 1 ? '' : 's'}, darker = ${c.sessions.slice(1).join(', ') || '–'} sessions, medium = no sessions (stateless, 2026-07-28); dot = p99 latency on the right-hand axis; "n.nn× SDK" = req/s over the SDK path's in the same panel and session count`
  svg.add(text(NAME_X, svg.y, shades, `${FONT} font-size="11" fill="#444"`))
  svg.y += 14
}

function referenceNote (scenario: Scenario): string {
  const family = familyOf(scenario)
  if (family === 'sse') return `ratios to ${REFERENCES.sse.sdk}`
  if (family === 'modern') return `ratios to ${REFERENCES.modern.sdk}`
  return `ratios to ${REFERENCES.streamable.sdk} (stateless rows: ${REFERENCES['streamable-stateless'].sdk})`
}

function loadPanel (svg: Svg, r: Results, scenario: Scenario): void {
  const order = [0, ...r.config.sessions]
  const cells = r.load.filter(c => c.scenario === scenario)
  if (cells.length === 0) return
  const rows = SERVER_NAMES.filter(n => cells.some(c => c.server === n)).map(name => ({
    name,
    cells: cells.filter(c => c.server === name).sort((a, b) => order.indexOf(a.sessions) - order.indexOf(b.sessions))
  }))
  const rate = niceAxis(Math.max(0, ...cells.map(c => c.median?.reqPerSec ?? 0)))
  const p99 = niceAxis(Math.max(0, ...cells.map(c => c.median?.e2eP99 ?? 0)), 4)

  svg.y += 22
  svg.add(text(NAME_X, svg.y, SCENARIO_TITLES[scenario].replace(/`/g, ''), `${FONT} font-size="14" font-weight="bold"`))
  svg.add(text(BAR_X + BAR_W, svg.y, referenceNote(scenario), `${FONT} font-size="10" fill="#555" text-anchor="end"`))
  svg.add(text(P99_X + P99_W, svg.y, 'p99 latency, ms', `${FONT} font-size="10" fill="#555" text-anchor="end"`))
  svg.y += 16
  // Axes: req/s ticks over the bars, ms ticks over the p99 track.
  const height = rows.reduce((h, row) => h + row.cells.length * (BAR_H + BAR_GAP) + ROW_GAP, 0)
  const top = svg.y + 4
  for (let v = 0; v <= rate.top + 1e-9; v += rate.step) {
    const x = BAR_X + (v / rate.top) * BAR_W
    svg.add(`<line x1="${f1(x)}" y1="${f1(top)}" x2="${f1(x)}" y2="${f1(top + height)}" stroke="#e5e5e5"/>`)
    svg.add(text(x, svg.y, v >= 1000 ? `${f1(v / 1000)}k` : tick(v, rate.step), `${FONT} font-size="9" fill="#777" text-anchor="middle"`))
  }
  for (let v = 0; v <= p99.top + 1e-9; v += p99.step) {
    const x = P99_X + (v / p99.top) * P99_W
    svg.add(`<line x1="${f1(x)}" y1="${f1(top)}" x2="${f1(x)}" y2="${f1(top + height)}" stroke="#eeeeee"/>`)
    svg.add(text(x, svg.y, tick(v, p99.step), `${FONT} font-size="9" fill="#777" text-anchor="middle"`))
  }
  svg.y = top

  for (const row of rows) {
    const spec = SERVERS[row.name]
    const first = svg.y
    for (const cell of row.cells) {
      const y = svg.y
      const mid = y + BAR_H / 2 + 4
      const shade = cell.sessions === 0 ? 2 : order.indexOf(cell.sessions) <= 1 ? 0 : 1
      svg.add(text(TAG_X, mid, cell.sessions === 0 ? '–' : `S=${cell.sessions}`, `${FONT} font-size="9" fill="#777" text-anchor="end"`))
      const m = cell.median
      if (m === undefined) {
        svg.add(text(BAR_X + 4, mid, cell.verdict.slice(0, 110), `${FONT} font-size="10" fill="#c00"`))
      } else {
        const w = Math.max(1, (m.reqPerSec / rate.top) * BAR_W)
        const broken = cell.verdict.startsWith('BROKEN') || cell.verdict.includes('; BROKEN')
        const incomplete = cell.verdict.includes('INCOMPLETE')
        svg.add(`<rect x="${BAR_X}" y="${f1(y)}" width="${f1(w)}" height="${BAR_H}" fill="${COLOURS[spec.kind][shade]}"${broken ? ' stroke="#c00" stroke-width="2"' : ''}/>`)
        const sdk = referenceCell(r, cell, referencesOf(cell).sdk)
        const sdkRatio = sdk?.median === undefined ? undefined : m.reqPerSec / sdk.median.reqPerSec
        let label = `${int(m.reqPerSec)} req/s`
        if (sdk === cell) label += ' · SDK path'
        else if (sdkRatio !== undefined) label += ` · ${sdkRatio.toFixed(2)}× SDK`
        const t = cell.totals
        if (broken) label += ' · BROKEN'
        else if (incomplete) label += ' · progress missing'
        else if (t !== undefined && t.progressExpected > 0 && t.progressSeen === 0 && t.sseReplies === 0) label += ' · JSON, no progress'
        const fits = BAR_X + w + 6 + label.length * 5.7 <= BAR_X + BAR_W + 40
        svg.add(fits
          ? text(BAR_X + w + 4, mid, label, `${FONT} font-size="10"${broken || incomplete ? ' fill="#c00"' : ''}`)
          : text(BAR_X + w - 4, mid, label, `${FONT} font-size="10" text-anchor="end"${broken || incomplete ? ' fill="#c00"' : ''}`))
        if (Number.isFinite(m.e2eP99)) {
          const x = P99_X + Math.min(1, m.e2eP99 / p99.top) * P99_W
          svg.add(`<line x1="${P99_X}" y1="${f1(y + BAR_H / 2)}" x2="${f1(x)}" y2="${f1(y + BAR_H / 2)}" stroke="${COLOURS[spec.kind][shade]}" stroke-width="2"/>`)
          svg.add(`<circle cx="${f1(x)}" cy="${f1(y + BAR_H / 2)}" r="3.5" fill="${COLOURS[spec.kind][1]}"/>`)
          const right = x + 6 + 40 <= W - 4
          svg.add(text(right ? x + 6 : x - 6, mid, `${msText(m.e2eP99)} ms`, `${FONT} font-size="9" fill="#333"${right ? '' : ' text-anchor="end"'}`))
        }
      }
      svg.y += BAR_H + BAR_GAP
    }
    const nameY = (first + svg.y - BAR_GAP) / 2 + 4
    svg.add(text(NAME_X, nameY, row.name, `${FONT} font-size="11"${spec.kind === 'plugin' ? ' font-weight="bold"' : ''}`))
    svg.y += ROW_GAP
  }
}

function scalePanel (svg: Svg, cells: ScaleCell[], title: string): void {
  const done = cells.filter(c => c.median !== undefined || c.error !== undefined)
  if (done.length === 0) return
  const axis = niceAxis(Math.max(0, ...done.flatMap(c => c.median === undefined ? [] : [c.median.rssPerSession / 1024, c.median.heapPerSession / 1024])))
  svg.y += 22
  svg.add(text(NAME_X, svg.y, title, `${FONT} font-size="14" font-weight="bold"`))
  svg.y += 16
  const height = done.length * (2 * (BAR_H + BAR_GAP) + ROW_GAP)
  const top = svg.y + 4
  for (let v = 0; v <= axis.top + 1e-9; v += axis.step) {
    const x = BAR_X + (v / axis.top) * BAR_W
    svg.add(`<line x1="${f1(x)}" y1="${f1(top)}" x2="${f1(x)}" y2="${f1(top + height)}" stroke="#e5e5e5"/>`)
    svg.add(text(x, svg.y, tick(v, axis.step), `${FONT} font-size="9" fill="#777" text-anchor="middle"`))
  }
  svg.y = top
  for (const cell of done) {
    const spec = SERVERS[cell.server]
    const first = svg.y
    const m = cell.median
    if (m === undefined) {
      svg.add(text(BAR_X + 4, svg.y + BAR_H, `FAILED: ${cell.error ?? '?'}`.slice(0, 110), `${FONT} font-size="10" fill="#c00"`))
      svg.y += 2 * (BAR_H + BAR_GAP)
    } else {
      for (const [i, [what, value]] of ([['RSS', m.rssPerSession], ['heap', m.heapPerSession]] as const).entries()) {
        const y = svg.y
        const kib = value / 1024
        const w = Math.max(1, (Math.max(0, kib) / axis.top) * BAR_W)
        svg.add(text(TAG_X, y + BAR_H / 2 + 4, what, `${FONT} font-size="9" fill="#777" text-anchor="end"`))
        svg.add(`<rect x="${BAR_X}" y="${f1(y)}" width="${f1(w)}" height="${BAR_H}" fill="${COLOURS[spec.kind][i === 0 ? 1 : 0]}"/>`)
        const extra = i === 0 ? ` (N = ${int(cell.n)}, ${int(m.opened)} opened${m.failed > 0 ? `, ${int(m.failed)} failed` : ''}, in ${(m.openMs / 1000).toFixed(1)} s)` : ` (after close: ${int(m.sessionsAfterClose)} left, heap +${f1(m.heapRetained / 1048576)} MiB)`
        svg.add(text(BAR_X + w + 4, y + BAR_H / 2 + 4, `${f1(kib)} KiB${extra}`, `${FONT} font-size="10"`))
        svg.y += BAR_H + BAR_GAP
      }
    }
    svg.add(text(NAME_X, (first + svg.y - BAR_GAP) / 2 + 4, cell.server, `${FONT} font-size="11"${spec.kind === 'plugin' ? ' font-weight="bold"' : ''}`))
    svg.y += ROW_GAP
  }
}

/** The SVG of a results JSON (what run.ts writes next to the Markdown). */
export function renderChart (r: Results): string {
  const svg = new Svg()
  header(svg, r)
  const scenarios = r.config.scenarios.filter(s => r.load.some((c: LoadCell) => c.scenario === s))
  for (const scenario of scenarios) loadPanel(svg, r, scenario)
  const known = (c: ScaleCell): boolean => (SERVER_NAMES as readonly string[]).includes(c.server as ServerName)
  scalePanel(svg, r.scale.filter(c => known(c) && (c.transport ?? 'sse') === 'sse'), 'Idle HTTP+SSE sessions (open streams): server memory per session, KiB (shorter is better)')
  scalePanel(svg, r.scale.filter(c => known(c) && c.transport === 'streamable'), 'Idle Streamable HTTP sessions (initialized, no stream): server memory per session, KiB (shorter is better)')
  const height = Math.ceil(svg.y + 16)
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" viewBox="0 0 ${W} ${height}">`,
    `<rect width="${W}" height="${height}" fill="#ffffff"/>`,
    ...svg.parts,
    '</svg>',
    ''
  ].join('\n')
}
