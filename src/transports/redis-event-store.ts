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

/**
 * An event store in Redis, so that a client may resume its stream on any instance: one
 * Redis stream per session (`<keyPrefix>events:<sessionId>`), each entry holding an event
 * id, its stream id and the JSON message. Same answers as the MemoryEventStore: an exact
 * replay of what a stream missed, or undefined when some of it is gone.
 *
 * Commands go out on one connection in the order they are issued, so an `after` sees
 * every `append` made before it. While the connection is down nothing waits for it:
 * `append` and `dropSession` reject at once (the events are lost, a later replay finds
 * the gap) and `after` rejects with FST_ERR_MCP_SSE_REDIS_UNAVAILABLE (answered 503).
 */
export class RedisEventStore implements McpEventStore {
  readonly #redis: Redis
  readonly #owned: boolean
  readonly #prefix: string
  readonly #maxEvents: number
  readonly #ttl: number

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
  }

  #key (sessionId: string): string {
    return `${this.#prefix}events:${sessionId}`
  }

  #requireReady (): void {
    if (this.#redis.status !== 'ready') throw new FST_ERR_MCP_SSE_REDIS_UNAVAILABLE(`the event store's connection is ${this.#redis.status}`)
  }

  async append (streamId: string, event: StoredEvent): Promise<void> {
    const parsed = parseEventId(event.id)
    if (parsed === undefined) return
    this.#requireReady()
    const key = this.#key(parsed.sessionId)
    // Exact MAXLEN, not `~`: an approximate trim only drops whole radix-tree nodes (100
    // entries by default), so a session could keep far more than maxEvents and a replay
    // the memory store refuses would succeed. Trimming one entry per append is cheap.
    await this.#redis.multi()
      .xadd(key, 'MAXLEN', this.#maxEvents, '*', 'id', event.id, 'stream', streamId, 'message', JSON.stringify(event.message))
      .pexpire(key, this.#ttl)
      .exec()
  }

  async after (lastEventId: string): Promise<{ streamId: string, events: StoredEvent[] } | undefined> {
    const parsed = parseEventId(lastEventId)
    if (parsed === undefined) return undefined
    this.#requireReady()
    const entries = await this.#redis.xrange(this.#key(parsed.sessionId), '-', '+').catch((err: Error) => {
      throw new FST_ERR_MCP_SSE_REDIS_UNAVAILABLE(err.message)
    })
    // Fields are written in this order by append: id, stream, message.
    const mine = entries
      .filter(([, fields]) => fields[3] === parsed.streamId)
      .map(([, fields]) => ({ id: fields[1], seq: Number(fields[1].slice(fields[1].lastIndexOf('.') + 1)), json: fields[5] }))
    // Events after the client's last one were dropped (trimmed, or lost while Redis was
    // down): no exact replay.
    if (mine.length > 0 && mine[0].seq > parsed.seq + 1) return undefined
    return {
      streamId: parsed.streamId,
      events: mine.filter(e => e.seq > parsed.seq).map(e => ({ id: e.id, message: JSON.parse(e.json) as JsonRpcMessage }))
    }
  }

  async dropSession (sessionId: string): Promise<void> {
    this.#requireReady()
    await this.#redis.del(this.#key(sessionId))
  }

  /** Closes the connection the store opened for a `url`; a `client` you passed stays open. */
  async close (): Promise<void> {
    if (!this.#owned) return
    if (this.#redis.status === 'ready') await this.#redis.quit()
    else this.#redis.disconnect()
  }
}
