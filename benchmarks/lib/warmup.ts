// Warm-up before a server's first measured runs: a fixed number of requests of each of its
// scenarios, sent as fast as the server answers them (50 at a time), not reported. A
// count rather than a time, because what brings a fresh process to speed is how often its
// code has run (JIT): the SDK's paths need a few thousand requests, which a slow server
// takes seconds to answer and the bare route a fraction of one. (autocannon counts whole
// seconds, so it is not used here.)
import { Agent, request } from 'node:http'

export interface WarmupTarget { path: string, headers: Record<string, string> }

export interface WarmupResult { sent: number, ok: number, failed: number, ms: number }

/** POSTs `count` requests round-robin over `targets`, `concurrency` at a time; answers are read and dropped. */
export async function warmUp (port: number, targets: WarmupTarget[], body: (id: number) => string, count: number, concurrency = 50): Promise<WarmupResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency })
  const result: WarmupResult = { sent: 0, ok: 0, failed: 0, ms: 0 }
  const t0 = performance.now()
  let next = 0
  const one = (target: WarmupTarget, payload: string): Promise<boolean> => new Promise(resolve => {
    const req = request({
      host: '127.0.0.1',
      port,
      path: target.path,
      method: 'POST',
      agent,
      timeout: 15_000,
      headers: { ...target.headers, 'content-length': String(Buffer.byteLength(payload)) }
    }, res => {
      res.resume()
      res.on('end', () => resolve((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300))
      res.on('error', () => resolve(false))
    })
    req.on('timeout', () => req.destroy())
    req.on('error', () => resolve(false))
    req.end(payload)
  })
  const worker = async (): Promise<void> => {
    while (next < count) {
      const i = next++
      result.sent++
      if (await one(targets[i % targets.length]!, body(2_000_000_000 + i))) result.ok++
      else result.failed++
    }
  }
  try {
    await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
  } finally {
    agent.destroy()
  }
  result.ms = performance.now() - t0
  return result
}
