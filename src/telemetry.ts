import type { IncomingHttpHeaders } from 'node:http'
import { context, propagation, ProxyTracerProvider, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type Span, type Tracer, type TracerProvider } from '@opentelemetry/api'
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { McpAuthFailureReason } from './auth/types.js'
import type { JsonRpcMessage } from './mcp.js'
import type { CloseReason, TransportObserver } from './transports/transport.js'

/** Where a message came in: the two session transports, or a 2026-07-28 request. */
export type TelemetryTransport = 'sse' | 'streamable' | 'modern'

/** What the gauges read when Prometheus scrapes. */
export interface TelemetrySource {
  sessions: () => { sse: number, streamable: number }
  /** Open streams: HTTP+SSE streams, Streamable standalone GET streams, listen streams. */
  streams: () => { sse: number, streamable: number, listen: number }
  /** Redis link: undefined without Redis. */
  redisUp: () => boolean | undefined
}

export interface TelemetryOptions {
  metrics: boolean
  tracing: boolean
  /** Whether `redis` is set: only then is there an `mcp_redis_up` series (a 0 would page someone). */
  redis: boolean
}

/** The methods of MCP (every revision): other values are reported as `other`, so a client cannot grow the label set. */
const METHODS = new Set([
  'initialize', 'notifications/initialized', 'ping', 'tools/list', 'tools/call', 'prompts/list', 'prompts/get',
  'resources/list', 'resources/templates/list', 'resources/read', 'resources/subscribe', 'resources/unsubscribe',
  'completion/complete', 'logging/setLevel', 'notifications/cancelled', 'notifications/progress',
  'notifications/roots/list_changed', 'server/discover', 'subscriptions/listen', 'tasks/get', 'tasks/list',
  'tasks/result', 'tasks/cancel', 'sampling/createMessage', 'elicitation/create', 'roots/list'
])
/**
 * Tool names are the server's, but clients send them: a name becomes a label only once the
 * server listed it or served a call to it without a JSON-RPC error (so unknown tools never
 * take a slot), up to this many; the rest are `other`.
 */
const MAX_TOOL_NAMES = 100
/** Longer tool names are `other` (the MCP spec advises names of 1 to 128 characters; real ones are short). */
const MAX_TOOL_NAME_LENGTH = 64
/** The protocol revisions there are: a client's made-up version is `other`. */
const PROTOCOL_VERSIONS = new Set(['2024-11-05', '2025-03-26', '2025-06-18', '2025-11-25', '2026-07-28'])
/** As OpenTelemetry's MCP conventions advise for `mcp.server.operation.duration` and `mcp.server.session.duration`. */
const DURATION_BUCKETS = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300]

const PROTOCOL_VERSION_KEY = 'io.modelcontextprotocol/protocolVersion'

/** What the global tracer provider delegates to while no OpenTelemetry SDK is installed. */
const NO_SDK: TracerProvider = new ProxyTracerProvider().getDelegate()

/**
 * Whether an OpenTelemetry SDK is installed (now: one may be installed after the plugin is
 * registered). Without one every span is a no-op, so none is started at all. A provider
 * registered through another copy of the API is taken for an SDK (spans then go to it).
 */
function sdkInstalled (): boolean {
  const provider = trace.getTracerProvider()
  return provider instanceof ProxyTracerProvider ? provider.getDelegate() !== NO_SDK : provider !== NO_SDK
}

type Labels = 'mcp_method_name' | 'gen_ai_tool_name' | 'error_type' | 'network_transport' | 'mcp_protocol_version'

/** One JSON-RPC request being served: from arrival to its response. */
interface Operation {
  start: bigint
  method: string
  /** The tool name the client sent (a label only once known, see {@link MAX_TOOL_NAMES}). */
  tool: string | undefined
  span: Span | undefined
  done: boolean
}

/** A protocol version as a label: one of the revisions, `other`, or '' when unknown. */
function versionLabel (version: string | undefined): string {
  if (version === undefined) return ''
  return PROTOCOL_VERSIONS.has(version) ? version : 'other'
}

/** A JSON-RPC error (or no answer at all) says nothing about whether the tool exists. */
function servedWithoutRpcError (errorType: string): boolean {
  return errorType === '' || errorType === 'tool_error'
}

function params (message: JsonRpcMessage): Record<string, unknown> | undefined {
  const p = message.params
  return typeof p === 'object' && p !== null && !Array.isArray(p) ? p as Record<string, unknown> : undefined
}

function requestId (message: JsonRpcMessage): string | number | undefined {
  return typeof message.id === 'string' || typeof message.id === 'number' ? message.id : undefined
}

/** What `error.type` is for an answer: the JSON-RPC error code, `tool_error` for a tool result with isError, else none. */
function errorTypeOf (message: JsonRpcMessage): string {
  const error = message.error as { code?: unknown } | undefined
  if (error !== undefined) return typeof error.code === 'number' ? String(error.code) : '_OTHER'
  return (message.result as { isError?: unknown } | undefined)?.isError === true ? 'tool_error' : ''
}

/**
 * Metrics (prom-client) and traces (@opentelemetry/api) by the OpenTelemetry MCP semantic
 * conventions, plus what operators of this plugin watch. The transports and the store
 * report to it; it keeps nothing of a message but its method, ids and timing.
 */
export class Telemetry {
  /** The plugin's metrics: merge it into your own registry, or serve it with `metrics.path`. */
  readonly registry: Registry | undefined
  readonly #tracer: Tracer | undefined
  readonly #tools = new Set<string>()
  readonly #operation: Histogram<Labels> | undefined
  readonly #session: Histogram<'network_transport' | 'mcp_protocol_version' | 'mcp_transport' | 'reason'> | undefined
  readonly #opened: Counter<'mcp_transport'> | undefined
  readonly #closed: Counter<'mcp_transport' | 'reason'> | undefined
  readonly #received: Counter<'mcp_transport'> | undefined
  readonly #sent: Counter<'mcp_transport'> | undefined
  readonly #bytes: Counter<'mcp_transport'> | undefined
  readonly #errors: Counter<'type' | 'status'> | undefined
  readonly #authFailures: Counter<'reason'> | undefined
  readonly #forwards: Counter<'kind' | 'outcome'> | undefined
  readonly #forwardTime: Histogram<'kind'> | undefined

  constructor (opts: TelemetryOptions, source: TelemetrySource) {
    this.#tracer = opts.tracing ? trace.getTracer('fastify-mcp-sse') : undefined
    if (!opts.metrics) {
      this.registry = undefined
      return
    }
    const registers = [new Registry()]
    this.registry = registers[0]
    this.#operation = new Histogram({
      name: 'mcp_server_operation_duration_seconds',
      help: 'Duration of MCP requests served (OpenTelemetry mcp.server.operation.duration)',
      labelNames: ['mcp_method_name', 'gen_ai_tool_name', 'error_type', 'network_transport', 'mcp_protocol_version'],
      buckets: DURATION_BUCKETS,
      registers
    })
    this.#session = new Histogram({
      name: 'mcp_server_session_duration_seconds',
      help: 'Duration of MCP sessions (OpenTelemetry mcp.server.session.duration)',
      labelNames: ['network_transport', 'mcp_protocol_version', 'mcp_transport', 'reason'],
      buckets: [1, 5, 30, 60, 300, 600, 1800, 3600, 14400, 86400],
      registers
    })
    const gauge = (name: string, help: string, read: (g: Gauge<'mcp_transport'>) => void): void => {
      // eslint-disable-next-line no-new
      new Gauge({ name, help, labelNames: ['mcp_transport'], registers, collect () { read(this) } })
    }
    gauge('mcp_sessions_open', 'Sessions open on this instance, by transport', g => {
      const s = source.sessions()
      g.set({ mcp_transport: 'sse' }, s.sse)
      g.set({ mcp_transport: 'streamable' }, s.streamable)
    })
    gauge('mcp_streams_open', 'Streams open on this instance: HTTP+SSE, Streamable GET streams, 2026-07-28 listen streams', g => {
      const s = source.streams()
      g.set({ mcp_transport: 'sse' }, s.sse)
      g.set({ mcp_transport: 'streamable' }, s.streamable)
      g.set({ mcp_transport: 'modern' }, s.listen)
    })
    if (opts.redis) {
      // eslint-disable-next-line no-new
      new Gauge({
        name: 'mcp_redis_up',
        help: '1 while the link to Redis is up (absent without Redis)',
        registers,
        collect () { this.set(source.redisUp() === true ? 1 : 0) }
      })
    }
    this.#opened = new Counter({ name: 'mcp_sessions_opened_total', help: 'Sessions opened', labelNames: ['mcp_transport'], registers })
    this.#closed = new Counter({ name: 'mcp_sessions_closed_total', help: 'Sessions ended, by reason (buffer_overflow: a client that stopped reading was cut off)', labelNames: ['mcp_transport', 'reason'], registers })
    this.#received = new Counter({ name: 'mcp_messages_received_total', help: 'JSON-RPC messages from clients', labelNames: ['mcp_transport'], registers })
    this.#sent = new Counter({ name: 'mcp_messages_sent_total', help: 'JSON-RPC messages to clients', labelNames: ['mcp_transport'], registers })
    this.#bytes = new Counter({ name: 'mcp_bytes_written_total', help: 'Bytes of events written to session streams', labelNames: ['mcp_transport'], registers })
    this.#errors = new Counter({ name: 'mcp_http_errors_total', help: 'Requests answered with an error, by error type (authentication_error, rate_limited, ...) and status', labelNames: ['type', 'status'], registers })
    this.#authFailures = new Counter({ name: 'mcp_auth_failures_total', help: 'Requests the auth provider refused, by reason (missing_credentials, invalid_credentials, expired, insufficient_scope, provider_error)', labelNames: ['reason'], registers })
    this.#forwards = new Counter({ name: 'mcp_cluster_forwards_total', help: 'Messages and requests sent to the instance holding their session', labelNames: ['kind', 'outcome'], registers })
    this.#forwardTime = new Histogram({ name: 'mcp_cluster_forward_duration_seconds', help: 'Time to hand a message or request to the instance holding its session', labelNames: ['kind'], buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1], registers })
  }

  /** What a session's transport reports to: its messages, timed and traced. */
  observe (sessionId: string, transport: 'sse' | 'streamable', protocolVersion: () => string | undefined): TransportObserver | undefined {
    if (this.registry === undefined && this.#tracer === undefined) return undefined
    const ops = new Map<string | number, Operation>()
    let version: string | undefined
    // This transport's series, looked up once (not per message).
    const received = this.#received?.labels({ mcp_transport: transport })
    const sent = this.#sent?.labels({ mcp_transport: transport })
    const bytes = this.#bytes?.labels({ mcp_transport: transport })
    return {
      received: (message, extra, deliver) => {
        received?.inc()
        const method = typeof message.method === 'string' ? message.method : undefined
        if (method === undefined) {
          deliver()
          return
        }
        const id = requestId(message)
        const op = this.#start(message, method, { transport: 'tcp', sessionId, version: version ?? protocolVersion(), headers: extra.requestInfo?.headers })
        if (id !== undefined) ops.set(id, op)
        this.#run(op, deliver)
        // A notification is done once handed over (only requests are timed).
        if (id === undefined) op.span?.end()
        // The SDK never answers a cancelled request: its operation ends here, or it would stay open with the session.
        if (method === 'notifications/cancelled') {
          const cancelled = params(message)?.requestId
          const target = typeof cancelled === 'string' || typeof cancelled === 'number' ? ops.get(cancelled) : undefined
          if (target !== undefined) {
            ops.delete(cancelled as string | number)
            this.#finish(target, 'cancelled', version ?? protocolVersion())
          }
        }
      },
      sent: message => {
        sent?.inc()
        const id = requestId(message)
        if (id === undefined || typeof message.method === 'string') return
        const op = ops.get(id)
        if (op === undefined) return
        ops.delete(id)
        const result = message.result as { protocolVersion?: unknown, tools?: unknown } | undefined
        if (op.method === 'initialize' && typeof result?.protocolVersion === 'string') version = result.protocolVersion
        if (op.method === 'tools/list') this.#listed(result?.tools)
        this.#finish(op, errorTypeOf(message), version ?? protocolVersion())
      },
      written: n => { bytes?.inc(n) },
      ended: () => {
        for (const op of ops.values()) this.#finish(op, 'cancelled', version ?? protocolVersion())
        ops.clear()
      }
    }
  }

  /**
   * A 2026-07-28 request: one message, one operation, answered when its HTTP response
   * ends. `run` serves it inside the operation's trace context.
   */
  async modern<T> (message: unknown, headers: IncomingHttpHeaders, run: () => Promise<T>, errorType: (result: T) => string, closed?: AbortSignal): Promise<T> {
    const m = (typeof message === 'object' && message !== null ? message : {}) as JsonRpcMessage
    this.#received?.inc({ mcp_transport: 'modern' })
    const method = typeof m.method === 'string' ? m.method : 'other'
    const meta = params(m)?._meta as Record<string, unknown> | undefined
    const version = typeof meta?.[PROTOCOL_VERSION_KEY] === 'string' ? meta[PROTOCOL_VERSION_KEY] : undefined
    const op = this.#start(m, method, { transport: 'tcp', sessionId: undefined, version, headers })
    // A request whose stream closed is cancelled: it ends now, whether or not the SDK ever settles it.
    const onClosed = (): void => { this.#finish(op, 'cancelled', version) }
    closed?.addEventListener('abort', onClosed, { once: true })
    let outcome = '_OTHER'
    try {
      const result = await (op.span === undefined ? run() : context.with(trace.setSpan(this.#parent(m, headers), op.span), run))
      outcome = errorType(result)
      return result
    } finally {
      closed?.removeEventListener('abort', onClosed)
      this.#sent?.inc({ mcp_transport: 'modern' })
      this.#finish(op, outcome, version)
    }
  }

  /**
   * What a 2026-07-28 answer says: its HTTP status when >= 400; else a reader that the
   * route feeds the body to as it writes it (no second copy of the body is made), whose
   * `outcome` is the JSON-RPC error code or `tool_error` of the response to `message`, ''
   * for a result, `cancelled` if the client left first. Nothing is read when telemetry is
   * off.
   */
  answer (message: unknown, response: Response): string | AnswerReader {
    if (response.status >= 400) return String(response.status)
    if ((this.registry === undefined && this.#tracer === undefined) || response.body === null) return ''
    const id = requestId((typeof message === 'object' && message !== null ? message : {}) as JsonRpcMessage)
    return new AnswerReader(id, (response.headers.get('content-type') ?? '').includes('text/event-stream'))
  }

  sessionOpened (transport: 'sse' | 'streamable'): void {
    this.#opened?.inc({ mcp_transport: transport })
  }

  sessionEnded (transport: 'sse' | 'streamable', createdAt: number, reason: CloseReason, protocolVersion: string | undefined): void {
    this.#closed?.inc({ mcp_transport: transport, reason })
    this.#session?.observe({ network_transport: 'tcp', mcp_protocol_version: versionLabel(protocolVersion), mcp_transport: transport, reason }, (Date.now() - createdAt) / 1000)
  }

  /** A request answered with one of the plugin's errors (auth failures and rate limits among them). */
  httpError (type: string, status: number): void {
    this.#errors?.inc({ type, status: String(status) })
  }

  /** A request the auth provider refused; `reason` is one of a fixed few. */
  authFailed (reason: McpAuthFailureReason): void {
    this.#authFailures?.inc({ reason })
  }

  /** Times a hand-over to another instance; `outcome` names what came of it. */
  async forwarded<T> (kind: 'forward' | 'relay', send: () => Promise<T>, outcome: (result: T) => string): Promise<T> {
    if (this.#forwards === undefined) return await send()
    const start = process.hrtime.bigint()
    try {
      const result = await send()
      this.#forwards.inc({ kind, outcome: outcome(result) })
      return result
    } catch (err) {
      this.#forwards.inc({ kind, outcome: 'error' })
      throw err
    } finally {
      this.#forwardTime?.observe({ kind }, Number(process.hrtime.bigint() - start) / 1e9)
    }
  }

  /** A tool's label: its name once known (listed, or served without a JSON-RPC error) and while there are slots, else `other`. */
  #toolLabel (name: string, errorType: string): string {
    if (this.#tools.has(name)) return name
    if (!servedWithoutRpcError(errorType) || !this.#take(name)) return 'other'
    return name
  }

  #take (name: string): boolean {
    if (name === '' || name.length > MAX_TOOL_NAME_LENGTH || this.#tools.size >= MAX_TOOL_NAMES) return false
    this.#tools.add(name)
    return true
  }

  /** The tools a server listed are its own: their names take slots first. */
  #listed (tools: unknown): void {
    if (!Array.isArray(tools)) return
    for (const tool of tools) {
      const name = (tool as { name?: unknown } | null)?.name
      if (typeof name === 'string' && !this.#tools.has(name)) this.#take(name)
    }
  }

  #start (message: JsonRpcMessage, method: string, at: { transport: string, sessionId: string | undefined, version: string | undefined, headers: IncomingHttpHeaders | undefined }): Operation {
    const p = params(message)
    const known = METHODS.has(method)
    const tool = method === 'tools/call' ? (typeof p?.name === 'string' ? p.name : '') : undefined
    const op: Operation = { start: process.hrtime.bigint(), method: known ? method : 'other', tool, span: undefined, done: false }
    const tracer = this.#tracer
    if (tracer === undefined || !sdkInstalled()) return op
    // The conventions' span name: the method, then its target (the tool or prompt name);
    // a resource's URI is an attribute, never in the name (unbounded, and may carry data).
    const target = (method === 'tools/call' || method === 'prompts/get') && typeof p?.name === 'string' ? p.name : undefined
    const attributes: Record<string, string | number> = { 'mcp.method.name': method, 'network.transport': at.transport, 'network.protocol.name': 'http' }
    const id = requestId(message)
    if (id !== undefined) attributes['jsonrpc.request.id'] = String(id)
    if (at.sessionId !== undefined) attributes['mcp.session.id'] = at.sessionId
    if (at.version !== undefined) attributes['mcp.protocol.version'] = at.version.slice(0, MAX_TOOL_NAME_LENGTH)
    if (method === 'tools/call' && typeof p?.name === 'string') {
      attributes['gen_ai.tool.name'] = p.name
      attributes['gen_ai.operation.name'] = 'execute_tool'
    } else if (method === 'prompts/get' && typeof p?.name === 'string') attributes['gen_ai.prompt.name'] = p.name
    else if (typeof p?.uri === 'string') attributes['mcp.resource.uri'] = p.uri
    // A made-up method keeps its span name bounded too.
    const name = known ? method : 'other'
    op.span = tracer.startSpan(target === undefined ? name : `${name} ${target}`, { kind: SpanKind.SERVER, attributes }, this.#parent(message, at.headers))
    return op
  }

  /**
   * The parent of a message's span: `_meta.traceparent` when the client sent one; else the
   * active span (an HTTP instrumentation's server span, which already took the header);
   * else the HTTP request's `traceparent` header.
   */
  #parent (message: JsonRpcMessage, headers: IncomingHttpHeaders | undefined): Context {
    const meta = params(message)?._meta as Record<string, unknown> | undefined
    if (typeof meta?.traceparent === 'string') return propagation.extract(ROOT_CONTEXT, meta)
    const active = context.active()
    if (headers === undefined || trace.getSpan(active) !== undefined) return active
    return propagation.extract(active, headers)
  }

  /** Hands the message to the server inside its span's context, so the tool's own spans are its children. */
  #run (op: Operation, deliver: () => void): void {
    if (op.span === undefined) deliver()
    else context.with(trace.setSpan(context.active(), op.span), deliver)
  }

  /** Ends an operation once (a cancelled one may still be settled later). */
  #finish (op: Operation, errorType: string, version: string | undefined): void {
    if (op.done) return
    op.done = true
    const seconds = Number(process.hrtime.bigint() - op.start) / 1e9
    this.#operation?.observe({
      mcp_method_name: op.method,
      gen_ai_tool_name: op.tool === undefined ? '' : this.#toolLabel(op.tool, errorType),
      error_type: errorType,
      network_transport: 'tcp',
      mcp_protocol_version: versionLabel(version)
    }, seconds)
    const span = op.span
    if (span === undefined) return
    if (version !== undefined) span.setAttribute('mcp.protocol.version', version.slice(0, MAX_TOOL_NAME_LENGTH))
    if (errorType !== '') {
      span.setAttribute('error.type', errorType)
      span.setStatus({ code: SpanStatusCode.ERROR })
    }
    span.end()
  }
}


/** Bodies larger than this are not parsed for their outcome (it is reported as ''). */
const MAX_ANSWER_BYTES = 4 * 1024 * 1024

/**
 * Reads a 2026-07-28 answer for its outcome as its bytes go out: a JSON body whole, a
 * stream event by event (keeping only the unfinished one), until the response to `id`.
 */
export class AnswerReader {
  readonly #id: string | number | undefined
  readonly #sse: boolean
  readonly #decoder = new TextDecoder()
  #text = ''
  #outcome: string | undefined
  #tooLarge = false

  constructor (id: string | number | undefined, sse: boolean) {
    this.#id = id
    this.#sse = sse
  }

  /** A chunk of the body, as written to the client. */
  feed (chunk: Uint8Array): void {
    if (this.#outcome !== undefined || this.#tooLarge) return
    this.#text += this.#decoder.decode(chunk, { stream: true })
    if (this.#sse) {
      let end: number
      while (this.#outcome === undefined && (end = this.#text.search(/\r?\n\r?\n/)) !== -1) {
        const event = this.#text.slice(0, end)
        this.#text = this.#text.slice(end).replace(/^\r?\n\r?\n/, '')
        const data = event.split(/\r?\n/).filter(l => l.startsWith('data:')).map(l => l.slice(5).replace(/^ /, '')).join('\n')
        if (data !== '') this.#look(data)
      }
    }
    if (this.#text.length > MAX_ANSWER_BYTES) {
      this.#tooLarge = true
      this.#text = ''
    }
  }

  /** The outcome once the body is written (or the client left: `cancelled`). */
  outcome (clientLeft: boolean): string {
    if (this.#outcome !== undefined) return this.#outcome
    if (clientLeft) return 'cancelled'
    if (!this.#sse && !this.#tooLarge) this.#look(this.#text)
    return this.#outcome ?? ''
  }

  #look (data: string): void {
    let parsed: unknown
    try { parsed = JSON.parse(data) } catch { return }
    for (const m of Array.isArray(parsed) ? parsed : [parsed]) {
      const msg = m as JsonRpcMessage
      if (typeof msg !== 'object' || msg === null || typeof msg.method === 'string') continue
      if (this.#id === undefined || msg.id === this.#id) this.#outcome = errorTypeOf(msg)
    }
  }
}
