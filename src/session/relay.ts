import { EventEmitter } from 'node:events'
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http'
import { describeError, FST_ERR_MCP_SSE_REDIS_UNAVAILABLE, FST_ERR_MCP_SSE_RELAY_TIMEOUT, FST_ERR_MCP_SSE_SESSION_NOT_FOUND, McpRelayedError, type RelayedErrorInfo } from '../errors.js'
import type { ResponseSink } from '../transports/transport.js'

/**
 * The bytes of one relayed answer, from the instance that holds the session (the owner)
 * to the instance the client is talking to, in order. One frame may carry several parts.
 */
export interface AnswerFrame {
  /** the owner received the request (a frame of its own, sent at once, before serving it) */
  a?: 1
  /** status and headers: the head, sent with the first part that follows it */
  s?: number
  h?: OutgoingHttpHeaders
  /** data to write */
  d?: string
  /** end the response after `d` */
  e?: 1
  /** cut the response off (destroy) */
  x?: 1
  /** an error to answer instead (nothing was written yet) */
  f?: RelayedErrorInfo
}

/**
 * The owner's side of a relayed answer: a {@link ResponseSink} whose writes travel to the
 * receiving instance. Streams and replies are written to it exactly as to a local
 * response; it closes (like a socket) when the receiving instance says its client left,
 * or when nothing listens there any more.
 */
export class RelaySink extends EventEmitter implements ResponseSink {
  readonly #publish: (frame: AnswerFrame) => Promise<boolean>
  readonly #onFinish: () => void
  #head: { s: number, h: OutgoingHttpHeaders } | undefined
  #gone = false
  #done = false
  headersSent = false
  writableEnded = false
  destroyed = false
  cutOff = false
  /** Nothing waits here: the receiving instance buffers, and bounds, what its client has not read. */
  readonly writableLength = 0
  readonly writableNeedDrain = false

  /**
   * @param publish sends a frame; resolves false when nobody received it.
   * @param onFinish runs once, when the answer is complete or abandoned.
   */
  constructor (publish: (frame: AnswerFrame) => Promise<boolean>, onFinish: () => void) {
    super()
    this.#publish = publish
    this.#onFinish = onFinish
  }

  writeHead (status: number, headers: OutgoingHttpHeaders): this {
    if (!this.headersSent) {
      this.headersSent = true
      this.#head = { s: status, h: headers }
    }
    return this
  }

  flushHeaders (): void {
    if (this.#head !== undefined) this.#send({})
  }

  write (chunk: string): boolean {
    if (!this.#closed) this.#send({ d: chunk })
    return true
  }

  end (chunk?: string): this {
    if (this.#closed) return this
    this.writableEnded = true
    this.#send(chunk === undefined ? { e: 1 } : { d: chunk, e: 1 })
    this.#finish()
    return this
  }

  destroy (): this {
    if (this.#closed) return this
    this.destroyed = true
    this.#send({ x: 1 })
    this.#finish()
    return this
  }

  /** Sends an SSE comment (clients ignore it): resolves false, after 'close', when nobody received it. */
  probe (): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false)
    return this.#publish({ d: ':\n\n' }).then(received => {
      if (!received) this.gone()
      return received
    }, () => {
      this.gone()
      return false
    })
  }

  /** Answers an error instead (before anything was written), as the route would. */
  fail (err: unknown): void {
    if (this.#closed) return
    if (this.headersSent) {
      this.destroy()
      return
    }
    this.writableEnded = true
    this.#send({ f: describeError(err) })
    this.#finish()
  }

  /**
   * The client left (or the receiving instance is gone): like a socket's 'close'.
   * `cutOff` when it was cut off for not reading.
   */
  gone (cutOff = false): void {
    if (this.#gone) return
    this.#gone = true
    this.cutOff = cutOff
    this.destroyed = true
    this.#finish()
    this.emit('close')
  }

  get #closed (): boolean {
    return this.writableEnded || this.destroyed
  }

  #send (frame: AnswerFrame): void {
    const head = this.#head
    if (head !== undefined) {
      this.#head = undefined
      frame.s = head.s
      frame.h = head.h
    }
    this.#publish(frame).then(received => { if (!received) this.gone() }, () => { this.gone() })
  }

  #finish (): void {
    if (this.#done) return
    this.#done = true
    this.#onFinish()
  }
}

/** How the receiving instance writes a relayed answer to its client. */
export interface RelayTarget {
  /** Takes the client's response over from Fastify. */
  hijack: () => ServerResponse
  /**
   * The client's response, before it is taken over: listened to for 'close' from the
   * start, so a client that leaves before the first byte is noticed too.
   */
  response?: ServerResponse
  /** Headers already set on the reply (CORS): the owner's head adds to them. */
  headers: () => OutgoingHttpHeaders
  maxBufferedBytes: number
}

/**
 * The receiving instance's side of a relayed request: frames from the owner, written to
 * the client's response in order. Until the head comes the route still owns the reply, so
 * an error frame becomes an ordinary error answer.
 */
export class RelayedAnswer {
  readonly key: number
  readonly owner: string
  readonly #onClientGone: (cutOff: boolean) => void
  readonly #onFinish: () => void
  #pending: AnswerFrame[] = []
  #target: RelayTarget | undefined
  #res: ServerResponse | undefined
  #done = false
  #timer: NodeJS.Timeout | undefined
  #resolve!: () => void
  #reject!: (err: Error) => void
  readonly #finished: Promise<void>

  /**
   * @param onClientGone tells the owner the client left before the answer was complete.
   * @param onFinish runs once, when the answer is complete or abandoned.
   * @param timeout ms the owner has to acknowledge the request (any frame does); 0: no bound.
   */
  constructor (key: number, owner: string, onClientGone: (cutOff: boolean) => void, onFinish: () => void, timeout = 0) {
    this.key = key
    this.owner = owner
    this.#onClientGone = onClientGone
    this.#onFinish = onFinish
    this.#finished = new Promise((resolve, reject) => {
      this.#resolve = resolve
      this.#reject = reject
    })
    // Its outcome is for whoever pipes it; one never piped must not be an unhandled rejection.
    this.#finished.catch(() => {})
    if (timeout > 0) {
      // Only the acknowledgement is bounded: once the owner has the request, a long tool
      // call answers when it is done (JSON answers come only then).
      this.#timer = setTimeout(() => { this.#timedOut(timeout) }, timeout)
      this.#timer.unref()
    }
  }


  /** Writes the answer to the client; resolves when it is complete, rejects with an error to answer instead. */
  pipe (target: RelayTarget): Promise<void> {
    if (this.#done) return this.#finished
    this.#target = target
    target.response?.on('close', this.#onClose)
    const pending = this.#pending
    this.#pending = []
    for (const frame of pending) this.receive(frame)
    return this.#finished
  }

  /** A frame from the owner. */
  receive (frame: AnswerFrame): void {
    if (this.#done) return
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer)
      this.#timer = undefined
    }
    if (frame.a === 1) return
    const target = this.#target
    if (target === undefined) {
      this.#pending.push(frame)
      return
    }
    if (frame.f !== undefined) {
      this.#finish(new McpRelayedError(frame.f))
      return
    }
    let res = this.#res
    if (res === undefined) {
      res = target.hijack()
      this.#res = res
      const headers = { ...target.headers(), ...frame.h }
      if (String(headers['content-type']).startsWith('text/event-stream')) {
        res.socket?.setTimeout(0)
        res.socket?.setNoDelay(true)
      }
      res.writeHead(frame.s ?? 200, headers)
      if (res !== target.response) res.on('close', this.#onClose)
    }
    if (frame.x === 1) {
      res.destroy()
      this.#finish()
      return
    }
    if (frame.d !== undefined) {
      res.write(frame.d)
      if (res.writableLength > target.maxBufferedBytes) {
        // A client that stopped reading: cut off here, where its bytes wait.
        res.destroy()
        this.#left(true)
        return
      }
    }
    if (frame.e === 1) {
      res.end()
      this.#finish()
    } else if (frame.s !== undefined && frame.d === undefined) {
      res.flushHeaders()
    }
  }

  /** The request never reached an owner: nothing to wait for, nobody to tell. */
  drop (): void {
    this.#finish()
  }

  /** The owner is gone: the session with it. */
  ownerGone (): void {
    this.#abandon(new FST_ERR_MCP_SSE_SESSION_NOT_FOUND())
  }

  /** The link to the owner (Redis) is down: a stream ends (the client resumes later), a reply not begun is a 503. */
  linkLost (): void {
    this.#abandon(new FST_ERR_MCP_SSE_REDIS_UNAVAILABLE('the connection was lost'))
  }

  /**
   * This instance is closing: a stream ends (its client resumes on another instance), an
   * answer not begun is a 503. The owner is told, as when a client leaves.
   */
  shutdown (): void {
    if (this.#done) return
    this.#abandon(new FST_ERR_MCP_SSE_REDIS_UNAVAILABLE('this instance is shutting down'))
    this.#onClientGone(false)
  }

  /** The owner did not acknowledge in time: wedged, or its messages are not getting through. */
  #timedOut (timeout: number): void {
    this.#timer = undefined
    if (this.#done) return
    this.#abandon(new FST_ERR_MCP_SSE_RELAY_TIMEOUT(timeout))
    // Should it wake up, what it answers goes nowhere (and stays resumable there).
    this.#onClientGone(false)
  }

  #abandon (err: Error): void {
    if (this.#done) return
    const res = this.#res
    if (res === undefined) {
      this.#finish(err)
      return
    }
    this.#finish()
    res.end()
  }

  #onClose = (): void => {
    if (this.#done) return
    // Gone before the head: the route's reply is not to be answered any more.
    if (this.#res === undefined && this.#target !== undefined) this.#res = this.#target.hijack()
    this.#left(false)
  }

  #left (cutOff: boolean): void {
    this.#finish()
    this.#onClientGone(cutOff)
  }

  #finish (err?: Error): void {
    if (this.#done) return
    this.#done = true
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#res?.off('close', this.#onClose)
    this.#target?.response?.off('close', this.#onClose)
    if (err === undefined) this.#resolve()
    else this.#reject(err)
    this.#onFinish()
  }
}
