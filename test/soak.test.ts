// A short soak in CI (test/support/soak.ts holds the load; `npm run soak` runs it for 2 minutes):
// mixed load for SOAK_SECONDS (default 20) with keep-alive pings every second, and not one
// response may be lost.
import t from 'tap'
import { runSoak } from './support/soak.js'

const SECONDS = Number(process.env.SOAK_SECONDS ?? 20)

t.test(`${SECONDS} s of mixed load lose no response`, async t => {
  const r = await runSoak({ seconds: SECONDS, log: line => t.comment(line.trim()) })
  t.ok(r.calls.sent > 0, `${r.calls.sent} calls sent`)
  t.equal(r.calls.lost, 0, 'no response lost')
  t.equal(r.calls.answered, r.calls.sent, 'every call answered')
  t.same(r.errors, {}, 'no unexpected error')
  t.equal(r.progress.received + r.progress.late, r.progress.expected, `all ${r.progress.expected} progress notifications arrived`)
  t.equal(r.ordered.outOfOrder, 0, `${r.ordered.calls} raw countdowns in order on the wire`)
  t.ok(r.sessions.opened > 10, `${r.sessions.opened} sessions opened and closed`)
  t.equal(r.sessions.atEnd, 0, 'none left open')
  t.ok(r.pings.received >= r.pings.expectedAtLeast, `${r.pings.received} keep-alive pings`)
  for (const type of ['parse_error', 'session_not_found', 'unsupported_media_type', 'invalid_request', 'message_too_large']) {
    t.ok((r.badRequests[type] ?? 0) > 0, `bad requests answered ${type}`)
  }
  t.same(r.unhandledRejections, [], 'no unhandled rejection')
  t.same(r.problems, [], 'no problem in the report (lost responses, errors, memory growth)')
})
