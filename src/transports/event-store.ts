import type { JsonRpcMessage } from '../mcp.js'

/** One stored event of a stream. */
export interface StoredEvent {
  id: string
  message: JsonRpcMessage
}

/**
 * Where Streamable HTTP streams keep their events, so a client that lost a stream can
 * reconnect with `Last-Event-ID` and get exactly what it missed. Event ids are made by the
 * transport: `<streamId>.<seq>`, where a stream id is `<sessionId>.<n>`; so an id names
 * its stream and its session. A small interface, so the store can live elsewhere (Redis)
 * when sessions are shared between instances.
 */
export interface McpEventStore {
  /** Keeps one event of a stream. */
  append (streamId: string, event: StoredEvent): void | Promise<void>
  /**
   * The events of `lastEventId`'s stream that come after it, oldest first; undefined when
   * that stream is unknown here or has expired.
   */
  after (lastEventId: string): Promise<{ streamId: string, events: StoredEvent[] } | undefined>
  /** Forgets the streams of a session that ended. */
  dropSession (sessionId: string): void | Promise<void>
}

export interface MemoryEventStoreOptions {
  /** Most events kept per session (the oldest go first). @default 1000 */
  maxEvents?: number
  /** Most bytes of events kept per session (the oldest go first). @default 1048576 */
  maxBytes?: number
  /** How long an event is kept, in ms. @default 300000 */
  ttl?: number
}

interface Kept extends StoredEvent {
  streamId: string
  seq: number
  bytes: number
  at: number
}

interface SessionEvents {
  events: Kept[]
  bytes: number
}

/** Splits `<sessionId>.<n>.<seq>` into its stream id, session id and sequence number. */
export function parseEventId (id: string): { streamId: string, sessionId: string, seq: number } | undefined {
  const last = id.lastIndexOf('.')
  const first = id.indexOf('.')
  if (first <= 0 || last === first) return undefined
  const seq = Number(id.slice(last + 1))
  if (!Number.isSafeInteger(seq) || seq < 0) return undefined
  return { streamId: id.slice(0, last), sessionId: id.slice(0, first), seq }
}

/** The default event store: in this process, bounded per session by count, bytes and age. */
export class MemoryEventStore implements McpEventStore {
  readonly #sessions = new Map<string, SessionEvents>()
  readonly #maxEvents: number
  readonly #maxBytes: number
  readonly #ttl: number

  constructor (options: MemoryEventStoreOptions = {}) {
    this.#maxEvents = options.maxEvents ?? 1000
    this.#maxBytes = options.maxBytes ?? 1024 * 1024
    this.#ttl = options.ttl ?? 300_000
  }

  append (streamId: string, event: StoredEvent): void {
    const parsed = parseEventId(event.id)
    if (parsed === undefined) return
    let s = this.#sessions.get(parsed.sessionId)
    if (s === undefined) {
      s = { events: [], bytes: 0 }
      this.#sessions.set(parsed.sessionId, s)
    }
    const bytes = JSON.stringify(event.message).length
    s.events.push({ ...event, streamId, seq: parsed.seq, bytes, at: Date.now() })
    s.bytes += bytes
    this.#trim(s)
  }

  async after (lastEventId: string): Promise<{ streamId: string, events: StoredEvent[] } | undefined> {
    const parsed = parseEventId(lastEventId)
    if (parsed === undefined) return undefined
    const s = this.#sessions.get(parsed.sessionId)
    if (s !== undefined) this.#trim(s)
    const mine = s === undefined ? [] : s.events.filter(e => e.streamId === parsed.streamId)
    // Events after the client's last one were dropped (bounds, age): no exact replay.
    if (mine.length > 0 && (mine[0] as Kept).seq > parsed.seq + 1) return undefined
    return {
      streamId: parsed.streamId,
      events: mine.filter(e => e.seq > parsed.seq).map(e => ({ id: e.id, message: e.message }))
    }
  }

  dropSession (sessionId: string): void {
    this.#sessions.delete(sessionId)
  }

  #trim (s: SessionEvents): void {
    const oldest = Date.now() - this.#ttl
    let drop = 0
    let bytes = s.bytes
    while (drop < s.events.length) {
      const e = s.events[drop] as Kept
      if (e.at >= oldest && s.events.length - drop <= this.#maxEvents && bytes <= this.#maxBytes) break
      bytes -= e.bytes
      drop++
    }
    if (drop > 0) {
      s.events.splice(0, drop)
      s.bytes = bytes
    }
  }
}
