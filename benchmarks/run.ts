// The benchmark driver: `npm run bench` (full) or `npm run bench:quick` (development).
// Every server runs as its own child process on 127.0.0.1; see benchmarks/README.md.
import { execFileSync } from 'node:child_process'
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, release, totalmem, type as osType } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { closeSessions, loadRun, openSessions, SCENARIOS, type LoadSession, type RunSample, type Scenario } from './lib/load.js'
import { summarize, toMarkdown, type Config, type LoadCell, type Results, type ScaleCell } from './lib/report.js'
import { scaleRun } from './lib/scale.js'
import { fileLimit, killAllServers, ROOT, SCALE_SERVER_NAMES, SERVER_NAMES, startServer, type ServerHandle, type ServerName } from './lib/servers.js'

const USAGE = `Usage: node --import tsx benchmarks/run.ts [options]

  --quick                 development mode: 3 s runs, 1 run, 1 s warm-up, N = 2000
  --duration <s>          seconds per autocannon run (full: 5, quick: 3)
  --runs <n>              runs per figure; the median is reported (full: 3, quick: 1)
  --connections <k>       autocannon connections (50)
  --warmup <s>            warm-up per server and session count, not reported (full: 2, quick: 1)
  --sessions <list>       session counts for the load runs (1,100)
  --servers <list>        servers for the load runs (all: ${SERVER_NAMES.join(',')})
  --scenarios <list>      echo,ping
  --scale <n>             idle sessions in the connection-scale scenario (full: 10000, quick: 2000; 0 skips it)
  --scale-servers <list>  servers for the connection-scale scenario (full: all, quick: fastify-mcp-sse)
  --scale-runs <n>        runs of the connection-scale scenario (full: 3 for fastify-mcp-sse, quick: 1; see --scale-runs-others)
  --scale-runs-others <n> runs of the connection-scale scenario for the other servers (full: 1)
  --scale-concurrency <n> streams being opened at once (100)
  --out <name>            results/<name>.json and .md (full: latest, quick: quick)
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
    sessions: { type: 'string' },
    servers: { type: 'string' },
    scenarios: { type: 'string' },
    scale: { type: 'string' },
    'scale-servers': { type: 'string' },
    'scale-runs': { type: 'string' },
    'scale-runs-others': { type: 'string' },
    'scale-concurrency': { type: 'string' },
    out: { type: 'string' },
    help: { type: 'boolean', default: false }
  }
})
if (args.help) {
  process.stdout.write(USAGE)
  process.exit(0)
}

const quick = args.quick
const config: Config = {
  mode: quick ? 'quick' : 'full',
  servers: list(args.servers, SERVER_NAMES, SERVER_NAMES, 'server'),
  sessions: (args.sessions ?? '1,100').split(',').map(s => num(s, 1, 'sessions')).filter(n => n >= 1),
  scenarios: list(args.scenarios, SCENARIOS, SCENARIOS, 'scenario'),
  durationSec: num(args.duration, quick ? 3 : 5, 'duration'),
  runs: Math.max(1, Math.round(num(args.runs, quick ? 1 : 3, 'runs'))),
  connections: Math.max(1, Math.round(num(args.connections, 50, 'connections'))),
  warmupSec: num(args.warmup, quick ? 1 : 2, 'warmup'),
  scaleN: Math.round(num(args.scale, quick ? 2000 : 10_000, 'scale')),
  scaleServers: list(args['scale-servers'], SCALE_SERVER_NAMES, quick ? ['fastify-mcp-sse'] : SCALE_SERVER_NAMES, 'server'),
  scaleRuns: Math.max(1, Math.round(num(args['scale-runs'], quick ? 1 : 3, 'scale-runs'))),
  scaleConcurrency: Math.max(1, Math.round(num(args['scale-concurrency'], 100, 'scale-concurrency')))
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
}

/** Closes the sessions and waits (up to 10 s) for the server to count none. */
async function closeAndSettle (server: ServerHandle, sessions: LoadSession[]): Promise<void> {
  closeSessions(sessions)
  for (let i = 0; i < 40 && server.exited === undefined; i++) {
    await sleep(250)
    try {
      if ((await server.mem()).sessions === 0) return
    } catch {
      return
    }
  }
}

async function loadPhase (): Promise<void> {
  if (config.servers.length === 0 || config.sessions.length === 0 || config.scenarios.length === 0) return
  const handles = new Map<ServerName, ServerHandle>()
  const failedToStart = new Map<ServerName, string>()
  for (const name of config.servers) {
    try {
      handles.set(name, await startServer(name, logDir))
      say(`started ${name}`)
    } catch (err) {
      failedToStart.set(name, errorText(err))
      say(`${name} failed to start: ${errorText(err)}`)
    }
  }
  try {
    for (const sessionCount of config.sessions) {
      const cells = new Map<string, LoadCell>()
      const cellOf = (server: ServerName, scenario: Scenario): LoadCell => {
        const key = `${server} ${scenario}`
        let cell = cells.get(key)
        if (cell === undefined) {
          cell = { server, sessions: sessionCount, scenario, samples: [], verdict: '' }
          cells.set(key, cell)
          results.load.push(cell)
        }
        return cell
      }
      for (const scenario of config.scenarios) for (const name of config.servers) cellOf(name, scenario)
      const fail = (name: ServerName, error: string): void => {
        for (const scenario of config.scenarios) cellOf(name, scenario).error ??= error
      }
      for (const [name, error] of failedToStart) fail(name, `did not start: ${error}`)

      // Sessions for every server first, so that they all run with the same streams open.
      const open = new Map<ServerName, LoadSession[]>()
      for (const [name, server] of handles) {
        if (server.exited !== undefined) {
          fail(name, `server ${server.exited}`)
          continue
        }
        const sessions: LoadSession[] = []
        try {
          await openSessions(server.port, sessionCount, sessions)
          open.set(name, sessions)
          say(`${name}: ${sessionCount} session(s) open and initialized`)
        } catch (err) {
          closeSessions(sessions)
          fail(name, `opening sessions: ${errorText(err)}`)
          say(`${name}: opening sessions failed: ${errorText(err)}`)
        }
      }

      const runOne = async (name: ServerName, scenario: Scenario, seconds: number): Promise<RunSample> => {
        const server = handles.get(name)!
        const sample = await loadRun(server.postPort, open.get(name)!, scenario, seconds, config.connections)
        if (server.exited !== undefined) throw new Error(`server ${server.exited}`)
        return sample
      }
      const describe = (s: RunSample): string => {
        const lost = s.accepted - s.answered
        return `${Math.round(s.reqPerSec)} req/s, e2e p99 ${s.e2eP99.toFixed(2)} ms, answered ${s.answered}/${s.accepted}` +
          `${lost > 0 ? ` (${lost} LOST)` : ''}${s.non2xx > 0 ? `, ${s.non2xx} non-2xx` : ''}${s.bad > 0 ? `, ${s.bad} wrong replies` : ''}`
      }

      if (config.warmupSec > 0) {
        for (const name of [...open.keys()]) {
          try {
            say(`${name} S=${sessionCount} warm-up: ${describe(await runOne(name, 'echo', config.warmupSec))}`)
          } catch (err) {
            fail(name, errorText(err))
            say(`${name} S=${sessionCount} warm-up: ${errorText(err)}`)
          }
        }
      }

      for (const scenario of config.scenarios) {
        for (let run = 0; run < config.runs; run++) {
          // A different order each run, so that drift on a shared machine spreads evenly.
          const names = [...open.keys()]
          const first = names.length === 0 ? 0 : run % names.length
          for (const name of [...names.slice(first), ...names.slice(0, first)]) {
            const cell = cellOf(name, scenario)
            if (cell.error !== undefined) continue
            try {
              const sample = await runOne(name, scenario, config.durationSec)
              cell.samples.push(sample)
              say(`${name} S=${sessionCount} ${scenario} run ${run + 1}/${config.runs}: ${describe(sample)}`)
            } catch (err) {
              fail(name, errorText(err))
              say(`${name} S=${sessionCount} ${scenario}: ${errorText(err)}`)
            }
          }
        }
      }

      for (const [name, sessions] of open) {
        const server = handles.get(name)!
        try {
          const mem = await server.mem()
          results.memAfterLoad.push({ server: name, sessions: sessionCount, rss: mem.rss, heapUsed: mem.heapUsed, serverSessions: mem.sessions })
        } catch {}
        await closeAndSettle(server, sessions)
      }
      writeResults()
    }
  } finally {
    for (const server of handles.values()) await server.stop()
  }
}

async function scalePhase (): Promise<void> {
  if (config.scaleN <= 0) return
  for (const name of config.scaleServers) {
    const cell: ScaleCell = { server: name, n: config.scaleN, samples: [] }
    results.scale.push(cell)
    const runs = name === 'fastify-mcp-sse' ? config.scaleRuns : scaleRunsOthers
    for (let run = 0; run < runs; run++) {
      let server: ServerHandle | undefined
      try {
        server = await startServer(name, logDir)
        await sleep(500)
        const sample = await scaleRun(server, config.scaleN, config.scaleConcurrency)
        if (server.exited !== undefined) throw new Error(`server ${server.exited}`)
        cell.samples.push(sample)
        say(`${name} scale run ${run + 1}/${runs}: ${sample.opened}/${config.scaleN} open in ${(sample.openMs / 1000).toFixed(2)} s` +
          `${sample.failed > 0 ? ` (${sample.failed} failed: ${sample.firstError ?? '?'})` : ''}, ` +
          `${(sample.rssPerSession / 1024).toFixed(1)} KiB RSS and ${(sample.heapPerSession / 1024).toFixed(1)} KiB heap per session; ` +
          `after close: ${sample.afterClose.sessions} sessions, RSS +${(sample.rssRetained / 1048576).toFixed(1)} MiB, heap +${(sample.heapRetained / 1048576).toFixed(1)} MiB`)
      } catch (err) {
        cell.error = errorText(err)
        say(`${name} scale: ${cell.error}`)
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
  say(`${config.mode} mode: ${config.servers.length} servers, sessions ${config.sessions.join(',')}, ${config.scenarios.join(',')}, ${config.runs} × ${config.durationSec} s, ${config.connections} connections; scale N = ${config.scaleN} on ${config.scaleServers.join(',')}`)
  await loadPhase()
  await scalePhase()
  results.complete = true
} catch (err) {
  exitCode = 1
  results.notes.push(`The run stopped early: ${errorText(err)}`)
  say(`stopped early: ${err instanceof Error ? err.stack ?? err.message : String(err)}`)
} finally {
  killAllServers()
  writeResults()
  say(`results: benchmarks/results/${outName}.md and .json (${Math.round((performance.now() - started) / 1000)} s)`)
}
process.exit(exitCode)
