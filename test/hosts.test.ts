import http from 'node:http'
import t from 'tap'
import { startApp } from './support/helpers.js'

/** GET with an explicit Host header (fetch would not let us set it). */
function getWithHost (url: string, host: string): Promise<{ status: number, body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { host } }, res => {
      if (res.statusCode === 200) { resolve({ status: 200, body: '' }); req.destroy(); return }
      let body = ''
      res.setEncoding('utf8')
      res.on('data', c => { body += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    req.on('error', reject)
  })
}

t.test('allowedHosts admits listed Host headers (any case) and refuses others with 403 forbidden_origin', async t => {
  const { base, app } = await startApp(t, { allowedHosts: ['mcp.example.com', 'Localhost:8080'] })
  t.equal((await getWithHost(`${base}/sse`, 'mcp.example.com')).status, 200)
  t.equal((await getWithHost(`${base}/sse`, 'MCP.EXAMPLE.COM')).status, 200)
  t.equal((await getWithHost(`${base}/sse`, 'localhost:8080')).status, 200)
  const refused = await getWithHost(`${base}/sse`, 'attacker.example')
  t.equal(refused.status, 403)
  t.match(JSON.parse(refused.body), { error: { code: -32000, message: 'Host "attacker.example" is not allowed.', data: { type: 'forbidden_origin' } } })
  const post = await new Promise<number>((resolve, reject) => {
    const req = http.request(`${base}/messages?sessionId=x`, { method: 'POST', headers: { host: 'rebound.example', 'content-type': 'application/json' } }, res => { res.resume(); resolve(res.statusCode ?? 0) })
    req.on('error', reject)
    req.end('{}')
  })
  t.equal(post, 403)
  await new Promise(resolve => setTimeout(resolve, 50))
  t.ok(app.mcpSessions.size <= 3)
})

t.test('allowedHosts must be an array of strings', async t => {
  const Fastify = (await import('fastify')).default
  const mcpSse = (await import('../src/index.js')).default
  const app = Fastify()
  t.teardown(() => app.close())
  // @ts-expect-error: not an array
  app.register(mcpSse, { server: () => { throw new Error('unused') }, allowedHosts: 'mcp.example.com' })
  await t.rejects(async () => { await app.ready() }, { code: 'FST_ERR_MCP_SSE_INVALID_OPTION', message: /allowedHosts/ })
})
