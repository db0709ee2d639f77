// Property-based fuzzing of both routes (the properties live in test/support/fuzz.ts; `npm run
// fuzz` runs them with many more runs). Bounded for CI: FUZZ_RUNS runs per property
// (default 150) and at most FUZZ_TIME_LIMIT_MS per property (default 2000).
import t from 'tap'
import { afterRun, properties, startTarget, type FuzzProperty, type FuzzTarget } from './support/fuzz.js'
import fc from 'fast-check'
import { initialize, post, RawStream, startApp } from './support/helpers.js'

const RUNS = Number(process.env.FUZZ_RUNS ?? 150)
const TIME_LIMIT_MS = Number(process.env.FUZZ_TIME_LIMIT_MS ?? 2000)
const SEED = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED)

t.test('every fuzzed request gets an answer from the error table, and the live session keeps working', async t => {
  const target: FuzzTarget = await startTarget()
  t.teardown(() => target.close())
  const started = Date.now()

  for (const p of properties(target) as FuzzProperty[]) {
    await t.test(p.name, async t => {
      const details = await fc.check(p.property, {
        numRuns: p.name.startsWith('request heads') ? 5 : RUNS,
        interruptAfterTimeLimit: TIME_LIMIT_MS,
        timeout: target.requestTimeoutMs * 2,
        includeErrorInReport: true,
        ...(SEED !== undefined ? { seed: SEED } : {})
      })
      t.notOk(details.failed, details.failed ? fc.defaultReportMessage(details) ?? 'failed' : 'no counterexample')
      t.ok(details.numRuns > 0, `${details.numRuns} runs (seed ${details.seed})`)
    })
  }

  await t.test('after the run: every reply came, no session leaked, no rejection went unhandled', async t => {
    const problems = await afterRun(target)
    t.same(problems, [], 'no problems')
    t.ok(target.stats.echoes > 0, `${target.stats.echoes} echo calls on the live session, all right`)
    t.equal(target.stats.echoFailures.length, 0)
    t.equal(target.app.mcpSessions.size, 1, 'only the live session is left')
    await target.echo()
    t.same(target.stats.echoFailures, [], 'and it still answers')
    // The fuzzer's connections are gone too: once idle keep-alive connections are closed,
    // only the live client's stream carries bytes (its fetch pool may hold an unused spare).
    target.agent.destroy()
    const deadline = Date.now() + 5000
    const busy = (): number => [...target.sockets].filter(s => s.bytesRead > 0).length
    do {
      target.app.server.closeIdleConnections()
      await new Promise(resolve => setTimeout(resolve, 20))
    } while (busy() > 1 && Date.now() < deadline)
    t.equal(busy(), 1, 'one busy server connection left: the live session\'s stream')
    t.comment(`${target.stats.requests} fuzzed requests in ${Date.now() - started} ms; statuses ${JSON.stringify(target.stats.statuses)}`)
  })
})

// The SDK's Protocol silently drops messages its JSONRPCMessageSchema refuses (strict
// objects, object params with a well-formed _meta). Such a message must be refused with a
// 400 here, not accepted with a 202 and never answered.
t.test('every request the plugin accepts with 202 is answered on the stream', async t => {
  const { base } = await startApp(t)
  const s = await RawStream.open(`${base}/sse`)
  t.teardown(() => s.close())
  const url = await s.endpoint(base)
  t.equal((await post(url, initialize(0))).status, 202)
  await s.next('message')
  const cases = [
    { jsonrpc: '2.0', id: 'array-params', method: 'ping', params: [] },
    { jsonrpc: '2.0', id: 'extra-member', method: 'ping', extra: true },
    { jsonrpc: '2.0', id: 'meta-not-object', method: 'ping', params: { _meta: 5 } },
    { jsonrpc: '2.0', id: 'fractional-progress-token', method: 'tools/call', params: { name: 'echo', arguments: { text: 'x' }, _meta: { progressToken: 1.5 } } }
  ]
  for (const message of cases) {
    const res = await post(url, message)
    if (res.status !== 202) {
      // Refusing it up front (400 invalid_request) is as good as answering on the stream.
      t.equal(res.status, 400, `${message.id}: refused up front`)
      continue
    }
    const reply = await s.next('message', 1000).then(ev => JSON.parse(ev.data) as { id?: unknown }, () => undefined)
    t.equal(reply?.id, message.id, `${message.id}: a reply (result or error) arrives after the 202`)
  }
})
