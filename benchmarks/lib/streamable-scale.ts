// The Streamable HTTP idle-session scenario: N sessions initialized (initialize, then
// notifications/initialized) against a fresh server process and left idle, with no GET
// stream open; what each costs in the server's memory, how long initializing them takes,
// and what comes back once every one is ended with DELETE. The HTTP+SSE counterpart is
// scale.ts (where a session is an open stream).
import { closeAndMeasure, type ScaleSample } from './scale.js'
import type { ServerHandle } from './servers.js'
import { pool } from './sse.js'
import { deleteSession, initializeSession, type StreamableSession } from './streamable.js'

export async function streamableScaleRun (server: ServerHandle, n: number, concurrency: number): Promise<ScaleSample> {
  const base = await server.mem()
  const sessions: StreamableSession[] = []
  let failed = 0
  let firstError: string | undefined
  const t0 = performance.now()
  try {
    await pool(n, concurrency, async () => {
      try {
        sessions.push(await initializeSession(server.port, true))
      } catch (err) {
        failed++
        firstError ??= err instanceof Error ? err.message : String(err)
      }
    })
    const openMs = performance.now() - t0
    const opened = sessions.length
    const open = await server.mem()
    return await closeAndMeasure(server, { requested: n, opened, failed, firstError, concurrency, openMs, base, open }, async () => {
      const all = sessions.splice(0)
      await pool(all.length, concurrency, async i => { await deleteSession(server.port, all[i]!) })
    })
  } finally {
    // Whatever is left (a failure half-way) is ended too, so the next server starts clean.
    await pool(sessions.length, concurrency, async i => { await deleteSession(server.port, sessions[i]!) }).catch(() => {})
  }
}
