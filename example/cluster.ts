// Two instances sharing sessions through Redis, behind a plain round-robin load balancer
// (no sticky sessions): `npm run example:cluster`, then point an MCP client at
// http://127.0.0.1:8080/mcp (Streamable HTTP; HTTP+SSE clients too) or /sse (HTTP+SSE).
// Needs a Redis at REDIS_URL (default redis://127.0.0.1:6379). PORT sets the balancer's
// port (default 8080), INSTANCE_PORTS the instances' ("8081,8082" by default: PORT+1,
// PORT+2), KEY_PREFIX the Redis keys' prefix (default "mcp:").
import http from 'node:http'
import Fastify, { type FastifyInstance } from 'fastify'
import mcpSse from '../src/index.js'
import { buildExampleServer } from './mcp-server.js'

const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const port = Number(process.env.PORT ?? 8080)
const upstreams = (process.env.INSTANCE_PORTS ?? `${port + 1},${port + 2}`).split(',').map(Number)
const keyPrefix = process.env.KEY_PREFIX ?? 'mcp:'

async function instance (name: string, instancePort: number): Promise<FastifyInstance> {
  const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'info', base: { instance: name } } })
  await app.register(mcpSse, { server: () => buildExampleServer(), redis: { url: redisUrl, keyPrefix }, eventStore: 'redis' })
  await app.listen({ port: instancePort, host: '127.0.0.1' })
  return app
}

const apps = await Promise.all(upstreams.map((p, i) => instance(String.fromCharCode(97 + i), p)))

// The load balancer: request i goes to instance i mod 2, streams and POSTs alike.
let next = 0
const balancer = http.createServer((req, res) => {
  const upstreamPort = upstreams[next++ % upstreams.length]
  const upstream = http.request({ host: '127.0.0.1', port: upstreamPort, path: req.url, method: req.method, headers: req.headers }, up => {
    res.writeHead(up.statusCode ?? 502, up.headers)
    up.pipe(res)
  })
  upstream.on('error', () => { if (!res.headersSent) res.writeHead(502); res.end() })
  res.on('close', () => upstream.destroy())
  req.pipe(upstream)
})
balancer.listen(port, '127.0.0.1', () => {
  console.log(`load balancer on http://127.0.0.1:${port}/mcp and /sse -> instances on ${upstreams.join(', ')}`)
})

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    balancer.closeAllConnections()
    balancer.close()
    void Promise.all(apps.map(app => app.close())).then(() => {
      console.log('stopped: both instances closed')
      process.exit(0)
    })
  })
}
