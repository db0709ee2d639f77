// A minimal SSE client for the driver: one GET per session (a socket of its own), frames
// parsed as they come, `message` events handed to a callback.
import { request } from 'node:http'

export interface SseConnection {
  /** Path and query of the message endpoint, from the `endpoint` event. */
  readonly messagePath: string
  /** True once the stream has ended, whoever ended it. */
  readonly closed: boolean
  /** Ends the stream (destroys the socket). */
  close (): void
}

/**
 * Opens `GET path` on 127.0.0.1:port and resolves once the `endpoint` event has arrived.
 * `onMessage` gets the data of every `event: message` frame; `onClose` is called when the
 * stream ends after it opened.
 */
export function openSse (port: number, path: string, onMessage: (data: string) => void, onClose?: () => void, timeoutMs = 15_000): Promise<SseConnection> {
  return new Promise((resolve, reject) => {
    let opened = false
    let closed = false
    let messagePath = ''
    const req = request({ host: '127.0.0.1', port, path, method: 'GET', agent: false, headers: { accept: 'text/event-stream' } })
    const conn: SseConnection = {
      get messagePath () { return messagePath },
      get closed () { return closed },
      close () {
        closed = true
        req.destroy()
      }
    }
    const fail = (err: Error): void => {
      if (opened) return
      opened = true
      clearTimeout(timer)
      req.destroy()
      reject(err)
    }
    const timer = setTimeout(() => fail(new Error(`GET ${path}: no endpoint event within ${timeoutMs} ms`)), timeoutMs)
    req.on('error', fail)
    req.on('response', res => {
      if (res.statusCode !== 200) {
        res.resume()
        fail(new Error(`GET ${path}: HTTP ${res.statusCode ?? '?'}`))
        return
      }
      res.setEncoding('utf8')
      let buf = ''
      res.on('data', (chunk: string) => {
        buf += chunk
        let pos = 0
        let end: number
        while ((end = buf.indexOf('\n\n', pos)) !== -1) {
          let event = 'message'
          let data = ''
          for (const line of buf.slice(pos, end).split('\n')) {
            if (line.startsWith('event:')) event = line.slice(6).trim()
            else if (line.startsWith('data:')) data += (data === '' ? '' : '\n') + line.slice(line.charCodeAt(5) === 32 ? 6 : 5)
          }
          pos = end + 2
          if (event === 'message') {
            onMessage(data)
          } else if (event === 'endpoint' && !opened) {
            opened = true
            clearTimeout(timer)
            const url = new URL(data, `http://127.0.0.1:${port}`)
            messagePath = url.pathname + url.search
            resolve(conn)
          }
        }
        if (pos > 0) buf = buf.slice(pos)
      })
      res.on('error', () => {})
      res.on('close', () => {
        closed = true
        fail(new Error(`GET ${path}: stream closed before the endpoint event`))
        onClose?.()
      })
    })
    req.end()
  })
}

/**
 * Runs `task` `count` times with at most `concurrency` at once. The first failure stops
 * new tasks; it is thrown once the running ones have settled (nothing is left behind).
 */
export async function pool (count: number, concurrency: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0
  let failure: { error: unknown } | undefined
  const worker = async (): Promise<void> => {
    while (failure === undefined && next < count) {
      try {
        await task(next++)
      } catch (error) {
        failure ??= { error }
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
  if (failure !== undefined) throw failure.error
}
