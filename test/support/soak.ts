// Soak: a mixed load held against an in-process app for SOAK_SECONDS (default 120):
// long-lived SDK clients calling echo and countdown (with progress), sessions opening and
// closing (the SDK client, and raw streams left at random points), a raw stream counting
// keep-alive pings (keepAliveInterval 1000), and a trickle of bad requests whose error
// types are counted. Every 10 s it prints lost responses, errors by kind, open sessions,
// RSS and heap. Exits non-zero if a response was lost, an unexpected error came back, or
// memory grew without bound. test/soak.test.ts runs it for 20 s in CI.
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import Fastify from 'fastify'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js'
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js'
import mcpSse from '../../src/index.js'
import { buildExampleServer } from '../../example/mcp-server.js'
import { exposeGc, request, sleep, type HttpRequest } from './fuzz.js'
import { postJson, Stream } from './churn.js'

export interface SoakOptions {
  seconds: number
  /** Seconds between report lines. */
  reportEvery?: number
  keepAliveInterval?: number
  /** Long-lived SDK clients, each with `inFlight` calls going at once. */
  clients?: number
  inFlight?: number
  /** Workers that keep opening and closing sessions. */
  churners?: number
  /** A call with no reply after this long is lost. */
  callTimeoutMs?: number
  log?: (line: string) => void
}

export interface SoakSample {
  second: number
  calls: number
  lost: number
  errors: number
  sessions: number
  rssMB: number
  /** Heap used right after a forced gc. */
  heapMB: number
}

export interface SoakReport {
  seconds: number
  calls: { sent: number, answered: number, lost: number }
  /**
   * Progress of the SDK clients' countdown calls. `late`: arrived after the call's result in
   * the same read, which the SDK client reports as "unknown token" (it dispatches
   * notifications a microtask later than responses); delivered, so not lost.
   */
  progress: { expected: number, received: number, late: number }
  /** Countdown calls on a raw stream, where the wire order itself is checked. */
  ordered: { calls: number, outOfOrder: number }
  sessions: { opened: number, atEnd: number, maxOpen: number }
  pings: { received: number, expectedAtLeast: number }
  /** Errors that must not happen (a wrong echo, a failed call, an unexpected status). */
  errors: Record<string, number>
  /** The deliberate bad requests, by the data.type they came back with. */
  badRequests: Record<string, number>
  samples: SoakSample[]
  /** Countdown calls whose progress did not all arrive: which values did. */
  progressMisses: string[]
  unhandledRejections: string[]
  problems: string[]
}

function bump (m: Record<string, number>, key: string): void {
  m[key] = (m[key] ?? 0) + 1
}

const text = (r: CallToolResult): string | undefined => {
  const first = r.content[0]
  return first !== undefined && first.type === 'text' ? first.text : undefined
}

export async function runSoak (opts: SoakOptions): Promise<SoakReport> {
  const seconds = opts.seconds
  const reportEvery = opts.reportEvery ?? 10
  const keepAliveInterval = opts.keepAliveInterval ?? 1000
  const clientsCount = opts.clients ?? 4
  const inFlight = opts.inFlight ?? 2
  const churners = opts.churners ?? 2
  const callTimeoutMs = opts.callTimeoutMs ?? 20_000
  const log = opts.log ?? (() => {})
  const gc = exposeGc()

  const report: SoakReport = {
    seconds,
    calls: { sent: 0, answered: 0, lost: 0 },
    progress: { expected: 0, received: 0, late: 0 },
    ordered: { calls: 0, outOfOrder: 0 },
    sessions: { opened: 0, atEnd: -1, maxOpen: 0 },
    pings: { received: 0, expectedAtLeast: 0 },
    errors: {},
    badRequests: {},
    samples: [],
    progressMisses: [],
    unhandledRejections: [],
    problems: []
  }
  const onRejection = (reason: unknown): void => { report.unhandledRejections.push(String((reason as Error)?.stack ?? reason)) }
  process.on('unhandledRejection', onRejection)

  const app = Fastify({ forceCloseConnections: true })
  await app.register(mcpSse, {
    server: () => { report.sessions.opened++; return buildExampleServer() },
    keepAliveInterval,
    maxMessageSize: '256kb'
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as AddressInfo).port
  const base = `http://127.0.0.1:${port}`
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 })

  const started = Date.now()
  const deadline = started + seconds * 1000
  const running = (): boolean => Date.now() < deadline
  /** Calls whose reply has not come yet (their count at the end is lost too). */
  let pending = 0
  let callNo = 0

  /** One tool call, accounted: answered, lost (timed out) or failed (an error by kind). */
  async function call (client: Client, kind: 'echo' | 'countdown'): Promise<void> {
    const n = ++callNo
    report.calls.sent++
    pending++
    try {
      if (kind === 'echo') {
        const payload = `soak-${n}-` + 'é'.repeat(n % 7 === 0 ? 20_000 : n % 50)
        const r = await client.callTool({ name: 'echo', arguments: { text: payload } }, undefined, { timeout: callTimeoutMs }) as CallToolResult
        report.calls.answered++
        if (text(r) !== payload) bump(report.errors, 'echo_mismatch')
      } else {
        const from = 2 + (n % 5)
        let progress = 0
        const seen: number[] = []
        report.progress.expected += from
        const r = await client.callTool({ name: 'countdown', arguments: { from, intervalMs: 5 + (n % 3) * 5 } }, undefined, {
          timeout: callTimeoutMs,
          onprogress: p => { progress++; seen.push(p.progress); report.progress.received++ }
        }) as CallToolResult
        report.calls.answered++
        if (text(r) !== `Counted down from ${from}`) bump(report.errors, 'countdown_mismatch')
        if (progress !== from && report.progressMisses.length < 5) report.progressMisses.push(`call ${n}: countdown from ${from} got progress ${JSON.stringify(seen)} before its result`)
      }
    } catch (err) {
      const e = err as { code?: unknown, message?: string }
      if (e.code === -32001 || /timed out/i.test(String(e.message))) report.calls.lost++
      else bump(report.errors, `call_failed: ${String(e.message).slice(0, 80)}`)
    } finally {
      pending--
    }
  }

  async function connect (): Promise<Client> {
    const client = new Client({ name: 'soak', version: '1.0.0' })
    // The SDK reports what it could not place (a progress for a finished request, say) here.
    client.onerror = err => {
      if (/progress notification for an unknown token/.test(err.message)) report.progress.late++
      else bump(report.errors, `client_error: ${String(err.message).slice(0, 60)}`)
    }
    await client.connect(new SSEClientTransport(new URL(`${base}/sse`)))
    return client
  }

  // Long-lived clients: each keeps `inFlight` calls going until the end.
  const longLived = await Promise.all(Array.from({ length: clientsCount }, connect))
  const callers = longLived.flatMap((client, c) => Array.from({ length: inFlight }, async (_, k) => {
    let i = c + k
    while (running()) {
      await call(client, i++ % 3 === 0 ? 'countdown' : 'echo')
      await sleep(2 + (i % 8))
    }
  }))

  // Session churn: SDK clients that connect, call, and leave; raw streams left at any point.
  const churn = Array.from({ length: churners }, async (_, w) => {
    let i = w
    while (running()) {
      try {
        if (i++ % 2 === 0) {
          const client = await connect()
          await call(client, 'echo')
          if (i % 4 === 0) await call(client, 'countdown')
          await client.close()
        } else {
          await new Promise<void>((resolve, reject) => {
            const req = http.get({ host: '127.0.0.1', port, path: '/sse', agent: false })
            req.on('error', () => resolve())
            req.on('response', res => {
              res.on('error', () => {})
              if (res.statusCode !== 200) { bump(report.errors, `sse_status_${String(res.statusCode)}`); req.destroy(); resolve(); return }
              setTimeout(() => { req.destroy(); resolve() }, i % 5 === 0 ? 0 : 20 + (i % 200))
            })
            setTimeout(() => { req.destroy(); reject(new Error('no stream head')) }, callTimeoutMs).unref()
          })
        }
      } catch (err) {
        bump(report.errors, `churn_failed: ${String((err as Error).message).slice(0, 80)}`)
      }
      await sleep(20)
    }
  })

  // A raw session whose countdowns check the wire order: every progress, in order, then the result.
  const orderChecker = (async () => {
    const s = await Stream.open(port, callTimeoutMs)
    try {
      const path = await s.endpoint(callTimeoutMs)
      let n = 0
      while (running()) {
        const id = ++n
        const from = 1 + (id % 6)
        report.calls.sent++
        pending++
        try {
          await postJson(port, agent, path, { jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'countdown', arguments: { from, intervalMs: id % 3 }, _meta: { progressToken: `o${id}` } } }, callTimeoutMs)
          const isResult = (e: { event: string, data: string }): boolean => e.event === 'message' && (JSON.parse(e.data) as { id?: unknown }).id === id
          try {
            await s.until(() => s.events.some(isResult), callTimeoutMs, `the result of ${id}`)
          } catch {
            report.calls.lost++
            continue
          }
          report.calls.answered++
          report.ordered.calls++
          const mine = s.events.splice(0).filter(e => e.event === 'message').map(e => JSON.parse(e.data) as { id?: unknown, method?: string, params?: { progressToken?: unknown, progress?: number } })
            .filter(m => m.id === id || m.params?.progressToken === `o${id}`)
          const expected = [...Array.from({ length: from }, (_, i) => `p${i}`), 'result']
          const got = mine.map(m => m.id === id ? 'result' : `p${String(m.params?.progress)}`)
          if (JSON.stringify(got) !== JSON.stringify(expected)) {
            report.ordered.outOfOrder++
            if (report.progressMisses.length < 5) report.progressMisses.push(`raw call ${id}: wire order ${got.join(',')}`)
          }
        } finally {
          pending--
        }
        await sleep(5)
      }
    } catch (err) {
      bump(report.errors, `order_checker_failed: ${String((err as Error).message).slice(0, 80)}`)
    } finally {
      s.destroy()
    }
  })()

  // A raw stream that only counts keep-alive pings.
  let pingStreamOpenedAt = 0
  const pingReq = http.get({ host: '127.0.0.1', port, path: '/sse', agent: false })
  pingReq.on('error', () => {})
  pingReq.on('response', res => {
    pingStreamOpenedAt = Date.now()
    res.setEncoding('utf8')
    let tail = ''
    res.on('data', (chunk: string) => {
      const text = tail + chunk
      report.pings.received += text.split('event: ping\n').length - 1
      // Keep a partial "event: ping" line for the next chunk, never a whole one.
      const cut = text.lastIndexOf('\n')
      tail = text.slice(cut + 1)
    })
    res.on('error', () => {})
  })

  // Bad requests, each with the error type it must come back with.
  const bad: Array<{ expect: string, r: () => HttpRequest }> = [
    { expect: 'parse_error', r: () => ({ method: 'POST', path: '/messages?sessionId=x', headers: { 'content-type': 'application/json' }, body: '{"jsonrpc":' }) },
    { expect: 'session_not_found', r: () => ({ method: 'POST', path: '/messages?sessionId=00000000-0000-4000-8000-000000000000', headers: { 'content-type': 'application/json' }, body: '{"jsonrpc":"2.0","id":1,"method":"ping"}' }) },
    { expect: 'unsupported_media_type', r: () => ({ method: 'POST', path: '/messages?sessionId=x', headers: { 'content-type': 'text/plain' }, body: 'hello' }) },
    { expect: 'invalid_request', r: () => ({ method: 'POST', path: '/messages?sessionId=x', headers: { 'content-type': 'application/json' }, body: '{"jsonrpc":"1.0","id":1,"method":"ping"}' }) },
    { expect: 'message_too_large', r: () => ({ method: 'POST', path: '/messages?sessionId=x', headers: { 'content-type': 'application/json' }, body: 'x'.repeat(300 * 1024), fresh: true }) }
  ]
  const sprinkler = (async () => {
    let i = 0
    while (running()) {
      const b = bad[i++ % bad.length] as typeof bad[number]
      try {
        const a = await request(port, agent, b.r(), callTimeoutMs)
        const type = (a.body as { error?: { data?: { type?: string } } } | undefined)?.error?.data?.type ?? `status_${a.status}`
        bump(report.badRequests, type)
        if (type !== b.expect) bump(report.errors, `bad_request_${b.expect}_answered_${type}`)
      } catch (err) {
        bump(report.errors, `bad_request_failed: ${String((err as Error).message).slice(0, 80)}`)
      }
      await sleep(100)
    }
  })()

  // Sampling: RSS every second, heap after gc and a report line every `reportEvery` s.
  const rss: Array<{ second: number, mb: number }> = []
  const sampler = (async () => {
    let next = 1
    while (running()) {
      await sleep(Math.max(0, started + next * 1000 - Date.now()))
      const second = next++
      rss.push({ second, mb: process.memoryUsage().rss / 1048576 })
      report.sessions.maxOpen = Math.max(report.sessions.maxOpen, app.mcpSessions.size)
      if (second % reportEvery === 0 || !running()) {
        gc()
        const sample: SoakSample = {
          second,
          calls: report.calls.sent,
          lost: report.calls.lost,
          errors: Object.values(report.errors).reduce((a, b) => a + b, 0),
          sessions: app.mcpSessions.size,
          rssMB: Math.round(process.memoryUsage().rss / 1048576),
          heapMB: Math.round(process.memoryUsage().heapUsed / 1048576 * 10) / 10
        }
        report.samples.push(sample)
        log(`  ${String(second).padStart(4)} s  calls ${String(sample.calls).padStart(7)}  lost ${sample.lost}  errors ${sample.errors}${sample.errors > 0 ? ' ' + JSON.stringify(report.errors) : ''}  sessions ${String(sample.sessions).padStart(3)}  rss ${sample.rssMB} MB  heap ${sample.heapMB} MB  bad requests ${JSON.stringify(report.badRequests)}`)
      }
    }
  })()

  await Promise.all([...callers, ...churn, orderChecker, sprinkler, sampler])
  // Nothing new starts now; calls still in flight get the usual timeout to finish.
  const drainDeadline = Date.now() + callTimeoutMs + 2000
  while (pending > 0 && Date.now() < drainDeadline) await sleep(20)
  report.calls.lost += pending
  report.pings.expectedAtLeast = Math.max(0, Math.floor((Date.now() - pingStreamOpenedAt) / keepAliveInterval) - 2)
  pingReq.destroy()
  await Promise.all(longLived.map(c => c.close()))
  const closeDeadline = Date.now() + 10_000
  while (app.mcpSessions.size > 0 && Date.now() < closeDeadline) await sleep(20)
  report.sessions.atEnd = app.mcpSessions.size
  agent.destroy()
  await app.close()
  process.off('unhandledRejection', onRejection)
  if (report.unhandledRejections.length > 0) bump(report.errors, 'unhandled_rejection')

  // Verdict.
  const p = report.problems
  if (report.calls.lost > 0) p.push(`${report.calls.lost} responses lost`)
  if (Object.keys(report.errors).length > 0) p.push(`unexpected errors: ${JSON.stringify(report.errors)}`)
  if (report.progress.received + report.progress.late !== report.progress.expected) p.push(`${report.progress.expected} progress notifications expected, ${report.progress.received + report.progress.late} received`)
  if (report.ordered.outOfOrder > 0) p.push(`${report.ordered.outOfOrder} of ${report.ordered.calls} raw countdowns out of order on the wire`)
  if (report.sessions.atEnd !== 0) p.push(`${report.sessions.atEnd} sessions still open after every client left`)
  if (report.pings.received < report.pings.expectedAtLeast) p.push(`${report.pings.received} keep-alive pings, expected at least ${report.pings.expectedAtLeast}`)
  p.push(...memoryProblems(rss, report.samples))
  return report
}

/**
 * "Grew without bound": after a warm-up (the first quarter, at least 5 s), RSS must stay
 * under 1.5 x its warm level + 64 MB, and the heap after gc must not keep climbing (a
 * least-squares slope over the report samples above 10 MB/min with 32 MB gained overall).
 */
export function memoryProblems (rss: Array<{ second: number, mb: number }>, samples: SoakSample[]): string[] {
  const problems: string[] = []
  if (rss.length < 4) return problems
  const warmEnd = Math.max(5, Math.floor((rss[rss.length - 1]?.second ?? 0) / 4))
  const warm = rss.filter(s => s.second <= warmEnd)
  const after = rss.filter(s => s.second > warmEnd)
  const warmLevel = Math.max(...warm.map(s => s.mb))
  const peak = Math.max(...after.map(s => s.mb))
  if (after.length > 0 && peak > warmLevel * 1.5 + 64) problems.push(`RSS rose from ${warmLevel.toFixed(0)} MB (warm) to ${peak.toFixed(0)} MB`)
  const h = samples.filter(s => s.second > warmEnd)
  if (h.length >= 3) {
    const n = h.length
    const mx = h.reduce((a, s) => a + s.second, 0) / n
    const my = h.reduce((a, s) => a + s.heapMB, 0) / n
    const slope = h.reduce((a, s) => a + (s.second - mx) * (s.heapMB - my), 0) / Math.max(1e-9, h.reduce((a, s) => a + (s.second - mx) ** 2, 0))
    const gained = (h[n - 1] as SoakSample).heapMB - (h[0] as SoakSample).heapMB
    if (slope * 60 > 10 && gained > 32) problems.push(`heap after gc keeps climbing: ${(slope * 60).toFixed(1)} MB/min, ${gained.toFixed(1)} MB gained`)
  }
  return problems
}

/** The command-line run (`npm run soak`): a report on stdout, exit code 1 on any problem. */
export async function main (): Promise<void> {
  const seconds = Number(process.env.SOAK_SECONDS ?? 120)
  const log = (line: string): void => { process.stdout.write(line + '\n') }
  log(`soak: ${seconds} s of mixed load, keepAliveInterval 1000 ms`)
  const r = await runSoak({ seconds, log })
  log('')
  log(`duration:          ${r.seconds} s`)
  log(`calls:             ${r.calls.sent} sent, ${r.calls.answered} answered, ${r.calls.lost} lost`)
  log(`progress:          ${r.progress.received + r.progress.late}/${r.progress.expected} notifications (${r.progress.late} after their result in the same read: the SDK client calls them unknown)`)
  log(`wire order:        ${r.ordered.calls} raw countdowns, ${r.ordered.outOfOrder} out of order`)
  log(`sessions:          ${r.sessions.opened} opened, at most ${r.sessions.maxOpen} at once, ${r.sessions.atEnd} open at the end`)
  log(`keep-alive pings:  ${r.pings.received} on the watching stream (at least ${r.pings.expectedAtLeast} expected)`)
  log(`bad requests:      ${JSON.stringify(r.badRequests)}`)
  log(`unexpected errors: ${JSON.stringify(r.errors)}`)
  log(`rss (MB) / heap after gc (MB) every report: ${r.samples.map(s => `${s.second}s ${s.rssMB}/${s.heapMB}`).join(', ')}`)
  for (const m of r.progressMisses) log(`progress miss: ${m}`)
  for (const p of r.problems) log(`PROBLEM: ${p}`)
  log(r.problems.length > 0 ? 'soak: FAILED' : 'soak: passed')
  process.exitCode = r.problems.length > 0 ? 1 : 0
}

