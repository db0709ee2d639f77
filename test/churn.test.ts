// Session churn, CI-sized (the cycles live in test/support/churn.ts; `npm run churn` runs 10,000):
// sessions opened and closed with the client leaving at every point, then nothing may be
// left behind. CHURN_CYCLES overrides the count.
import t from 'tap'
import { churnProblems, KINDS, runChurn } from './support/churn.js'

const CYCLES = Number(process.env.CHURN_CYCLES ?? 1000)

t.test(`${CYCLES} churn cycles leave no session, timer, listener, server or rejection behind`, async t => {
  const r = await runChurn({ cycles: CYCLES, concurrency: 8, timeLimitMs: 35_000, warmup: 50 })
  t.comment(`${r.cycles} cycles in ${r.ms} ms; heap after gc ${(r.heap.startBytes / 1048576).toFixed(1)} -> ${(r.heap.endBytes / 1048576).toFixed(1)} MB`)

  t.ok(r.cycles >= Math.min(CYCLES, 200), `${r.cycles} cycles ran within the time limit`)
  for (const kind of KINDS) t.ok((r.byKind[kind] ?? 0) > 0, `${kind}: ${r.byKind[kind] ?? 0} cycles`)
  t.same(r.errors, [], 'every cycle did what it should')
  t.equal(r.sessionsAtEnd, 0, 'no session left open')
  t.equal(r.serversClosed, r.sessionsCreated, `every MCP server made was closed (${r.sessionsCreated})`)
  t.equal(r.keepAliveTimers.cleared, r.keepAliveTimers.created, `every keep-alive timer was cleared (${r.keepAliveTimers.created})`)
  t.ok(r.slowCalls.cycles > 0, `${r.slowCalls.cycles} sessions ended during a slow call`)
  t.equal(r.slowCalls.started, r.slowCalls.cycles, 'each of those calls had started')
  t.equal(r.slowCalls.aborted, r.slowCalls.started, 'and each was aborted (extra.signal) when its session closed')
  t.equal(r.postsAfterClose.notFound, r.postsAfterClose.sent, 'POSTs to closed sessions answer 404')
  t.equal(r.responseListeners.withDrain, 0, 'no ended response keeps a drain listener')
  t.ok(r.responseListeners.maxClose <= r.responseListeners.baselineClose, 'nor more close listeners than a plain response')
  t.equal(r.reachable.servers, 0, `none of the ${r.reachable.of} MCP servers is reachable after gc`)
  t.equal(r.reachable.responses, 0, 'nor any SSE response')
  t.ok((r.activeResources.after.Timeout ?? 0) <= (r.activeResources.before.Timeout ?? 0), `no ref'd timer left (${JSON.stringify(r.activeResources.after)})`)
  t.equal(r.connectionsAtEnd, 0, 'no busy server connection left')
  t.same(r.unhandledRejections, [], 'no unhandled rejection')
  t.same(r.warnings, [], 'no process warning (MaxListenersExceeded and the like)')
  // Generous for a shared machine: a leaked session costs far more than 16 KB per cycle.
  t.same(churnProblems(r, { maxHeapGrowthBytes: 16 * 1024 * 1024 }), [], 'no problem in the report')
})
