// The two ends of a relayed Streamable HTTP answer, each on its own: RelaySink (the
// owner writes to it as to a socket; it emits frames) and RelayedAnswer (the receiving
// instance writes frames to a real client response). The whole path over Redis is in
// streamable-cluster.test.ts; this covers the edges that are hard to reach through it.
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import { RelayedAnswer, RelaySink, type AnswerFrame } from '../src/session/relay.js'
import { FST_ERR_MCP_SSE_CONFLICT, McpRelayedError } from '../src/errors.js'

function sink (received: boolean | 'reject' = true): { sink: RelaySink, frames: AnswerFrame[], finished: () => number } {
  const frames: AnswerFrame[] = []
  let finished = 0
  const s = new RelaySink(frame => {
    frames.push(frame)
    return received === 'reject' ? Promise.reject(new Error('down')) : Promise.resolve(received)
  }, () => { finished++ })
  return { sink: s, frames, finished: () => finished }
}

const tick = async (): Promise<void> => { await new Promise(resolve => setImmediate(resolve)) }

t.test('RelaySink: the head travels with the first part; nothing after the end', async t => {
  const { sink: s, frames, finished } = sink()
  s.writeHead(200, { 'content-type': 'text/event-stream' })
  s.writeHead(500, {})
  t.ok(s.headersSent)
  s.flushHeaders()
  s.flushHeaders()
  t.equal(s.write('a'), true)
  s.end('b')
  s.write('c')
  s.end()
  s.destroy()
  s.fail(new Error('late'))
  t.same(frames, [{ s: 200, h: { 'content-type': 'text/event-stream' } }, { d: 'a' }, { d: 'b', e: 1 }])
  t.equal(finished(), 1)
  t.ok(s.writableEnded)
  t.equal(await s.probe(), false, 'an ended sink has nobody to probe')
})

t.test('RelaySink: end without data, destroy, and errors before or after the head', async t => {
  const a = sink()
  a.sink.writeHead(202, {})
  a.sink.end()
  t.same(a.frames, [{ s: 202, h: {}, e: 1 }])

  const b = sink()
  b.sink.destroy()
  t.same(b.frames, [{ x: 1 }])
  t.ok(b.sink.destroyed)

  const c = sink()
  c.sink.fail(new FST_ERR_MCP_SSE_CONFLICT('busy'))
  t.same(c.frames, [{ f: { code: 'FST_ERR_MCP_SSE_CONFLICT', message: 'Conflict: busy', status: 409 } }])

  const d = sink()
  d.sink.fail('not an error object')
  t.same(d.frames, [{ f: { code: undefined, message: 'Internal error.', status: 500 } }], 'anything thrown becomes a 500')

  const e = sink()
  e.sink.writeHead(200, {})
  e.sink.write('x')
  e.sink.fail(new Error('mid-stream'))
  t.same(e.frames.at(-1), { x: 1 }, 'after the head an error can only cut the response off')
})

t.test('RelaySink: closes like a socket when nobody receives its frames, or the link fails', async t => {
  for (const outcome of [false, 'reject'] as const) {
    const { sink: s, finished } = sink(outcome)
    let closed = 0
    s.on('close', () => { closed++ })
    s.writeHead(200, {})
    s.write('x')
    await tick()
    t.equal(closed, 1, `close once (${String(outcome)})`)
    t.ok(s.destroyed)
    t.equal(finished(), 1)
    s.gone()
    t.equal(closed, 1, 'gone twice is once')
  }
  const probed = sink(false)
  t.equal(await probed.sink.probe(), false, 'a probe nobody receives closes it')
  t.ok(probed.sink.destroyed)
  const failing = sink('reject')
  t.equal(await failing.sink.probe(), false)
  const alive = sink(true)
  t.equal(await alive.sink.probe(), true)
  t.same(alive.frames, [{ d: ':\n\n' }], 'the probe is an SSE comment')
  const cut = sink()
  cut.sink.gone(true)
  t.equal(cut.sink.cutOff, true, 'cut off for not reading')
})

/** A real client response for a RelayedAnswer to write to, and what the client read. */
async function client (t: Test, onRequest: (res: http.ServerResponse) => void): Promise<{ read: Promise<{ status: number, headers: http.IncomingHttpHeaders, body: string, aborted: boolean }>, destroy: () => void }> {
  const server = http.createServer((_req, res) => { onRequest(res) })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.closeAllConnections(); server.close() })
  let req!: http.ClientRequest
  const read = new Promise<{ status: number, headers: http.IncomingHttpHeaders, body: string, aborted: boolean }>(resolve => {
    req = http.get(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`, res => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('close', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, aborted: !res.complete }))
    })
    req.on('error', () => resolve({ status: 0, headers: {}, body: '', aborted: true }))
  })
  return { read, destroy: () => req.destroy() }
}

t.test('RelayedAnswer: frames that came before the pipe are written in order, with the route\'s headers', async t => {
  const gone: boolean[] = []
  let finished = 0
  const answer = new RelayedAnswer(1, 'owner', cutOff => { gone.push(cutOff) }, () => { finished++ })
  answer.receive({ s: 200, h: { 'content-type': 'text/event-stream' } })
  answer.receive({ d: 'event: message\ndata: 1\n\n' })
  const c = await client(t, res => {
    void answer.pipe({ hijack: () => res, headers: () => ({ 'access-control-allow-origin': '*' }), maxBufferedBytes: 1 << 20 })
    answer.receive({ d: 'event: message\ndata: 2\n\n', e: 1 })
    answer.receive({ d: 'ignored' })
  })
  const got = await c.read
  t.equal(got.status, 200)
  t.equal(got.headers['access-control-allow-origin'], '*')
  t.equal(got.body, 'event: message\ndata: 1\n\nevent: message\ndata: 2\n\n')
  t.same(gone, [])
  t.equal(finished, 1)
})

t.test('RelayedAnswer: an error frame rejects the pipe with the owner\'s error; a destroy frame cuts the client off', async t => {
  const failed = new RelayedAnswer(2, 'owner', () => {}, () => {})
  failed.receive({ f: { code: 'FST_ERR_MCP_SSE_CONFLICT', message: 'Conflict: busy', status: 409 } })
  const err = await failed.pipe({ hijack: () => { throw new Error('not hijacked') }, headers: () => ({}), maxBufferedBytes: 100 }).catch((e: unknown) => e)
  t.ok(err instanceof McpRelayedError)
  t.match(err, { code: 'FST_ERR_MCP_SSE_CONFLICT', statusCode: 409, message: 'Conflict: busy' })

  const cut = new RelayedAnswer(3, 'owner', () => {}, () => {})
  const c = await client(t, res => {
    void cut.pipe({ hijack: () => res, headers: () => ({}), maxBufferedBytes: 100 })
    cut.receive({ s: 200, h: { 'content-type': 'text/event-stream' }, d: 'data: 1\n\n' })
    setTimeout(() => { cut.receive({ x: 1 }) }, 20)
  })
  const got = await c.read
  t.equal(got.aborted, true, 'the response was cut off, not ended')
})

t.test('RelayedAnswer: a client that stops reading is cut off past maxBufferedBytes and the owner told', async t => {
  const gone: boolean[] = []
  const answer = new RelayedAnswer(4, 'owner', cutOff => { gone.push(cutOff) }, () => {})
  let piped: Promise<void> | undefined
  const c = await client(t, res => {
    piped = answer.pipe({ hijack: () => res, headers: () => ({}), maxBufferedBytes: 64 * 1024 })
    answer.receive({ s: 200, h: { 'content-type': 'text/event-stream' } })
    const chunk = `data: ${'x'.repeat(64 * 1024)}\n\n`
    // The client reads nothing: the socket's buffers fill, then the response's.
    for (let i = 0; i < 200 && gone.length === 0; i++) answer.receive({ d: chunk })
  })
  await until(() => gone.length > 0)
  t.same(gone, [true], 'cut off, and the owner told so once')
  await piped
  c.destroy()
})

t.test('RelayedAnswer: the owner gone or the link lost, before or after the head; a client that leaves', async t => {
  const before = new RelayedAnswer(5, 'owner', () => {}, () => {})
  before.ownerGone()
  await t.rejects(before.pipe({ hijack: () => { throw new Error('no') }, headers: () => ({}), maxBufferedBytes: 100 }), { code: 'FST_ERR_MCP_SSE_SESSION_NOT_FOUND' })
  const lost = new RelayedAnswer(6, 'owner', () => {}, () => {})
  lost.linkLost()
  await t.rejects(lost.pipe({ hijack: () => { throw new Error('no') }, headers: () => ({}), maxBufferedBytes: 100 }), { code: 'FST_ERR_MCP_SSE_REDIS_UNAVAILABLE', statusCode: 503 })

  const streaming = new RelayedAnswer(7, 'owner', () => {}, () => {})
  const c = await client(t, res => {
    void streaming.pipe({ hijack: () => res, headers: () => ({}), maxBufferedBytes: 100 })
    streaming.receive({ s: 200, h: { 'content-type': 'application/json' } })
    setTimeout(() => { streaming.linkLost() }, 20)
  })
  const got = await c.read
  t.equal(got.status, 200)
  t.equal(got.aborted, false, 'a begun answer is ended')

  const gone: boolean[] = []
  const leaving = new RelayedAnswer(8, 'owner', cutOff => { gone.push(cutOff) }, () => {})
  const l = await client(t, res => {
    void leaving.pipe({ hijack: () => res, headers: () => ({}), maxBufferedBytes: 1 << 20 })
    leaving.receive({ s: 200, h: { 'content-type': 'text/event-stream' } })
    setTimeout(() => { l.destroy() }, 20)
  })
  await l.read
  await until(() => gone.length > 0)
  t.same(gone, [false], 'the owner hears the client left')
})

t.test('RelayedAnswer: a client that leaves before the first frame is noticed: the owner is told, the route\'s reply is taken over, later frames go nowhere', async t => {
  const gone: boolean[] = []
  let finished = 0
  let hijacked = 0
  const answer = new RelayedAnswer(9, 'owner', cutOff => { gone.push(cutOff) }, () => { finished++ })
  let piped: Promise<void> | undefined
  const c = await client(t, res => {
    piped = answer.pipe({ hijack: () => { hijacked++; return res }, response: res, headers: () => ({}), maxBufferedBytes: 100 })
    setTimeout(() => { c.destroy() }, 20)
  })
  await c.read
  await until(() => gone.length > 0)
  t.same(gone, [false], 'the owner hears the client left, once')
  await piped
  t.equal(finished, 1)
  t.equal(hijacked, 1, 'the reply is taken from the route, which has nothing left to answer')
  answer.receive({ s: 200, h: { 'content-type': 'text/event-stream' }, d: 'late', e: 1 })
  t.equal(hijacked, 1, 'a late answer is dropped')
})

t.test('RelayedAnswer: the owner has `timeout` ms to acknowledge; after that the pipe rejects with FST_ERR_MCP_SSE_RELAY_TIMEOUT (503) and the owner is told; an acknowledgement lifts the bound', async t => {
  const gone: boolean[] = []
  // The bound's timer is unref'd: something must keep this process alive meanwhile.
  const hold = setInterval(() => {}, 1000)
  t.teardown(() => { clearInterval(hold) })
  const silent = new RelayedAnswer(10, 'owner', cutOff => { gone.push(cutOff) }, () => {}, 50)
  const started = Date.now()
  await t.rejects(silent.pipe({ hijack: () => { throw new Error('no') }, headers: () => ({}), maxBufferedBytes: 100 }), { code: 'FST_ERR_MCP_SSE_RELAY_TIMEOUT', statusCode: 503, message: /within 50 ms \(redis\.relayTimeout\)/ })
  t.ok(Date.now() - started >= 45, 'not before the bound')
  t.same(gone, [false])

  const acked = new RelayedAnswer(11, 'owner', () => {}, () => {}, 50)
  acked.receive({ a: 1 })
  const c = await client(t, res => {
    const piped = acked.pipe({ hijack: () => res, headers: () => ({}), maxBufferedBytes: 1 << 20 })
    setTimeout(() => { acked.receive({ s: 200, h: { 'content-type': 'application/json' }, d: '{}', e: 1 }) }, 150)
    void piped
  })
  const got = await c.read
  t.equal(got.status, 200, 'answered at 150 ms, past the 50 ms bound: acknowledged')
  t.equal(got.body, '{}')
})

async function until (fn: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !fn(); i++) await new Promise(resolve => setTimeout(resolve, 10))
}
