// The benchmark driver: `npm run bench` (full) or `npm run bench:quick` (development).
// Every server runs as its own child process on 127.0.0.1; see benchmarks/README.md.
import { execFileSync } from 'node:child_process'
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, release, totalmem, type as osType } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { renderChart } from './lib/chart.js'
import { BODIES as SSE_BODIES, closeSessions, loadRun, openSessions, type LoadSession, type RunSample } from './lib/load.js'
import { summarize, toMarkdown, type Config, type LoadCell, type Results, type ScaleCell } from './lib/report.js'
import { scaleRun, type ScaleSample } from './lib/scale.js'
import { familyOf, SCENARIOS, type HttpScenario, type Scenario, type SseScenario } from './lib/scenarios.js'
import {
  fileLimit, killAllServers, ROOT, SCALE_SERVER_NAMES, SERVER_NAMES, SERVERS, SESSIONFUL_STREAMABLE_NAMES,
  startServer, STREAMABLE_SCALE_SERVER_NAMES, type ServerHandle, type ServerName
} from './lib/servers.js'
import { pool } from './lib/sse.js'
import { streamableScaleRun } from './lib/streamable-scale.js'
import { closeStreamableSessions, openStreamableSessions, requestTemplate, streamableRun, type StreamableSession } from './lib/streamable.js'
import { warmUp } from './lib/warmup.js'

const USAGE = `Usage: node --import tsx benchmarks/run.ts [options]

  --quick                 development mode: 1 s runs, shorter warm-ups, small idle-session counts
  --duration <s>          seconds per autocannon run, whole seconds (full: 3, quick: 1)
  --runs <n>              runs per figure; the median is reported (1)
  --connections <k>       autocannon connections (50)
  --warmup <n>            warm-up before a server's first runs, not reported: n requests of its first
                          scenario and n/3 of each other one (full: 3000, quick: 1000; 0: none)
  --warmup-each, --no-warmup-each
                          warm up on every scenario (full) or on the first only (quick)
  --sessions <list>       session counts for the load runs (1,100); stateless servers and
                          2026-07-28 requests have no sessions and are measured once
  --servers <list>        servers (default: all; also limits the idle-session scenarios to these):
                          ${SERVER_NAMES.join(',')}
  --scenarios <list>      ${SCENARIOS.join(',')}
  --scale <n>             HTTP+SSE: idle streams in the connection-scale scenario (full: 10000, quick: 2000; 0 skips it)
  --scale-servers <list>  servers of it (full: every HTTP+SSE server but cross-instance, quick: fastify-mcp-sse)
  --scale-runs <n>        runs of it for fastify-mcp-sse (full: 3, quick: 1)
  --scale-runs-others <n> runs of it for the other servers (1)
  --scale-concurrency <n> streams or sessions being opened at once (100)
  --streamable-scale <n>  Streamable HTTP: idle sessions per server (full: 10000, quick: 1000; 0 skips it)
  --streamable-scale-servers <list>
                          servers of it (full: ${STREAMABLE_SCALE_SERVER_NAMES.join(',')};
                          quick: fastify-mcp-sse-json,sdk-express-streamable)
  --streamable-scale-runs <n> runs of it per server (1)
  --out <name>            results/<name>.json, .md and .svg (full: latest, quick: quick)
`

function list<T extends string> (value: string | undefined, allowed: readonly T[], fallback: readonly T[], what: string): T[] {
  if (value === undefined) return [...fallback]
  const items = value.split(',').map(s => s.trim()).filter(s => s !== '')
  for (const item of items) {
    if (!allowed.includes(item as T)) throw new Error(`unknown ${what} "${item}" (known: ${allowed.join(', ')})`)
  }
  return items as T[]
}

function num (value: string | undefined, fallback: number, what: string): number {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${what} wants a number, got "${value}"`)
  return n
}

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    duration: { type: 'string' },
    runs: { type: 'string' },
    connections: { type: 'string' },
    warmup: { type: 'string' },
    'warmup-each': { type: 'boolean' },
    'no-warmup-each': { type: 'boolean' },
    sessions: { type: 'string' },
    servers: { type: 'string' },
    scenarios: { type: 'string' },
    scale: { type: 'string' },
    'scale-servers': { type: 'string' },
    'scale-runs': { type: 'string' },
    'scale-runs-others': { type: 'string' },
    'scale-concurrency': { type: 'string' },
    'streamable-scale': { type: 'string' },
    'streamable-scale-servers': { type: 'string' },
    'streamable-scale-runs': { type: 'string' },
    out: { type: 'string' },
    help: { type: 'boolean', default: false }
  }
})
if (args.help) {
  process.stdout.write(USAGE)
  process.exit(0)
}

const quick = args.quick
const servers = list(args.servers, SERVER_NAMES, SERVER_NAMES, 'server')
// --servers limits the idle-session scenarios too (unless their own lists are given).
const onlyListed = (names: readonly ServerName[]): ServerName[] => args.servers === undefined ? [...names] : names.filter(n => servers.includes(n))
const config: Config = {
  mode: quick ? 'quick' : 'full',
  servers,
  sessions: (args.sessions ?? '1,100').split(',').map(s => Math.round(num(s, 1, 'sessions'))).filter(n => n >= 1),
  scenarios: list(args.scenarios, SCENARIOS, SCENARIOS, 'scenario'),
  // autocannon stops on whole seconds.
  durationSec: Math.max(1, Math.ceil(num(args.duration, quick ? 1 : 3, 'duration'))),
  runs: Math.max(1, Math.round(num(args.runs, 1, 'runs'))),
  connections: Math.max(1, Math.round(num(args.connections, 50, 'connections'))),
  warmupRequests: Math.round(num(args.warmup, quick ? 1000 : 3000, 'warmup')),
  warmupEach: args['no-warmup-each'] === true ? false : args['warmup-each'] ?? !quick,
  scaleN: Math.round(num(args.scale, quick ? 2000 : 10_000, 'scale')),
  scaleServers: list(args['scale-servers'], SCALE_SERVER_NAMES, onlyListed(quick ? ['fastify-mcp-sse'] : SCALE_SERVER_NAMES), 'server'),
  scaleRuns: Math.max(1, Math.round(num(args['scale-runs'], quick ? 1 : 3, 'scale-runs'))),
  scaleConcurrency: Math.max(1, Math.round(num(args['scale-concurrency'], 100, 'scale-concurrency'))),
  streamableScaleN: Math.round(num(args['streamable-scale'], quick ? 1000 : 10_000, 'streamable-scale')),
  streamableScaleServers: list(args['streamable-scale-servers'], SESSIONFUL_STREAMABLE_NAMES,
    onlyListed(quick ? ['fastify-mcp-sse-json', 'sdk-express-streamable'] : STREAMABLE_SCALE_SERVER_NAMES), 'server'),
  streamableScaleRuns: Math.max(1, Math.round(num(args['streamable-scale-runs'], 1, 'streamable-scale-runs')))
}
const scaleRunsOthers = Math.max(1, Math.round(num(args['scale-runs-others'], quick ? config.scaleRuns : 1, 'scale-runs-others')))
const outName = args.out ?? (quick ? 'quick' : 'latest')
const resultsDir = join(ROOT, 'benchmarks', 'results')
const logDir = join(resultsDir, 'logs')
// The servers' logs are this invocation's only (mcp-framework logs every session).
rmSync(logDir, { recursive: true, force: true })

const started = performance.now()
function say (line: string): void {
  const s = Math.round((performance.now() - started) / 1000)
  process.stderr.write(`[${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}] ${line}\n`)
}
const errorText = (err: unknown): string => err instanceof Error ? err.message : String(err)
const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

function commit (): string {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: ROOT, encoding: 'utf8' }).trim() !== ''
    return `${head}${dirty ? ' with uncommitted changes in src/' : ''}`
  } catch {
    return 'unknown'
  }
}

const limit = fileLimit()
const results: Results = {
  date: new Date().toISOString(),
  complete: false,
  elapsedSec: 0,
  machine: {
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    os: `${osType()} ${release()}`,
    loadAverageAtStart: loadavg(),
    fileLimit: limit,
    commit: commit()
  },
  config,
  load: [],
  memAfterLoad: [],
  scale: [],
  notes: []
}

// This process holds the client side of every stream, the server the other side.
if (config.scaleN > 0 && config.scaleServers.length > 0 && Number.isFinite(limit) && config.scaleN + 1000 > limit) {
  const capped = Math.max(0, limit - 1000)
  results.notes.push(`The open-file limit is ${limit} (ulimit -n): the connection-scale scenario used N = ${capped} instead of ${config.scaleN}. Raise it (as root: ulimit -n 65536) for the full N.`)
  say(`open-file limit ${limit}: N lowered from ${config.scaleN} to ${capped}`)
  config.scaleN = capped
}

// Servers die with us, whatever ends us (and with SIGKILL, they see the IPC channel close).
process.on('exit', killAllServers)
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => {
    say(`${signal}: stopping the servers; what was measured so far is in benchmarks/results/${outName}.*`)
    killAllServers()
    results.notes.push(`Interrupted by ${signal}.`)
    writeResults()
    process.exit(130)
  })
}

function writeResults (): void {
  results.elapsedSec = (performance.now() - started) / 1000
  summarize(results)
  mkdirSync(resultsDir, { recursive: true })
  writeFileSync(join(resultsDir, `${outName}.json`), JSON.stringify(results, null, 2) + '\n')
  writeFileSync(join(resultsDir, `${outName}.md`), toMarkdown(results))
  writeFileSync(join(resultsDir, `${outName}.svg`), renderChart(results))
}

/** Whether `name` serves `scenario` (its transport, and the revisions it speaks). */
function serves (name: ServerName, scenario: Scenario): boolean {
  const spec = SERVERS[name]
  const family = familyOf(scenario)
  if (family === 'sse') return spec.transport === 'sse'
  if (family === 'streamable') return spec.transport === 'streamable' && spec.legacy !== false
  return spec.modern === true
}

/** Stateless servers and 2026-07-28 requests have no sessions: measured once, as "sessions 0". */
function sessionless (name: ServerName, scenario: Scenario): boolean {
  const family = familyOf(scenario)
  return family === 'modern' || (family === 'streamable' && SERVERS[name].stateless === true)
}

/** What a server's load runs use in one pass: its HTTP+SSE streams or Streamable HTTP sessions. */
interface Prepared {
  sse: LoadSession[]
  streamable: StreamableSession[]
}

/** Closes what a pass opened and waits (up to 10 s) for the server to count no session. */
async function closeAndSettle (server: ServerHandle, prepared: Prepared): Promise<void> {
  closeSessions(prepared.sse)
  await closeStreamableSessions(server.port, prepared.streamable).catch(() => {})
  for (let i = 0; i < 40 && server.exited === undefined; i++) {
    try {
      if ((await server.mem()).sessions === 0) return
    } catch {
      return
    }
    await sleep(250)
  }
}

function describe (s: RunSample): string {
  const lost = s.accepted - s.answered
  return `${Math.round(s.reqPerSec)} req/s, p99 ${s.e2eP99.toFixed(2)} ms, answered ${s.answered}/${s.accepted}` +
    `${lost > 0 ? ` (${lost} LOST)` : ''}${s.non2xx > 0 ? `, ${s.non2xx} non-2xx` : ''}${s.bad > 0 ? `, ${s.bad} wrong replies` : ''}` +
    `${s.errors > 0 ? `, ${s.errors} socket errors` : ''}` +
    `${s.sseReplies > 0 ? `, ${s.sseReplies} as SSE` : ''}${s.progressExpected > 0 ? `, progress ${s.progressSeen}/${s.progressExpected}` : ''}`
}

async function loadPhase (): Promise<void> {
  const scenariosOf = (name: ServerName): Scenario[] => config.scenarios.filter(sc => serves(name, sc))
  const names = config.servers.filter(n => scenariosOf(n).length > 0)
  if (names.length === 0 || config.sessions.length === 0) return
  const handles = new Map<ServerName, ServerHandle>()
  const failedToStart = new Map<ServerName, string>()
  // A few at a time: each one transpiles its TypeScript on start.
  await pool(names.length, 3, async i => {
    const name = names[i]!
    try {
      handles.set(name, await startServer(name, logDir))
      say(`started ${name}`)
    } catch (err) {
      failedToStart.set(name, errorText(err))
      say(`${name} failed to start: ${errorText(err)}`)
    }
  })
  try {
    for (const [pass, sessionCount] of config.sessions.entries()) {
      // What each server runs in this pass: sessionless cells only in the first one.
      const jobs = new Map<ServerName, Scenario[]>()
      for (const name of names) {
        const list = scenariosOf(name).filter(sc => pass === 0 || !sessionless(name, sc))
        if (list.length > 0) jobs.set(name, list)
      }
      const cells = new Map<string, LoadCell>()
      const cellOf = (server: ServerName, scenario: Scenario): LoadCell => {
        const sessions = sessionless(server, scenario) ? 0 : sessionCount
        const key = `${server} ${scenario} ${sessions}`
        let cell = cells.get(key)
        if (cell === undefined) {
          cell = { server, sessions, scenario, samples: [], verdict: '' }
          cells.set(key, cell)
          results.load.push(cell)
        }
        return cell
      }
      for (const scenario of config.scenarios) for (const [name, list] of jobs) if (list.includes(scenario)) cellOf(name, scenario)
      const fail = (name: ServerName, error: string): void => {
        for (const scenario of jobs.get(name) ?? []) cellOf(name, scenario).error ??= error
      }
      for (const [name, error] of failedToStart) fail(name, `did not start: ${error}`)

      // Sessions for every server first, so that they all run with the same sessions open.
      const open = new Map<ServerName, Prepared>()
      for (const [name, list] of jobs) {
        const server = handles.get(name)
        if (server === undefined) continue
        if (server.exited !== undefined) {
          fail(name, `server ${server.exited}`)
          continue
        }
        const prepared: Prepared = { sse: [], streamable: [] }
        try {
          if (list.some(sc => familyOf(sc) === 'sse')) {
            await openSessions(server.port, sessionCount, prepared.sse)
            say(`${name}: ${sessionCount} HTTP+SSE session(s) open and initialized`)
          }
          if (list.some(sc => familyOf(sc) === 'streamable' && !sessionless(name, sc))) {
            await openStreamableSessions(server.port, sessionCount, prepared.streamable)
            say(`${name}: ${sessionCount} Streamable HTTP session(s) initialized`)
          }
          open.set(name, prepared)
        } catch (err) {
          await closeAndSettle(server, prepared)
          fail(name, `opening sessions: ${errorText(err)}`)
          say(`${name}: opening sessions failed: ${errorText(err)}`)
        }
      }

      const runOne = async (name: ServerName, scenario: Scenario, seconds: number): Promise<RunSample> => {
        const server = handles.get(name)!
        const prepared = open.get(name)!
        const family = familyOf(scenario)
        const sample = family === 'sse'
          ? await loadRun(server.postPort, prepared.sse, scenario as SseScenario, seconds, config.connections)
          : await streamableRun(server.postPort, sessionless(name, scenario) ? [] : prepared.streamable, scenario as HttpScenario, seconds, config.connections)
        if (server.exited !== undefined) throw new Error(`server ${server.exited}`)
        return sample
      }

      // Warm-up, not reported, before a server's first runs: --warmup requests of its first
      // scenario and a third as many of each other one (quick mode: the first only). A fresh
      // process is slow until its code has run a few thousand times (the SDK's paths most);
      // the scenarios share most of it. Later passes find the server warm.
      if (config.warmupRequests > 0 && pass === 0) {
        for (const name of [...open.keys()]) {
          const server = handles.get(name)!
          const prepared = open.get(name)!
          for (const [i, scenario] of jobs.get(name)!.entries()) {
            if (i > 0 && !config.warmupEach) break
            const count = i === 0 ? config.warmupRequests : Math.ceil(config.warmupRequests / 3)
            try {
              const template = familyOf(scenario) === 'sse'
                ? { targets: prepared.sse.map(x => ({ path: x.conn.messagePath, headers: { 'content-type': 'application/json' } })), body: SSE_BODIES[scenario as SseScenario] }
                : requestTemplate(sessionless(name, scenario) ? [] : prepared.streamable, scenario as HttpScenario)
              const w = await warmUp(server.postPort, template.targets, template.body, count, config.connections)
              if (server.exited !== undefined) throw new Error(`server ${server.exited}`)
              say(`${name} warm-up (${scenario}): ${w.sent} requests in ${(w.ms / 1000).toFixed(2)} s${w.failed > 0 ? `, ${w.failed} failed` : ''}`)
            } catch (err) {
              fail(name, errorText(err))
              say(`${name} warm-up: ${errorText(err)}`)
              break
            }
          }
        }
      }

      for (const scenario of config.scenarios) {
        for (let run = 0; run < config.runs; run++) {
          // A different order each run, so that drift on a shared machine spreads evenly.
          const order = [...open.keys()].filter(n => jobs.get(n)!.includes(scenario))
          const first = order.length === 0 ? 0 : run % order.length
          for (const name of [...order.slice(first), ...order.slice(0, first)]) {
            const cell = cellOf(name, scenario)
            if (cell.error !== undefined) continue
            try {
              const sample = await runOne(name, scenario, config.durationSec)
              cell.samples.push(sample)
              say(`${name} S=${cell.sessions === 0 ? '-' : cell.sessions} ${scenario} run ${run + 1}/${config.runs}: ${describe(sample)}`)
            } catch (err) {
              fail(name, errorText(err))
              say(`${name} S=${sessionCount} ${scenario}: ${errorText(err)}`)
            }
          }
        }
      }

      for (const [name, prepared] of open) {
        const server = handles.get(name)!
        const sessions = jobs.get(name)!.every(sc => sessionless(name, sc)) ? 0 : sessionCount
        try {
          const mem = await server.mem()
          results.memAfterLoad.push({ server: name, sessions, rss: mem.rss, heapUsed: mem.heapUsed, serverSessions: mem.sessions })
        } catch {}
        await closeAndSettle(server, prepared)
      }
      writeResults()
    }
  } finally {
    await Promise.all([...handles.values()].map(async server => { await server.stop() }))
  }
}

async function scalePhase (transport: 'sse' | 'streamable'): Promise<void> {
  const n = transport === 'sse' ? config.scaleN : config.streamableScaleN
  if (n <= 0) return
  const what = transport === 'sse' ? 'idle streams' : 'idle sessions'
  const names = transport === 'sse' ? config.scaleServers : config.streamableScaleServers
  for (const name of names) {
    const cell: ScaleCell = { server: name, transport, n, samples: [] }
    results.scale.push(cell)
    const runs = transport === 'streamable' ? config.streamableScaleRuns : name === 'fastify-mcp-sse' ? config.scaleRuns : scaleRunsOthers
    for (let run = 0; run < runs; run++) {
      let server: ServerHandle | undefined
      try {
        server = await startServer(name, logDir)
        await sleep(500)
        const sample: ScaleSample = transport === 'sse'
          ? await scaleRun(server, n, config.scaleConcurrency)
          : await streamableScaleRun(server, n, config.scaleConcurrency)
        if (server.exited !== undefined) throw new Error(`server ${server.exited}`)
        cell.samples.push(sample)
        say(`${name} ${what} run ${run + 1}/${runs}: ${sample.opened}/${n} open in ${(sample.openMs / 1000).toFixed(2)} s` +
          `${sample.failed > 0 ? ` (${sample.failed} failed: ${sample.firstError ?? '?'})` : ''}, ` +
          `${(sample.rssPerSession / 1024).toFixed(1)} KiB RSS and ${(sample.heapPerSession / 1024).toFixed(1)} KiB heap per session; ` +
          `after close: ${sample.afterClose.sessions} sessions, RSS +${(sample.rssRetained / 1048576).toFixed(1)} MiB, heap +${(sample.heapRetained / 1048576).toFixed(1)} MiB`)
      } catch (err) {
        cell.error = server?.exited !== undefined ? `server ${server.exited} (see ${server.logPath}): ${errorText(err)}` : errorText(err)
        say(`${name} ${what}: ${cell.error}`)
        break
      } finally {
        await server?.stop()
      }
    }
    writeResults()
  }
}

let exitCode = 0
try {
  say(`${config.mode} mode: ${config.servers.length} servers, sessions ${config.sessions.join(',')}, ${config.scenarios.join(',')}, ${config.runs} × ${config.durationSec} s, ${config.connections} connections; ` +
    `idle HTTP+SSE streams N = ${config.scaleN} on ${config.scaleServers.join(',') || 'none'}; idle Streamable HTTP sessions N = ${config.streamableScaleN} on ${config.streamableScaleServers.join(',') || 'none'}`)
  await loadPhase()
  await scalePhase('sse')
  await scalePhase('streamable')
  results.complete = true
} catch (err) {
  exitCode = 1
  results.notes.push(`The run stopped early: ${errorText(err)}`)
  say(`stopped early: ${err instanceof Error ? err.stack ?? err.message : String(err)}`)
} finally {
  killAllServers()
  writeResults()
  say(`results: benchmarks/results/${outName}.md, .json and .svg (${Math.round((performance.now() - started) / 1000)} s)`)
}
process.exit(exitCode)
