import { Redis } from 'ioredis'
import { FST_ERR_MCP_SSE_INVALID_OPTION, FST_ERR_MCP_SSE_REDIS_UNAVAILABLE } from '../errors.js'
import type { JsonRpcMessage } from '../mcp.js'
import { parseEventId, type McpEventStore, type StoredEvent } from './event-store.js'

export interface RedisEventStoreOptions {
  /** An `ioredis` client you own: the store uses it as it is and never quits it. Pass this or `url`. */
  client?: Redis
  /** Or a Redis URL, such as "redis://127.0.0.1:6379": the store opens its own connection (see `close`). */
  url?: string
  /** Put before every key the store writes (`<keyPrefix>events:<sessionId>`). @default 'mcp:' */
  keyPrefix?: string
  /** Most events kept per session (the oldest go first). @default 1000 */
  maxEvents?: number
  /** How long a session's events are kept after its last event, in ms. @default 300000 */
  ttl?: number
}

/** An event that did not reach Redis, kept by the instance that made it. */
interface Unsaved {
  streamId: string
  seq: number
  event: StoredEvent
}

/**
 * An event store in Redis, so that a client may resume its stream on any instance: one
 * Redis stream per session (`<keyPrefix>events:<sessionId>`), each entry holding an event
 * id, its stream id and the JSON message. Same answers as the MemoryEventStore: an exact
 * replay of what a stream missed, or undefined when some of it is gone.
 *
 * Commands go out on one connection in the order they are issued, so an `after` sees
 * every `append` made before it. While the connection is down nothing waits for it:
 * `append` rejects at once but keeps the event in this process (at most `maxEvents` per
 * session), which writes it when the connection is ready again; until then its own
 * `after` replays it (resumptions are served by the instance holding the session, the
 * one that made the events). `dropSession` rejects at once, and `after` rejects with
 * FST_ERR_MCP_SSE_REDIS_UNAVAILABLE (answered 503). A replay never skips an event: ids
 * carry a per-stream sequence, and one with a hole in it is refused (undefined).
 */
export class RedisEventStore implements McpEventStore {
  readonly #redis: Redis
  readonly #owned: boolean
  readonly #prefix: string
  readonly #maxEvents: number
  readonly #ttl: number
  /** Appends that did not reach Redis, per session, in the order they were made. */
  readonly #unsaved = new Map<string, Unsaved[]>()
  #flushing = false

  constructor (options: RedisEventStoreOptions) {
    if ((options.client === undefined) === (options.url === undefined)) {
      throw new FST_ERR_MCP_SSE_INVALID_OPTION('RedisEventStore', 'Pass exactly one of { client } (an ioredis instance) or { url } ("redis://host:6379").')
    }
    this.#prefix = options.keyPrefix ?? 'mcp:'
    this.#maxEvents = options.maxEvents ?? 1000
    this.#ttl = options.ttl ?? 300_000
    this.#owned = options.client === undefined
    this.#redis = options.client ?? new Redis(options.url as string, {
      // Fail fast while Redis is away instead of queueing commands until it is back.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 5000,
      retryStrategy: times => Math.min(100 * times, 2000)
    })
    // ioredis reports each failed reconnect; the calls that fail meanwhile say enough.
    if (this.#owned) this.#redis.on('error', () => {})
    this.#redis.on('ready', this.#onReady)
  }

  #onReady = (): void => { void this.#flush() }

  #key (sessionId: string): string {
    return `${this.#prefix}events:${sessionId}`
  }

  #requireReady (): void {
    if (this.#redis.status !== 'ready') throw new FST_ERR_MCP_SSE_REDIS_UNAVAILABLE(`the event store's connection is ${this.#redis.status}`)
  }

  async append (streamId: string, event: StoredEvent): Promise<void> {
    const parsed = parseEventId(event.id)
    if (parsed === undefined) return
    const item: Unsaved = { streamId, seq: parsed.seq, event }
    if (this.#redis.status !== 'ready') {
      this.#keep(parsed.sessionId, item)
      this.#requireReady()
    }
    if (this.#unsaved.has(parsed.sessionId)) {
      // Behind the session's earlier events that wait for Redis; it fails like them
      // while it is not written (it stays kept, and goes with them).
      this.#keep(parsed.sessionId, item)
      await this.#flush()
      if (this.#unsaved.get(parsed.sessionId)?.includes(item) === true) throw new FST_ERR_MCP_SSE_REDIS_UNAVAILABLE('the event waits, kept, behind earlier ones')
      return
    }
    try {
      await this.#write(parsed.sessionId, [item])
    } catch (err) {
      this.#keep(parsed.sessionId, item)
      throw err instanceof FST_ERR_MCP_SSE_REDIS_UNAVAILABLE ? err : new FST_ERR_MCP_SSE_REDIS_UNAVAILABLE((err as Error).message)
    }
  }

  /** Writes events of one session; rejects when any did not reach Redis. */
  async #write (sessionId: string, items: Unsaved[]): Promise<void> {
    const key = this.#key(sessionId)
    const multi = this.#redis.multi()
    // Exact MAXLEN, not `~`: an approximate trim only drops whole radix-tree nodes (100
    // entries by default), so a session could keep far more than maxEvents and a replay
    // the memory store refuses would succeed. Trimming one entry per append is cheap.
    for (const { streamId, event } of items) {
      multi.xadd(key, 'MAXLEN', this.#maxEvents, '*', 'id', event.id, 'stream', streamId, 'message', JSON.stringify(event.message))
    }
    const results = await multi.pexpire(key, this.#ttl).exec()
    const failed = results?.find(([err]) => err !== null)
    if (results === null || failed !== undefined) throw new FST_ERR_MCP_SSE_REDIS_UNAVAILABLE(failed?.[0]?.message ?? 'the transaction was aborted')
  }

  /** Keeps an event that did not reach Redis; past maxEvents the oldest goes (a replay then finds the hole). */
  #keep (sessionId: string, item: Unsaved): void {
    let kept = this.#unsaved.get(sessionId)
    if (kept === undefined) {
      kept = []
      this.#unsaved.set(sessionId, kept)
    }
    if (!kept.includes(item)) kept.push(item)
    if (kept.length > this.#maxEvents) kept.shift()
  }

  /** Writes the kept events, session by session, in order; what fails stays for the next 'ready'. */
  async #flush (): Promise<void> {
    if (this.#flushing) return
    this.#flushing = true
    try {
      for (const sessionId of [...this.#unsaved.keys()]) {
        let kept = this.#unsaved.get(sessionId)
        while (kept !== undefined && kept.length > 0 && this.#redis.status === 'ready') {
          const batch = kept.slice()
          await this.#write(sessionId, batch)
          kept = this.#unsaved.get(sessionId)
          if (kept === undefined) break
          const rest = kept.filter(item => !batch.includes(item))
          if (rest.length === 0) this.#unsaved.delete(sessionId)
          else this.#unsaved.set(sessionId, rest)
          kept = rest
        }
      }
    } catch {
      // Still kept; written at the next 'ready'.
    } finally {
      this.#flushing = false
    }
  }

  async after (lastEventId: string): Promise<{ streamId: string, events: StoredEvent[] } | undefined> {
    const parsed = parseEventId(lastEventId)
    if (parsed === undefined) return undefined
    this.#requireReady()
    const entries = await this.#redis.xrange(this.#key(parsed.sessionId), '-', '+').catch((err: Error) => {
      throw new FST_ERR_MCP_SSE_REDIS_UNAVAILABLE(err.message)
    })
    const later = new Map<number, StoredEvent>()
    // Fields are written in this order by append: id, stream, message.
    for (const [, fields] of entries) {
      if (fields[3] !== parsed.streamId) continue
      const seq = Number(fields[1].slice(fields[1].lastIndexOf('.') + 1))
      if (seq > parsed.seq) later.set(seq, { id: fields[1], message: JSON.parse(fields[5]) as JsonRpcMessage })
    }
    // Events made here that have not reached Redis yet (a written one may be there too).
    for (const item of this.#unsaved.get(parsed.sessionId) ?? []) {
      if (item.streamId === parsed.streamId && item.seq > parsed.seq) later.set(item.seq, item.event)
    }
    const seqs = [...later.keys()].sort((x, y) => x - y)
    // A stream's events are numbered one by one: a hole means some were dropped (trimmed,
    // or lost with Redis while their instance is gone). No exact replay, then.
    if (seqs.some((seq, i) => seq !== parsed.seq + 1 + i)) return undefined
    return { streamId: parsed.streamId, events: seqs.map(seq => later.get(seq) as StoredEvent) }
  }

  async dropSession (sessionId: string): Promise<void> {
    this.#unsaved.delete(sessionId)
    this.#requireReady()
    await this.#redis.del(this.#key(sessionId))
  }

  /** Closes the connection the store opened for a `url`; a `client` you passed stays open. */
  async close (): Promise<void> {
    this.#redis.off('ready', this.#onReady)
    this.#unsaved.clear()
    if (!this.#owned) return
    if (this.#redis.status === 'ready') await this.#redis.quit()
    else this.#redis.disconnect()
  }
}
