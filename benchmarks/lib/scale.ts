// The connection-scale scenario: N idle SSE sessions against a fresh server process; what
// each costs in the server's memory, how long opening them takes, and what comes back once
// they are closed.
import type { MemReport } from '../servers/common.js'
import type { ServerHandle } from './servers.js'
import { openSse, pool, type SseConnection } from './sse.js'

export interface ScaleSample {
  requested: number
  /** Streams that got their endpoint event. */
  opened: number
  /** Sessions the server counted with them open. */
  serverSessions: number
  failed: number
  firstError: string | undefined
  concurrency: number
  /** Wall time to open them all (endpoint event received), ms. */
  openMs: number
  /** From closing the client sockets to the server counting no session, ms (NaN if never). */
  closeMs: number
  base: MemReport
  open: MemReport
  afterClose: MemReport
  rssPerSession: number
  heapPerSession: number
  /** RSS and heap above the baseline once every session is closed (and a GC ran). */
  rssRetained: number
  heapRetained: number
}

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

/** What a scale run measured before it closed its sessions. */
export interface OpenedSessions {
  requested: number
  opened: number
  failed: number
  firstError: string | undefined
  concurrency: number
  openMs: number
  base: MemReport
  open: MemReport
}

/**
 * The rest of a scale sample, for either transport: once `close` has ended every session,
 * how long until the server counts none (polled every 250 ms, 30 s at most), then the
 * memory per session and what stays after close.
 */
export async function closeAndMeasure (server: ServerHandle, o: OpenedSessions, close: () => Promise<void>): Promise<ScaleSample> {
  const t1 = performance.now()
  await close()
  let closeMs = NaN
  for (let waited = 0; waited < 30_000; waited += 250) {
    if ((await server.mem()).sessions === 0) {
      closeMs = performance.now() - t1
      break
    }
    await sleep(250)
  }
  await sleep(500)
  const afterClose = await server.mem()
  const perSession = o.open.sessions > 0 ? o.open.sessions : o.opened
  return {
    ...o,
    serverSessions: o.open.sessions,
    closeMs,
    afterClose,
    rssPerSession: perSession > 0 ? (o.open.rss - o.base.rss) / perSession : NaN,
    heapPerSession: perSession > 0 ? (o.open.heapUsed - o.base.heapUsed) / perSession : NaN,
    rssRetained: afterClose.rss - o.base.rss,
    heapRetained: afterClose.heapUsed - o.base.heapUsed
  }
}

export async function scaleRun (server: ServerHandle, n: number, concurrency: number): Promise<ScaleSample> {
  const base = await server.mem()
  const conns: SseConnection[] = []
  let failed = 0
  let firstError: string | undefined
  const t0 = performance.now()
  try {
    await pool(n, concurrency, async () => {
      try {
        conns.push(await openSse(server.port, '/sse', () => {}))
      } catch (err) {
        failed++
        firstError ??= err instanceof Error ? err.message : String(err)
      }
    })
    const openMs = performance.now() - t0
    const opened = conns.length
    const open = await server.mem()
    return await closeAndMeasure(server, { requested: n, opened, failed, firstError, concurrency, openMs, base, open }, async () => {
      for (const c of conns) c.close()
      conns.length = 0
    })
  } finally {
    for (const c of conns) c.close()
  }
}
