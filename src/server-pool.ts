/** Most callers whose idle servers are kept; past it the least recently served goes first. */
const MAX_KEYS = 1000

/**
 * Idle MCP servers kept between sessionless requests (stateless 2025 POSTs, 2026-07-28
 * requests), by the caller they were built for, so that the factory's work is not redone
 * for every request. A server serves one request at a time: it is out of the pool while
 * it does, and comes back only to the key it was built for, so nothing of one caller's
 * request meets another's. What does not fit (a caller's pool full, the least recently
 * served caller dropped, the pool closed) is handed to `dispose`, which closes it.
 */
export class ServerPool<T> {
  readonly #idle = new Map<string, T[]>()
  readonly #max: number
  readonly #maxKeys: number
  readonly #dispose: (item: T) => void
  #closed = false

  /**
   * @param max idle servers kept per key (at least 1).
   * @param dispose closes a server the pool lets go.
   */
  constructor (max: number, dispose: (item: T) => void, maxKeys = MAX_KEYS) {
    this.#max = max
    this.#dispose = dispose
    this.#maxKeys = maxKeys
  }

  /** An idle server of this caller, out of the pool until given back; undefined if none. */
  take (key: string): T | undefined {
    const idle = this.#idle.get(key)
    const item = idle?.pop()
    if (idle !== undefined && idle.length === 0) this.#idle.delete(key)
    return item
  }

  /** Gives a server back once its request is answered; it is disposed of if it does not fit. */
  give (key: string, item: T): void {
    if (this.#closed) {
      this.#dispose(item)
      return
    }
    let idle = this.#idle.get(key)
    if (idle === undefined) {
      if (this.#idle.size >= this.#maxKeys) {
        const [oldest, servers] = this.#idle.entries().next().value as [string, T[]]
        this.#idle.delete(oldest)
        for (const s of servers) this.#dispose(s)
      }
      idle = []
    } else {
      // Most recently served last: the first key is the one to drop.
      this.#idle.delete(key)
    }
    this.#idle.set(key, idle)
    if (idle.length < this.#max) idle.push(item)
    else this.#dispose(item)
  }

  /** Idle servers kept now. */
  get size (): number {
    let n = 0
    for (const idle of this.#idle.values()) n += idle.length
    return n
  }

  /** Closes the pool: what is in it is returned, and what comes back later is disposed of. */
  close (): T[] {
    this.#closed = true
    const all = [...this.#idle.values()].flat()
    this.#idle.clear()
    return all
  }
}
