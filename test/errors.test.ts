// Every row of the error table, over a real socket: status, content type and the whole
// JSON-RPC error body.
import http from 'node:http'
import t from 'tap'
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js'
import { ApiKeyAuthProvider, McpAuthError, type McpServerLike } from '../src/index.js'
import { assertError, type ExpectedError, initialize, post, RawStream, startApp, until } from './support/helpers.js'

/** A subtest, as tap passes it to a test function. */
type Test = Parameters<Parameters<typeof t.test>[0]>[0]

interface Answer {
  status: number
  contentType: string | null
  /** Response headers, names in lower case. */
  headers: Record<string, string | string[] | undefined>
  body: unknown
  text: string
}

interface RawRequest {
  method?: string
  headers?: http.OutgoingHttpHeaders
  /** Written as one chunk, or chunk by chunk (chunked transfer encoding) for an array. */
  body?: string | string[]
}

/**
 * A request over node:http with full control of the headers (fetch adds a content type to
 * string bodies and will not send some headers). A 200 event stream is not read: the
 * request is destroyed as soon as its headers arrive.
 */
function raw (url: string, { method = 'GET', headers = {}, body }: RawRequest = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers }, res => {
      const contentType = res.headers['content-type'] ?? null
      if (contentType?.startsWith('text/event-stream') === true) {
        req.destroy()
        resolve({ status: res.statusCode ?? 0, contentType, headers: res.headers, body: undefined, text: '' })
        return
      }
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { text += chunk })
      res.on('end', () => {
        let parsed: unknown
        try { parsed = text === '' ? undefined : JSON.parse(text) } catch { parsed = undefined }
        resolve({ status: res.statusCode ?? 0, contentType, headers: res.headers, body: parsed, text })
      })
      res.on('error', reject)
    })
    req.on('error', reject)
    if (Array.isArray(body)) {
      for (const chunk of body) req.write(chunk)
    } else if (body !== undefined) {
      req.write(body)
    }
    req.end()
  })
}

/** `post` from the helpers, in the shape `raw` answers with. */
async function postJson (url: string, body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await post(url, body, headers)
  return { status: res.status, contentType: res.headers.get('content-type'), headers: Object.fromEntries(res.headers), body: res.body, text: res.text }
}


/** Opens a live session; returns its stream, message URL and id. */
async function openSession (t: Test, base: string, path = '/sse'): Promise<{ stream: RawStream, url: string, sessionId: string }> {
  const stream = await RawStream.open(`${base}${path}`)
  t.teardown(() => stream.close())
  const url = await stream.endpoint(base)
  const sessionId = new URL(url).searchParams.get('sessionId') ?? ''
  return { stream, url, sessionId }
}

/** A server whose message handler throws synchronously on every message. */
function throwingServer (): McpServerLike {
  return {
    async connect (transport: Transport) {
      transport.onmessage = () => { throw new Error('boom') }
      await transport.start()
    },
    async close () {}
  }
}

t.test('a body that is not JSON answers 400 parse_error', async t => {
  const { base } = await startApp(t)
  const { url, sessionId } = await openSession(t, base)
  const res = await postJson(url, '{"jsonrpc":"2.0","id":1,"method":')
  assertError(t, res, { status: 400, code: -32700, type: 'parse_error', sessionId, connectionActive: true })
})

t.test('an empty body answers 400 parse_error', async t => {
  const { base } = await startApp(t)
  const { url, sessionId } = await openSession(t, base)
  const res = await postJson(url, '')
  assertError(t, res, { status: 400, code: -32700, type: 'parse_error', sessionId, connectionActive: true })
})

t.test('a body with a __proto__ key answers 400 parse_error', async t => {
  const { base } = await startApp(t)
  const { url, sessionId } = await openSession(t, base)
  const res = await postJson(url, '{"jsonrpc":"2.0","id":1,"method":"ping","__proto__":{"polluted":true}}')
  assertError(t, res, { status: 400, code: -32700, type: 'parse_error', sessionId, connectionActive: true })
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype is untouched')
})

t.test('JSON that is not a JSON-RPC 2.0 message answers 400 invalid_request', async t => {
  // Every case goes to a live session, so a body that wrongly passes validation shows as 202.
  const { base } = await startApp(t)
  const { url, sessionId } = await openSession(t, base)
  const invalid = (expect: Pick<ExpectedError, 'id' | 'method'>) =>
    ({ status: 400, code: -32600, type: 'invalid_request', sessionId, connectionActive: true, ...expect })

  t.test('a message with jsonrpc "1.0" is refused, its id and method echoed', async t => {
    const res = await postJson(url, { jsonrpc: '1.0', id: 3, method: 'ping' })
    assertError(t, res, invalid({ id: 3, method: 'ping' }))
  })

  t.test('a message without jsonrpc is refused, a string id echoed', async t => {
    const res = await postJson(url, { id: 'abc', method: 'ping' })
    assertError(t, res, invalid({ id: 'abc', method: 'ping' }))
  })

  t.test('a request whose method is not a string is refused, its id echoed and method not', async t => {
    const res = await postJson(url, { jsonrpc: '2.0', id: 4, method: 42 })
    assertError(t, res, invalid({ id: 4, method: null }))
  })

  t.test('a request whose id is null is refused', async t => {
    const res = await postJson(url, { jsonrpc: '2.0', id: null, method: 'ping' })
    assertError(t, res, invalid({ id: null, method: 'ping' }))
  })

  t.test('a request whose id is a float is refused, the id echoed', async t => {
    const res = await postJson(url, { jsonrpc: '2.0', id: 1.5, method: 'ping' })
    assertError(t, res, invalid({ id: 1.5, method: 'ping' }))
  })

  t.test('a request whose id is an object is refused', async t => {
    const res = await postJson(url, { jsonrpc: '2.0', id: { n: 1 }, method: 'ping' })
    assertError(t, res, invalid({ id: null, method: 'ping' }))
  })

  t.test('a response whose result is not an object is refused, its id echoed', async t => {
    const res = await postJson(url, { jsonrpc: '2.0', id: 5, result: 'done' })
    assertError(t, res, invalid({ id: 5 }))
  })

  t.test('an object with neither method, result nor error is refused', async t => {
    const res = await postJson(url, { jsonrpc: '2.0', id: 6 })
    assertError(t, res, invalid({ id: 6 }))
  })

  t.test('an empty batch is refused', async t => {
    const res = await postJson(url, [])
    assertError(t, res, invalid({}))
  })

  t.test('a batch holding a non-message is refused as a whole', async t => {
    const res = await postJson(url, [{ jsonrpc: '2.0', id: 7, method: 'ping' }, 42])
    assertError(t, res, invalid({}))
  })

  t.test('a batch holding a batch is refused', async t => {
    const res = await postJson(url, [[{ jsonrpc: '2.0', id: 8, method: 'ping' }]])
    assertError(t, res, invalid({}))
  })

  for (const scalar of ['42', '"ping"', 'true', 'null']) {
    t.test(`a scalar body (${scalar}) is refused`, async t => {
      const res = await postJson(url, scalar)
      assertError(t, res, invalid({}))
    })
  }
})

t.test('a refused batch delivers none of its messages', async t => {
  const { base } = await startApp(t)
  const { stream, url, sessionId } = await openSession(t, base)
  const res = await postJson(url, [initialize(1), { jsonrpc: '2.0', id: 2 }])
  assertError(t, res, { status: 400, code: -32600, type: 'invalid_request', sessionId, connectionActive: true })
  await t.rejects(stream.next('message', 200), /timed out/, 'the valid first message got no reply')
})

t.test('a bad message to a live session leaves the session working', async t => {
  const { base, app } = await startApp(t)
  const { stream, url, sessionId } = await openSession(t, base)
  assertError(t, await postJson(url, 'not json'), { status: 400, code: -32700, type: 'parse_error', sessionId, connectionActive: true })
  assertError(t, await postJson(url, { jsonrpc: '2.0', id: 1, method: 7 }),
    { status: 400, code: -32600, type: 'invalid_request', id: 1, sessionId, connectionActive: true })
  t.equal(app.mcpSessions.get(sessionId)?.transport.isOpen, true, 'the session is still open')
  const ok = await postJson(url, initialize(2))
  t.equal(ok.status, 202)
  t.equal(ok.text, '')
  const reply = JSON.parse((await stream.next('message')).data)
  t.equal(reply.id, 2)
  t.equal(reply.result.serverInfo.name, 'fastify-mcp-sse-example')
})

t.test('a body over maxMessageSize answers 413 message_too_large', async t => {
  const { base } = await startApp(t, { maxMessageSize: '1kb' })
  const { url, sessionId } = await openSession(t, base)
  const res = await postJson(url, { jsonrpc: '2.0', id: 1, method: 'ping', params: { pad: 'x'.repeat(2048) } })
  assertError(t, res, { status: 413, code: -32000, type: 'message_too_large', sessionId, connectionActive: true })
  t.match((res.body as any).error.message, /1KB/, 'the message names the limit')
})

t.test('a chunked body that grows over maxMessageSize answers 413 message_too_large', async t => {
  const { base } = await startApp(t, { maxMessageSize: '1kb' })
  const { url, sessionId } = await openSession(t, base)
  const res = await raw(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
    body: ['{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"', 'x'.repeat(700), 'x'.repeat(700), '"}}']
  })
  assertError(t, res, { status: 413, code: -32000, type: 'message_too_large', sessionId, connectionActive: true })
})

t.test('a body of exactly maxMessageSize is accepted', async t => {
  const { base } = await startApp(t, { maxMessageSize: '1kb' })
  const { url } = await openSession(t, base)
  const body = JSON.stringify({ jsonrpc: '2.0', method: 'notifications/x', params: { pad: '' } })
  const padded = (n: number) => body.replace('"pad":""', `"pad":"${'x'.repeat(n)}"`)
  t.equal(padded(1024 - body.length).length, 1024)
  t.equal((await postJson(url, padded(1024 - body.length))).status, 202, '1024 bytes pass')
  t.equal((await postJson(url, padded(1025 - body.length))).status, 413, '1025 bytes do not')
})

t.test('a wrong content type answers 415 unsupported_media_type', async t => {
  const { base } = await startApp(t)
  const { url, sessionId } = await openSession(t, base)
  const message = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' })
  const unsupported = { status: 415, code: -32000, type: 'unsupported_media_type', sessionId, connectionActive: true }

  t.test('text/plain is refused', async t => {
    assertError(t, await postJson(url, message, { 'content-type': 'text/plain' }), unsupported)
  })
  t.test('application/x-www-form-urlencoded is refused', async t => {
    assertError(t, await postJson(url, 'jsonrpc=2.0&id=1&method=ping', { 'content-type': 'application/x-www-form-urlencoded' }), unsupported)
  })
  t.test('a missing content type is refused', async t => {
    const res = await raw(url, { method: 'POST', headers: { 'content-length': Buffer.byteLength(message) }, body: message })
    assertError(t, res, unsupported)
  })
  t.test('a type that only starts with application/json is refused', async t => {
    assertError(t, await postJson(url, message, { 'content-type': 'application/jsonx' }), unsupported)
  })
  t.test('application/json in upper case is accepted', async t => {
    const res = await postJson(url, message, { 'content-type': 'Application/JSON' })
    t.equal(res.status, 202)
  })
  t.test('application/json with a charset is accepted', async t => {
    const res = await postJson(url, message, { 'content-type': 'application/json; charset=utf-8' })
    t.equal(res.status, 202)
  })
})

t.test('a POST without a live session answers 404 session_not_found', async t => {
  const { base, app } = await startApp(t)
  const ping = { jsonrpc: '2.0', id: 9, method: 'ping' }
  const notFound = (sessionId: string | null) =>
    ({ status: 404, code: -32001, type: 'session_not_found', id: 9, method: 'ping', sessionId, connectionActive: false })

  t.test('a missing sessionId is refused', async t => {
    assertError(t, await postJson(`${base}/messages`, ping), notFound(null))
  })
  t.test('an unknown sessionId is refused', async t => {
    const unknown = '00000000-0000-4000-8000-000000000000'
    assertError(t, await postJson(`${base}/messages?sessionId=${unknown}`, ping), notFound(unknown))
  })
  t.test('a repeated sessionId is refused, even when one of them is live', async t => {
    const { sessionId } = await openSession(t, base)
    assertError(t, await postJson(`${base}/messages?sessionId=${sessionId}&sessionId=b`, ping), notFound(null))
    assertError(t, await postJson(`${base}/messages?sessionId=${sessionId}&sessionId=${sessionId}`, ping), notFound(null))
  })
  t.test('the session of a client that disconnected is refused', async t => {
    const { stream, url, sessionId } = await openSession(t, base)
    t.equal((await postJson(url, ping)).status, 202, 'the session was live')
    stream.close()
    await until(() => app.mcpSessions.size === 0, 5000, 'the session to be removed')
    assertError(t, await postJson(url, ping), notFound(sessionId))
  })
  t.test('a session closed by the server is refused', async t => {
    const { stream, url, sessionId } = await openSession(t, base)
    t.equal(await app.mcpSessions.close(sessionId), true)
    await stream.waitEnd()
    assertError(t, await postJson(url, ping), notFound(sessionId))
  })
})

t.test('allowedOrigins refuses a foreign Origin with 403 forbidden_origin', async t => {
  const { base } = await startApp(t, { allowedOrigins: ['https://app.example.com'] })
  const forbidden = { status: 403, code: -32000, type: 'forbidden_origin' }

  t.test('GET with a foreign Origin is refused', async t => {
    const res = await raw(`${base}/sse`, { headers: { origin: 'https://evil.example.com', accept: 'text/event-stream' } })
    assertError(t, res, forbidden)
  })
  t.test('POST with a foreign Origin is refused, even to a live session', async t => {
    const { stream, url, sessionId } = await openSession(t, base)
    const res = await postJson(url, initialize(1), { origin: 'https://evil.example.com' })
    assertError(t, res, { ...forbidden, sessionId, connectionActive: true })
    await t.rejects(stream.next('message', 200), /timed out/, 'the message was not delivered')
  })
  t.test('an allowed Origin passes on GET and POST', async t => {
    const stream = await RawStream.open(`${base}/sse`, { origin: 'https://app.example.com' })
    t.teardown(() => stream.close())
    t.equal(stream.res.statusCode, 200)
    const url = await stream.endpoint(base)
    t.equal((await postJson(url, initialize(1), { origin: 'https://app.example.com' })).status, 202)
    t.equal(JSON.parse((await stream.next('message')).data).id, 1)
  })
  t.test('a request without an Origin passes on GET and POST', async t => {
    const { stream, url } = await openSession(t, base)
    t.equal(stream.res.statusCode, 200)
    t.equal((await postJson(url, initialize(1))).status, 202)
    t.equal(JSON.parse((await stream.next('message')).data).id, 1)
  })
})

t.test('a GET past maxSessions answers 503 too_many_sessions', async t => {
  const { base, app } = await startApp(t, { maxSessions: 1 })
  const first = await openSession(t, base)
  const res = await raw(`${base}/sse`, { headers: { accept: 'text/event-stream' } })
  assertError(t, res, { status: 503, code: -32000, type: 'too_many_sessions' })
  t.equal(app.mcpSessions.size, 1)
  first.stream.close()
  await until(() => app.mcpSessions.size === 0, 5000, 'the first session to be removed')
  const again = await raw(`${base}/sse`, { headers: { accept: 'text/event-stream' } })
  t.equal(again.status, 200, 'the freed slot can be used')
})

t.test('a handler that throws answers 500 message_handler_error', async t => {
  const { base, app } = await startApp(t, { server: throwingServer })
  const { url, sessionId } = await openSession(t, base)
  const res = await postJson(url, { jsonrpc: '2.0', id: 'r1', method: 'tools/list' })
  assertError(t, res, { status: 500, code: -32603, type: 'message_handler_error', id: 'r1', method: 'tools/list', sessionId, connectionActive: true })
  t.equal(app.mcpSessions.size, 1, 'the session is still held')
})

t.test('a handler that throws on a batch answers 500 message_handler_error', async t => {
  const { base } = await startApp(t, { server: throwingServer })
  const { url, sessionId } = await openSession(t, base)
  const res = await postJson(url, [{ jsonrpc: '2.0', id: 1, method: 'ping' }, { jsonrpc: '2.0', method: 'notifications/x' }])
  assertError(t, res, { status: 500, code: -32603, type: 'message_handler_error', sessionId, connectionActive: true })
})

t.test('a server factory that throws answers the GET with 500 and a JSON-RPC error', async t => {
  const { base, app } = await startApp(t, { server: () => { throw new Error('factory secret') } })
  const res = await raw(`${base}/sse`, { headers: { accept: 'text/event-stream' } })
  assertError(t, res, { status: 500, code: -32603, type: 'message_handler_error' })
  t.notMatch(res.text, /factory secret/, 'the factory\'s own error message stays in the log')
  t.equal(app.mcpSessions.size, 0)
})

t.test('a server factory that rejects does not hold a slot under maxSessions', async t => {
  let calls = 0
  const { base } = await startApp(t, {
    maxSessions: 1,
    server: async () => {
      if (++calls === 1) throw new Error('first one fails')
      return throwingServer()
    }
  })
  const failed = await raw(`${base}/sse`, { headers: { accept: 'text/event-stream' } })
  assertError(t, failed, { status: 500, code: -32603, type: 'message_handler_error' })
  const next = await raw(`${base}/sse`, { headers: { accept: 'text/event-stream' } })
  t.equal(next.status, 200)
})

t.test('a server whose connect() rejects before starting answers the GET with 500', async t => {
  const { base, app } = await startApp(t, {
    server: () => ({
      async connect () { throw new Error('cannot connect') },
      async close () {}
    })
  })
  const res = await raw(`${base}/sse`, { headers: { accept: 'text/event-stream' } })
  assertError(t, res, { status: 500, code: -32603, type: 'message_handler_error' })
  t.equal(app.mcpSessions.size, 0)
})

t.test('auth refuses a missing or wrong credential with 401 authentication_error', async t => {
  const provider = new ApiKeyAuthProvider({ keys: [{ key: 'key-alice', principal: 'alice' }] })
  const { base } = await startApp(t, { auth: { provider } })
  const refused = { status: 401, code: -32000, type: 'authentication_error' }

  t.test('GET without a key is refused with a WWW-Authenticate challenge', async t => {
    const res = await raw(`${base}/sse`, { headers: { accept: 'text/event-stream' } })
    assertError(t, res, refused)
    t.equal(res.headers['www-authenticate'], 'Bearer realm="mcp"')
  })
  t.test('GET with a wrong key is refused', async t => {
    assertError(t, await raw(`${base}/sse`, { headers: { 'x-api-key': 'key-mallory' } }), refused)
  })
  t.test('POST without a key is refused before the session is looked up', async t => {
    const stream = await RawStream.open(`${base}/sse`, { 'x-api-key': 'key-alice' })
    t.teardown(() => stream.close())
    const url = await stream.endpoint(base)
    const sessionId = new URL(url).searchParams.get('sessionId')
    const res = await postJson(url, initialize(1))
    assertError(t, res, { ...refused, sessionId, connectionActive: true })
    t.equal(res.headers['www-authenticate'], 'Bearer realm="mcp"')
    t.equal((await postJson(url, initialize(2), { 'x-api-key': 'key-alice' })).status, 202, 'with the key it passes')
  })
})

t.test('a provider may refuse with 403 authentication_error', async t => {
  const { base } = await startApp(t, {
    auth: {
      provider: {
        authenticate () { throw new McpAuthError({ status: 403, message: 'Forbidden: missing scope mcp:use.' }) }
      }
    }
  })
  const res = await raw(`${base}/sse`, { headers: { accept: 'text/event-stream' } })
  assertError(t, res, { status: 403, code: -32000, type: 'authentication_error' })
  t.match((res.body as any)?.error.message, /missing scope/)
})

t.test('another principal\'s session answers 404 session_not_found, like an unknown one', async t => {
  const provider = new ApiKeyAuthProvider({ keys: [{ key: 'key-alice', principal: 'alice' }, { key: 'key-bob', principal: 'bob' }] })
  const { base } = await startApp(t, { auth: { provider } })
  const stream = await RawStream.open(`${base}/sse`, { 'x-api-key': 'key-alice' })
  t.teardown(() => stream.close())
  const url = await stream.endpoint(base)
  const sessionId = new URL(url).searchParams.get('sessionId')
  const res = await postJson(url, { jsonrpc: '2.0', id: 3, method: 'ping' }, { 'x-api-key': 'key-bob' })
  assertError(t, res, { status: 404, code: -32001, type: 'session_not_found', id: 3, method: 'ping', sessionId, connectionActive: false })
  await t.rejects(stream.next('message', 200), /timed out/, 'nothing was delivered to alice\'s session')
  t.equal((await postJson(url, initialize(1), { 'x-api-key': 'key-alice' })).status, 202, 'the owner still gets in')
})

t.test('no error body echoes the request body', async t => {
  const marker = `MARKER-${'q'.repeat(40)}-${Date.now()}`
  const { base } = await startApp(t, { maxMessageSize: '2kb', allowedOrigins: ['https://app.example.com'] })
  const { url, sessionId } = await openSession(t, base)
  const bodies: Array<[string, string, Record<string, string>?]> = [
    ['parse error', `{"jsonrpc":"2.0","id":1,"method":"ping","note":"${marker}"`],
    ['invalid request', JSON.stringify({ jsonrpc: '1.0', id: 1, method: 'ping', note: marker })],
    ['invalid params type', JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping', params: marker })],
    ['invalid jsonrpc value', JSON.stringify({ jsonrpc: marker, id: 1, method: 'ping' })],
    ['invalid batch', JSON.stringify([{ jsonrpc: '2.0', id: 1, method: 'ping' }, marker])],
    ['too large', JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping', note: marker.repeat(60) })],
    ['wrong media type', JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping', note: marker }), { 'content-type': 'text/plain' }],
    ['foreign origin', JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping', note: marker }), { origin: 'https://evil.example.com' }]
  ]
  for (const [what, body, headers] of bodies) {
    const res = await postJson(url, body, headers)
    t.ok(res.status >= 400, `${what}: refused (${res.status})`)
    t.notOk(res.text.includes(marker.slice(0, 20)), `${what}: the marker is not in the answer`)
  }
  const unknownSession = await postJson(`${base}/messages?sessionId=nope`, { jsonrpc: '2.0', id: 1, method: 'ping', params: { note: marker } })
  t.equal(unknownSession.status, 404)
  t.notOk(unknownSession.text.includes(marker.slice(0, 20)), 'unknown session: the marker is not in the answer')
  t.equal((await postJson(url, initialize(1))).status, 202, `the session ${sessionId} still works`)
})

t.test('a run of bad requests leaves the process and the app serving', async t => {
  const { base, app } = await startApp(t, { maxMessageSize: '1kb' })
  const { stream, url } = await openSession(t, base)
  const bad = await Promise.all([
    postJson(url, '{'),
    postJson(url, ''),
    postJson(url, []),
    postJson(url, 'x'.repeat(5000)),
    postJson(url, '{}', { 'content-type': 'text/plain' }),
    postJson(`${base}/messages?sessionId=x`, { jsonrpc: '2.0', id: 1, method: 'ping' }),
    raw(url, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': 'abc' }, body: '{}' }).catch(() => ({ status: 400 }) as Answer)
  ])
  t.ok(bad.every(r => r.status >= 400 && r.status < 500), `all refused with 4xx: ${bad.map(r => r.status).join(', ')}`)
  t.equal((await postJson(url, initialize(1))).status, 202)
  t.equal(JSON.parse((await stream.next('message')).data).id, 1)
  t.equal(app.mcpSessions.size, 1)
})
