import type { OutgoingHttpHeaders } from 'node:http'
import type { JsonRpcMessage, McpMessageExtra, McpSendOptions } from '../mcp.js'
import { ERROR_TABLE, jsonRpcError } from '../errors.js'
import { parseEventId, type McpEventStore, type StoredEvent } from './event-store.js'
import type { CloseReason, ReplyChannel, ResponseSink, SessionTransport, TransportObserver } from './transport.js'

/** How a POST's replies travel: `auto` answers JSON unless messages precede the result. */
export type ResponseMode = 'auto' | 'json' | 'sse'

const CLOSED = new Error('the stream is closed')
const RESOLVED = Promise.resolve()

type JsonRpcId = string | number

/** The response id of a JSON-RPC response (result or error), or undefined for anything else. */
function responseId (message: JsonRpcMessage): JsonRpcId | undefined {
  if (!('result' in message) && !('error' in message)) return undefined
  const id = message.id
  return typeof id === 'string' || typeof id === 'number' ? id : undefined
}

/**
 * The numbering of one stream's events (ids `<streamId>.<seq>`, seq 0 being the priming
 * event) and where they are kept for a client that reconnects with `Last-Event-ID`.
 */
export class Journal {
  readonly streamId: string
  readonly #store: McpEventStore
  #seq = 0

  constructor (streamId: string, store: McpEventStore) {
    this.streamId = streamId
    this.#store = store
  }

  /** The id a client resumes from when it saw nothing but the priming event. */
  get primingId (): string {
    return `${this.streamId}.0`
  }

  /** Numbers and keeps an event; returns its id. */
  record (message: JsonRpcMessage): string {
    const id = `${this.streamId}.${++this.#seq}`
    void Promise.resolve(this.#store.append(this.streamId, { id, message })).catch(() => {})
    return id
  }
}

export interface StreamSettings {
  /** Headers of every event-stream response (cache, custom, CORS are added per response). */
  headers: OutgoingHttpHeaders
  keepAliveInterval: number
  maxBufferedBytes: number
  /** Milliseconds a client should wait before reconnecting (`retry:` of the priming event). */
  retryInterval: number
}

/**
 * One `text/event-stream` response being written: frames with backpressure (a send waits
 * for 'drain'), a bound on what may wait unsent, keep-alive pings, and one end.
 */
export class EventStream {
  readonly #res: ResponseSink
  readonly #settings: StreamSettings
  readonly #onEnd: (reason: 'client_disconnected' | 'buffer_overflow' | 'ended') => void
  readonly #journal: Journal | undefined
  readonly #onWrite: ((bytes: number) => void) | undefined
  #timer: NodeJS.Timeout | undefined
  #waiters: Array<{ resolve: () => void, reject: (err: Error) => void }> = []
  #ended = false

  constructor (res: ResponseSink, settings: StreamSettings, journal: Journal | undefined, onEnd: (reason: 'client_disconnected' | 'buffer_overflow' | 'ended') => void, onWrite?: (bytes: number) => void) {
    this.#res = res
    this.#settings = settings
    this.#journal = journal
    this.#onEnd = onEnd
    this.#onWrite = onWrite
    res.on('close', this.#onClose)
    res.on('drain', this.#onDrain)
  }

  get bufferedBytes (): number {
    return this.#res.writableLength
  }

  /**
   * Writes the head (with these extra headers) and starts the keep-alive pings. A new
   * stream starts with its priming event (an id and `retry:`, no data), so the client can
   * resume it even if it loses the stream before the first message (SEP-1699).
   */
  open (headers: OutgoingHttpHeaders, prime: boolean): void {
    if (this.#ended) return
    const socket = this.#res.socket
    // A stream lives for as long as the client wants: no idle timeout.
    socket?.setTimeout(0)
    socket?.setNoDelay(true)
    this.#res.writeHead(200, { ...headers, ...this.#settings.headers })
    if (prime && this.#journal !== undefined) this.#res.write(`id: ${this.#journal.primingId}\nretry: ${this.#settings.retryInterval}\ndata: \n\n`)
    else this.#res.flushHeaders()
    if (this.#settings.keepAliveInterval > 0) {
      this.#timer = setInterval(this.#ping, this.#settings.keepAliveInterval)
      this.#timer.unref()
    }
  }

  send (message: JsonRpcMessage): Promise<void> {
    if (this.#ended) return Promise.reject(CLOSED)
    return this.write({ id: this.#journal?.record(message), message })
  }

  /** Writes an event (a new one, or one replayed from the store with its id). */
  write (event: { id: string | undefined, message: JsonRpcMessage }): Promise<void> {
    if (this.#ended) return Promise.reject(CLOSED)
    const res = this.#res
    // Checked before writing, as on HTTP+SSE streams: one large message to a reading
    // client passes, a client that stopped reading is cut off past the bound.
    if (res.writableLength > this.#settings.maxBufferedBytes) {
      this.#end('buffer_overflow')
      return Promise.reject(CLOSED)
    }
    const frame = (event.id === undefined ? '' : `id: ${event.id}\n`) + 'event: message\ndata: ' + JSON.stringify(event.message) + '\n\n'
    this.#onWrite?.(Buffer.byteLength(frame))
    if (res.write(frame)) return RESOLVED
    return new Promise((resolve, reject) => { this.#waiters.push({ resolve, reject }) })
  }

  /**
   * Whether the client is still there to read. A stream relayed to another instance asks
   * it (and ends when it is gone: an instance that died cannot say its client left).
   */
  async alive (): Promise<boolean> {
    if (this.#ended) return false
    if (this.#res.probe !== undefined && !await this.#res.probe()) this.#end('client_disconnected')
    return !this.#ended
  }

  /** Ends the response (politely: what was written still reaches the client). */
  end (): void {
    this.#end('ended')
  }

  #ping = (): void => {
    if (this.#ended || this.#res.writableNeedDrain) return
    this.#res.write(`event: ping\ndata: {"timestamp":"${new Date().toISOString()}"}\n\n`)
  }

  #onDrain = (): void => {
    const waiters = this.#waiters
    this.#waiters = []
    for (const w of waiters) w.resolve()
  }

  #onClose = (): void => {
    this.#end(this.#res.cutOff === true ? 'buffer_overflow' : 'client_disconnected')
  }

  #end (reason: 'client_disconnected' | 'buffer_overflow' | 'ended'): void {
    if (this.#ended) return
    this.#ended = true
    clearInterval(this.#timer)
    const res = this.#res
    res.off('close', this.#onClose)
    res.off('drain', this.#onDrain)
    if (reason === 'buffer_overflow') res.destroy()
    else if (!res.writableEnded) res.end()
    const waiters = this.#waiters
    this.#waiters = []
    for (const w of waiters) w.reject(CLOSED)
    this.#onEnd(reason)
  }
}

export interface PostReplyOptions {
  /** Takes the response over from Fastify (called once, before the first byte). */
  hijack: () => ResponseSink
  /** Headers already set on the reply (CORS), plus any of the route's own. */
  headers: () => OutgoingHttpHeaders
  mode: ResponseMode
  /** The POST was a batch: JSON answers are an array. */
  batch: boolean
  requestIds: JsonRpcId[]
  stream: StreamSettings
  /** A journal for this POST's stream, when events are kept for resumption. */
  journal: () => Journal | undefined
  /**
   * The client left this POST's stream before every response came. Leaving is not a
   * cancellation: the rest of the stream is kept for a `Last-Event-ID` reconnect.
   */
  detach: (journal: Journal, pending: JsonRpcId[]) => void
  /** Counts bytes written (telemetry). */
  written?: (bytes: number) => void
}

/**
 * The answer to one POST that carried requests: as `application/json` (one response, or
 * an array for a batch) once every response is in, or as an event stream when `mode` is
 * 'sse', or in 'auto' as soon as anything but a response comes first (progress, logs, a
 * server request). The POST's route waits on {@link PostReply.done}.
 */
export class PostReply implements ReplyChannel {
  readonly requestIds: JsonRpcId[]
  readonly done: Promise<void>
  readonly #opts: PostReplyOptions
  readonly #pending: Set<JsonRpcId>
  #collected: JsonRpcMessage[] = []
  #stream: EventStream | undefined
  #closing = false
  #settled = false
  #resolve!: () => void

  constructor (opts: PostReplyOptions) {
    this.#opts = opts
    this.requestIds = opts.requestIds
    this.#pending = new Set(opts.requestIds)
    this.done = new Promise(resolve => { this.#resolve = resolve })
  }

  get settled (): boolean {
    return this.#settled
  }

  /** Whether every request of the POST has had its response (not so when the client left first). */
  get complete (): boolean {
    return this.#pending.size === 0
  }

  /** A message that belongs to one of this POST's requests but is not its response. */
  push (message: JsonRpcMessage): Promise<void> {
    if (this.#settled) return Promise.reject(CLOSED)
    return this.#toStream().send(message)
  }

  /** The response to request `id`. */
  respond (id: JsonRpcId, message: JsonRpcMessage): Promise<void> {
    if (this.#settled || !this.#pending.delete(id)) return RESOLVED
    if (this.#stream !== undefined || this.#opts.mode === 'sse') {
      const sent = this.#toStream().send(message)
      if (this.#pending.size === 0) this.#stream?.end()
      return sent
    }
    this.#collected.push(message)
    if (this.#pending.size === 0) this.#writeJson()
    return RESOLVED
  }

  /**
   * Ends this POST's stream from the server's side while its requests go on (SEP-1699
   * polling): the client reconnects with Last-Event-ID and gets the rest.
   */
  closeStream (): void {
    if (this.#settled) return
    const stream = this.#toStream()
    this.#closing = true
    stream.end()
  }

  /** The session ended before every response came: end what was started. */
  abort (sessionId: string): void {
    if (this.#settled) return
    if (this.#stream !== undefined) {
      this.#stream.end()
      return
    }
    const res = this.#opts.hijack()
    if (!res.headersSent && !res.destroyed) {
      // As the table says for a session that is gone: 404 session_not_found.
      const [only] = this.#pending
      const body = jsonRpcError('session_not_found', 'The session ended before the request was answered.', {
        id: this.#pending.size === 1 ? only : undefined,
        sessionId
      })
      res.writeHead(ERROR_TABLE.session_not_found.status, { ...this.#opts.headers(), 'content-type': 'application/json; charset=utf-8' })
      res.end(JSON.stringify(body))
    } else if (!res.writableEnded) res.end()
    this.#settle()
  }

  /** Whether messages other than responses may travel on this POST (not in `json` mode). */
  get streams (): boolean {
    return this.#opts.mode !== 'json'
  }

  #toStream (): EventStream {
    if (this.#stream !== undefined) return this.#stream
    const res = this.#opts.hijack()
    const journal = this.#opts.journal()
    const stream = new EventStream(res, this.#opts.stream, journal, reason => {
      if ((reason === 'client_disconnected' || this.#closing) && journal !== undefined && this.#pending.size > 0 && !this.#settled) {
        this.#opts.detach(journal, [...this.#pending])
      }
      this.#settle()
    }, this.#opts.written)
    this.#stream = stream
    stream.open(this.#opts.headers(), true)
    // Responses collected for a batch before the switch go first.
    const collected = this.#collected
    this.#collected = []
    for (const m of collected) void stream.send(m).catch(() => {})
    return stream
  }

  #writeJson (): void {
    const res = this.#opts.hijack()
    const body = this.#opts.batch ? this.#collected : this.#collected[0]
    this.#collected = []
    if (!res.destroyed) {
      const json = JSON.stringify(body)
      const length = Buffer.byteLength(json)
      this.#opts.written?.(length)
      // With its length known, Node writes the head and the body in one go (no chunked
      // encoding, whose framing costs a writev of four buffers per answer).
      res.writeHead(200, { ...this.#opts.headers(), 'content-type': 'application/json; charset=utf-8', 'content-length': length })
      res.end(json)
    }
    this.#settle()
  }

  #settle (): void {
    if (this.#settled) return
    this.#settled = true
    this.#resolve()
  }
}

/** A POST stream the client left while requests were still running. */
interface Detached {
  journal: Journal
  pending: Set<JsonRpcId>
  /** The stream of a client that reconnected with Last-Event-ID, if any. */
  writer: EventStream | undefined
}

export interface StreamableTransportOptions {
  sessionId: string
  stream: StreamSettings
  /** Where stream events are kept for `Last-Event-ID` reconnects; undefined: not kept. */
  eventStore: McpEventStore | undefined
  /** Ends the session when no request or stream has touched it for this long (ms); 0: never. */
  idleTimeout: number
}

/**
 * The Streamable HTTP (2025-03-26 .. 2025-11-25) transport of one session, for servers of
 * either SDK line. Each POST's requests are answered on that POST's response (JSON or an
 * event stream, see {@link PostReply}); messages that belong to no request go on the
 * session's standalone GET stream, when one is open.
 */
export class StreamableSessionTransport implements SessionTransport {
  readonly kind = 'streamable'
  readonly sessionId: string
  onclose?: (() => void) | undefined
  onerror?: ((error: Error) => void) | undefined
  onmessage?: ((message: JsonRpcMessage, extra?: McpMessageExtra) => void) | undefined
  onended: ((reason: CloseReason) => void) | undefined
  /** The protocol revision the session negotiated (from the initialize result). */
  protocolVersion: string | undefined
  observer: TransportObserver | undefined = undefined

  readonly #opts: StreamableTransportOptions
  readonly #replies = new Map<JsonRpcId, PostReply>()
  /** Requests whose POST stream the client left: their messages are kept, and go to a resumed stream. */
  readonly #detached = new Map<JsonRpcId, Detached>()
  #standalone: EventStream | undefined
  /** Stream 0 is the standalone GET stream; POST streams count up from 1. */
  readonly #standaloneJournal: Journal | undefined
  #streams = 0
  /** Set once a client opened a standalone stream: from then on its messages are kept. */
  #standaloneUsed = false
  #closed = false
  #closeReason: CloseReason | undefined
  /**
   * One timer for the idle timeout, never reset per request (that would be a clearTimeout
   * and a setTimeout on every POST): it checks, when it fires, how long the session has
   * been idle, and waits again for the rest.
   */
  #idleTimer: NodeJS.Timeout | undefined
  /** When the session last became idle (no request being answered, no stream), or was touched (ms). */
  #idleSince = 0

  constructor (opts: StreamableTransportOptions) {
    this.sessionId = opts.sessionId
    this.#opts = opts
    this.#standaloneJournal = this.#journal()
    this.#armIdle()
  }

  #journal (): Journal | undefined {
    const store = this.#opts.eventStore
    return store === undefined ? undefined : new Journal(`${this.sessionId}.${this.#streams++}`, store)
  }

  /** Settings for the reply to one POST (its stream's journal and what to do if left). */
  replyHooks (): Pick<PostReplyOptions, 'journal' | 'detach' | 'written'> {
    const observer = this.observer
    return {
      ...(observer === undefined ? {} : { written: observer.written }),
      journal: () => this.#journal(),
      detach: (journal, pending) => {
        const d: Detached = { journal, pending: new Set(pending), writer: undefined }
        for (const id of pending) {
          this.#replies.delete(id)
          this.#detached.set(id, d)
        }
      }
    }
  }

  get isOpen (): boolean {
    return !this.#closed
  }

  get closeReason (): CloseReason | undefined {
    return this.#closeReason
  }

  get bufferedBytes (): number {
    return this.#standalone?.bufferedBytes ?? 0
  }

  /** True while a standalone GET stream is open. */
  get hasStream (): boolean {
    return this.#standalone !== undefined
  }

  /** Whether a standalone GET stream is open and its client still there (see {@link EventStream.alive}). */
  async streamAlive (): Promise<boolean> {
    return this.#standalone !== undefined && await this.#standalone.alive()
  }

  async start (): Promise<void> {}

  send (message: JsonRpcMessage, options?: McpSendOptions): Promise<void> {
    if (this.#closed) return Promise.reject(CLOSED)
    this.observer?.sent(message)
    const id = responseId(message)
    if (id !== undefined) {
      const reply = this.#replies.get(id)
      if (reply !== undefined) {
        this.#replies.delete(id)
        const result = message.result as { protocolVersion?: unknown, serverInfo?: unknown } | undefined
        if (typeof result?.protocolVersion === 'string' && result.serverInfo !== undefined) this.protocolVersion = result.protocolVersion
        return reply.respond(id, message)
      }
      const detached = this.#detached.get(id)
      if (detached !== undefined) {
        this.#detached.delete(id)
        detached.pending.delete(id)
        return this.#keep(detached, message)
      }
    }
    const related = options?.relatedRequestId
    if (related !== undefined) {
      const reply = this.#replies.get(related)
      // In `json` mode a POST carries its responses only; the rest goes where unrelated messages go.
      if (reply !== undefined && !reply.settled && reply.streams) return reply.push(message)
      const detached = this.#detached.get(related)
      if (detached !== undefined) return this.#keep(detached, message)
    }
    // Not tied to a live request: the standalone stream carries it, if there is one;
    // once a client has had one, what comes while it reconnects is kept for it.
    if (this.#standalone !== undefined) return this.#standalone.send(message).catch(() => {})
    if (this.#standaloneUsed) this.#standaloneJournal?.record(message)
    return RESOLVED
  }

  /** A message of a left POST stream: kept, and written to its resumed stream if any. */
  #keep (d: Detached, message: JsonRpcMessage): Promise<void> {
    const sent = d.writer === undefined ? (d.journal.record(message), RESOLVED) : d.writer.send(message).catch(() => {})
    if (d.pending.size === 0) d.writer?.end()
    return sent
  }

  /**
   * A GET with `Last-Event-ID`: replays what that stream missed (from the event store),
   * then carries what is still to come on it. 'fresh' when the id is not one of this
   * session's streams (the route then opens a plain standalone stream); 'conflict' when it
   * names the standalone stream and that is open.
   */
  async resume (lastEventId: string, open: () => { res: ResponseSink, headers: OutgoingHttpHeaders }): Promise<'resumed' | 'fresh' | 'conflict'> {
    const store = this.#opts.eventStore
    const parsed = parseEventId(lastEventId)
    if (store === undefined || parsed === undefined || parsed.sessionId !== this.sessionId) return 'fresh'
    const standalone = parsed.streamId === this.#standaloneJournal?.streamId
    if (standalone && await this.streamAlive()) return 'conflict'
    const replay = await store.after(lastEventId)
    if (replay === undefined || this.#closed) return 'fresh'
    let detached: Detached | undefined
    for (const d of this.#detached.values()) if (d.journal.streamId === replay.streamId) detached = d
    const { res, headers } = open()
    if (standalone) {
      const stream = this.#newStandalone(res)
      stream.open(headers, false)
      this.#writeReplay(stream, replay.events)
      return 'resumed'
    }
    const stream = new EventStream(res, this.#opts.stream, detached?.journal, () => {
      if (detached?.writer === stream) detached.writer = undefined
    })
    stream.open(headers, false)
    this.#writeReplay(stream, replay.events)
    if (detached !== undefined && detached.pending.size > 0 && detached.writer === undefined) detached.writer = stream
    else stream.end()
    return 'resumed'
  }

  #writeReplay (stream: EventStream, events: StoredEvent[]): void {
    for (const e of events) void stream.write(e).catch(() => {})
  }

  deliver (messages: JsonRpcMessage[], extra: McpMessageExtra, reply: PostReply | undefined): void {
    const onmessage = this.onmessage
    if (onmessage === undefined) throw new Error('the session has no MCP server connected')
    if (reply !== undefined) {
      if (this.#opts.eventStore !== undefined) extra.closeSSEStream = () => { reply.closeStream() }
      for (const id of reply.requestIds) this.#replies.set(id, reply)
      void reply.done.then(() => {
        // A client that left does not cancel its requests; their answers are dropped.
        for (const id of reply.requestIds) if (this.#replies.get(id) === reply) this.#replies.delete(id)
        this.#armIdle()
      })
    } else {
      this.#touch()
    }
    const observer = this.observer
    for (let i = 0; i < messages.length; i++) {
      const message = messages[i] as JsonRpcMessage
      if (observer === undefined) onmessage(message, extra)
      else observer.received(message, extra, () => { onmessage(message, extra) })
    }
  }

  /** Opens the standalone stream on `res`; false when one is open already (409). */
  openStream (res: ResponseSink, headers: OutgoingHttpHeaders): boolean {
    if (this.#standalone !== undefined || this.#closed) return false
    this.#newStandalone(res).open(headers, true)
    return true
  }

  #newStandalone (res: ResponseSink): EventStream {
    const stream = new EventStream(res, this.#opts.stream, this.#standaloneJournal, reason => {
      if (this.#standalone === stream) this.#standalone = undefined
      // A standalone stream that overflowed means a client that stopped reading.
      if (reason === 'buffer_overflow') this.terminate('buffer_overflow')
      else this.#armIdle()
    }, this.observer?.written)
    this.#standalone = stream
    this.#standaloneUsed = true
    return stream
  }

  close (): Promise<void> {
    this.terminate('server_closed')
    return RESOLVED
  }

  terminate (reason: CloseReason): void {
    if (this.#closed) return
    this.#closed = true
    this.#closeReason = reason
    this.#disarmIdle()
    const replies = new Set(this.#replies.values())
    this.#replies.clear()
    for (const r of replies) r.abort(this.sessionId)
    for (const d of this.#detached.values()) d.writer?.end()
    this.#detached.clear()
    this.#standalone?.end()
    this.#standalone = undefined
    if (this.#opts.eventStore !== undefined) void Promise.resolve(this.#opts.eventStore.dropSession(this.sessionId)).catch(() => {})
    this.observer?.ended()
    this.onended?.(reason)
    this.onclose?.()
  }

  #touch (): void {
    this.#idleSince = Date.now()
  }

  get #busy (): boolean {
    return this.#standalone !== undefined || this.#replies.size > 0
  }

  /** The session may have just become idle: idle time counts from now. */
  #armIdle (): void {
    if (this.#closed || this.#opts.idleTimeout <= 0 || this.#busy) return
    this.#idleSince = Date.now()
    if (this.#idleTimer === undefined) this.#waitIdle(this.#opts.idleTimeout)
  }

  #waitIdle (ms: number): void {
    this.#idleTimer = setTimeout(() => {
      this.#idleTimer = undefined
      if (this.#closed) return
      // Busy: it becomes idle later (and #armIdle notes when); look again a timeout on.
      if (this.#busy) {
        this.#waitIdle(this.#opts.idleTimeout)
        return
      }
      const left = this.#opts.idleTimeout - (Date.now() - this.#idleSince)
      if (left <= 0) this.terminate('idle_timeout')
      else this.#waitIdle(left)
    }, ms)
    this.#idleTimer.unref()
  }

  #disarmIdle (): void {
    clearTimeout(this.#idleTimer)
    this.#idleTimer = undefined
  }
}
