// node-bare: fastify-bare on node:http alone.
import { randomUUID } from 'node:crypto'
import { createServer, type ServerResponse } from 'node:http'
import { announce, bareReply, endpointFrame, listenHost, listenPort, memReport, SSE_HEADERS } from './common.js'

const streams = new Map<string, ServerResponse>()

const server = createServer((req, res) => {
  const url = req.url ?? '/'
  const q = url.indexOf('?')
  const path = q === -1 ? url : url.slice(0, q)
  if (req.method === 'GET' && path === '/sse') {
    const id = randomUUID()
    res.writeHead(200, SSE_HEADERS)
    res.write(endpointFrame(id))
    streams.set(id, res)
    res.on('close', () => streams.delete(id))
    return
  }
  if (req.method === 'POST' && path === '/messages') {
    const id = new URLSearchParams(q === -1 ? '' : url.slice(q + 1)).get('sessionId')
    const stream = id === null ? undefined : streams.get(id)
    if (stream === undefined) {
      req.resume()
      res.writeHead(404).end()
      return
    }
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      let body: unknown
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'))
      } catch {
        res.writeHead(400).end()
        return
      }
      const frame = bareReply(body)
      if (frame !== undefined) stream.write(frame)
      res.writeHead(202).end()
    })
    return
  }
  if (req.method === 'GET' && path === '/__mem') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(memReport(streams.size)))
    return
  }
  res.writeHead(404).end()
})

server.listen(listenPort, listenHost, () => {
  announce({ port: (server.address() as { port: number }).port })
})
