import createError from '@fastify/error'
import bytes from 'bytes'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'

/**
 * What went wrong, as it appears in `error.data.type` of every JSON-RPC error body the
 * plugin writes. One entry per row of the error table in the README.
 */
export type McpErrorType =
  | 'parse_error'
  | 'invalid_request'
  | 'message_too_large'
  | 'unsupported_media_type'
  | 'session_not_found'
  | 'authentication_error'
  | 'forbidden_origin'
  | 'too_many_sessions'
  | 'message_handler_error'
  | 'service_unavailable'
  | 'not_acceptable'
  | 'method_not_allowed'
  | 'conflict'
  | 'rate_limited'
  | 'internal_error'

/** HTTP status and JSON-RPC error code of each error type: the one place both are declared. */
export const ERROR_TABLE: Readonly<Record<McpErrorType, { status: number, code: number }>> = {
  parse_error: { status: 400, code: -32700 },
  invalid_request: { status: 400, code: -32600 },
  message_too_large: { status: 413, code: -32000 },
  unsupported_media_type: { status: 415, code: -32000 },
  session_not_found: { status: 404, code: -32001 },
  authentication_error: { status: 401, code: -32000 },
  forbidden_origin: { status: 403, code: -32000 },
  too_many_sessions: { status: 503, code: -32000 },
  message_handler_error: { status: 500, code: -32603 },
  service_unavailable: { status: 503, code: -32000 },
  not_acceptable: { status: 406, code: -32000 },
  method_not_allowed: { status: 405, code: -32000 },
  conflict: { status: 409, code: -32000 },
  rate_limited: { status: 429, code: -32000 },
  internal_error: { status: 500, code: -32603 }
}

/** The JSON-RPC 2.0 error body written for every failed request. */
export interface JsonRpcErrorBody {
  jsonrpc: '2.0'
  id: string | number | null
  error: {
    code: number
    message: string
    data: {
      type: McpErrorType
      method: string | null
      sessionId: string | null
      connectionActive: boolean
    }
  }
}

// Register-time errors: thrown from `register` when an option is wrong.
export const FST_ERR_MCP_SSE_INVALID_OPTION = createError<[string, string]>(
  'FST_ERR_MCP_SSE_INVALID_OPTION',
  'fastify-mcp-sse: invalid option "%s". %s',
  500,
  TypeError
)

// Request-time errors. The error handler finds each one's table row by its code
// (`typeByCode` below); the status comes from the table.
export const FST_ERR_MCP_SSE_SESSION_NOT_FOUND = createError<[]>(
  'FST_ERR_MCP_SSE_SESSION_NOT_FOUND',
  'Session not found. Start a new one: initialize again (Streamable HTTP), or open a new SSE connection and use the endpoint it announces (HTTP+SSE).',
  ERROR_TABLE.session_not_found.status
)
export const FST_ERR_MCP_SSE_UNSUPPORTED_MEDIA_TYPE = createError<[string]>(
  'FST_ERR_MCP_SSE_UNSUPPORTED_MEDIA_TYPE',
  'Unsupported content type "%s": send application/json.',
  ERROR_TABLE.unsupported_media_type.status
)
export const FST_ERR_MCP_SSE_FORBIDDEN_ORIGIN = createError<[string, string, string]>(
  'FST_ERR_MCP_SSE_FORBIDDEN_ORIGIN',
  '%s "%s" is not allowed.%s',
  ERROR_TABLE.forbidden_origin.status
)
export const FST_ERR_MCP_SSE_TOO_MANY_SESSIONS = createError<[number]>(
  'FST_ERR_MCP_SSE_TOO_MANY_SESSIONS',
  'Too many open sessions (the limit is %d). Try again later.',
  ERROR_TABLE.too_many_sessions.status
)
export const FST_ERR_MCP_SSE_HANDLER_ERROR = createError<[]>(
  'FST_ERR_MCP_SSE_HANDLER_ERROR',
  'The message handler failed.',
  ERROR_TABLE.message_handler_error.status
)
export const FST_ERR_MCP_SSE_REDIS_UNAVAILABLE = createError<[string]>(
  'FST_ERR_MCP_SSE_REDIS_UNAVAILABLE',
  'fastify-mcp-sse: Redis is unavailable (%s). Check redis.url / redis.client and that the server is reachable.',
  ERROR_TABLE.service_unavailable.status
)
export const FST_ERR_MCP_SSE_RELAY_TIMEOUT = createError<[number]>(
  'FST_ERR_MCP_SSE_RELAY_TIMEOUT',
  'Service unavailable: the instance holding the session did not acknowledge the request within %d ms (redis.relayTimeout). Retry shortly.',
  ERROR_TABLE.service_unavailable.status
)
export const FST_ERR_MCP_SSE_AUTHENTICATION = createError<[string]>(
  'FST_ERR_MCP_SSE_AUTHENTICATION',
  '%s',
  ERROR_TABLE.authentication_error.status
)

export const FST_ERR_MCP_SSE_BAD_REQUEST = createError<[string]>(
  'FST_ERR_MCP_SSE_BAD_REQUEST',
  '%s',
  ERROR_TABLE.invalid_request.status
)
export const FST_ERR_MCP_SSE_NOT_ACCEPTABLE = createError<[string]>(
  'FST_ERR_MCP_SSE_NOT_ACCEPTABLE',
  'Not Acceptable: %s',
  ERROR_TABLE.not_acceptable.status
)
export const FST_ERR_MCP_SSE_METHOD_NOT_ALLOWED = createError<[string]>(
  'FST_ERR_MCP_SSE_METHOD_NOT_ALLOWED',
  'Method Not Allowed: %s',
  ERROR_TABLE.method_not_allowed.status
)
export const FST_ERR_MCP_SSE_CONFLICT = createError<[string]>(
  'FST_ERR_MCP_SSE_CONFLICT',
  'Conflict: %s',
  ERROR_TABLE.conflict.status
)

export const FST_ERR_MCP_SSE_RATE_LIMITED = createError<[string, number]>(
  'FST_ERR_MCP_SSE_RATE_LIMITED',
  'Rate limit exceeded (%s). Retry in %d s.',
  ERROR_TABLE.rate_limited.status
)

/**
 * A refused request: the provider's status (401, or 403 and the like) and headers such as
 * `WWW-Authenticate` travel with the error to the handler.
 */
export class McpAuthenticationError extends FST_ERR_MCP_SSE_AUTHENTICATION {
  readonly status: number
  readonly headers: Readonly<Record<string, string>>

  constructor (message: string, status: number, headers: Record<string, string>) {
    super(message)
    this.status = status
    this.statusCode = status
    this.headers = headers
  }
}

/** An error of the instance that holds a session, as it travels to the one answering the client. */
export interface RelayedErrorInfo {
  code: string | undefined
  message: string
  status: number
}

/** What of an error thrown on the owner's side the receiving instance needs to answer it. */
export function describeError (err: unknown): RelayedErrorInfo {
  const e = err as { code?: unknown, message?: unknown, statusCode?: unknown } | null | undefined
  return {
    code: typeof e?.code === 'string' ? e.code : undefined,
    message: typeof e?.message === 'string' ? e.message : 'Internal error.',
    status: typeof e?.statusCode === 'number' ? e.statusCode : 500
  }
}

/**
 * An error the owner of a session answered a relayed request with, thrown again on the
 * receiving instance: same code, message and status, so the error handler writes the same
 * body the owner would have.
 */
export class McpRelayedError extends Error {
  readonly code: string | undefined
  readonly statusCode: number

  constructor ({ code, message, status }: RelayedErrorInfo) {
    super(message)
    this.code = code
    this.statusCode = status
  }
}

const typeByCode: Readonly<Record<string, McpErrorType>> = {
  FST_ERR_MCP_SSE_SESSION_NOT_FOUND: 'session_not_found',
  FST_ERR_MCP_SSE_UNSUPPORTED_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_MCP_SSE_FORBIDDEN_ORIGIN: 'forbidden_origin',
  FST_ERR_MCP_SSE_TOO_MANY_SESSIONS: 'too_many_sessions',
  FST_ERR_MCP_SSE_HANDLER_ERROR: 'message_handler_error',
  FST_ERR_MCP_SSE_AUTHENTICATION: 'authentication_error',
  FST_ERR_MCP_SSE_REDIS_UNAVAILABLE: 'service_unavailable',
  FST_ERR_MCP_SSE_RELAY_TIMEOUT: 'service_unavailable',
  FST_ERR_MCP_SSE_BAD_REQUEST: 'invalid_request',
  FST_ERR_MCP_SSE_NOT_ACCEPTABLE: 'not_acceptable',
  FST_ERR_MCP_SSE_METHOD_NOT_ALLOWED: 'method_not_allowed',
  FST_ERR_MCP_SSE_CONFLICT: 'conflict',
  FST_ERR_MCP_SSE_RATE_LIMITED: 'rate_limited',
  // Fastify's own body errors, raised before our handler runs.
  FST_ERR_CTP_BODY_TOO_LARGE: 'message_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'parse_error',
  FST_ERR_CTP_INVALID_JSON_BODY: 'parse_error',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid_request',
  FST_ERR_VALIDATION: 'invalid_request'
}

/** Which row of the table an error thrown inside the plugin's scope belongs to. */
export function errorTypeOf (err: { code?: string }): McpErrorType {
  return (err.code !== undefined ? typeByCode[err.code] : undefined) ?? 'internal_error'
}

export interface ErrorContext {
  id?: unknown
  method?: unknown
  sessionId?: unknown
  connectionActive?: boolean
}

/**
 * Builds the JSON-RPC error body. Only the request's `id` and `method` are echoed
 * (and only when they have the types JSON-RPC allows): never the body itself.
 */
export function jsonRpcError (type: McpErrorType, message: string, ctx: ErrorContext = {}): JsonRpcErrorBody {
  return {
    jsonrpc: '2.0',
    id: typeof ctx.id === 'string' || (typeof ctx.id === 'number' && Number.isFinite(ctx.id)) ? ctx.id : null,
    error: {
      code: ERROR_TABLE[type].code,
      message,
      data: {
        type,
        method: typeof ctx.method === 'string' ? ctx.method.slice(0, 256) : null,
        sessionId: typeof ctx.sessionId === 'string' ? ctx.sessionId.slice(0, 128) : null,
        connectionActive: ctx.connectionActive ?? false
      }
    }
  }
}

/** The message of an error body, for the rows whose error text is not the whole story. */
function errorMessage (type: McpErrorType, err: FastifyError, maxMessageSize: number): string {
  switch (type) {
    case 'parse_error':
      return 'Parse error: the body is not valid JSON (or holds a forbidden __proto__ / constructor.prototype key).'
    case 'message_too_large':
      return `Message too large: the limit is ${bytes.format(maxMessageSize)}.`
    case 'invalid_request': {
      const first = err.validation?.[0]
      if (first === undefined) return `Invalid Request: ${err.message}`
      return `Invalid Request: ${first.message}${first.instancePath === '' ? '' : ` (at ${first.instancePath})`}`
    }
    case 'internal_error':
      return 'Internal error.'
    case 'service_unavailable':
      if (err.code === 'FST_ERR_MCP_SSE_RELAY_TIMEOUT') return err.message
      return 'Service unavailable: the session is held by another instance and the link to it is down. Retry shortly.'
    default:
      return err.message
  }
}

export interface ErrorHandlerContext {
  maxMessageSize: number
  /** Whether this instance holds an open session with this id (`data.connectionActive`). */
  isOpen (sessionId: string): boolean
  /** Told of every error answered (metrics). */
  answered?: (type: McpErrorType, status: number) => void
}

/** The error handler of the plugin's scope: every failure becomes a JSON-RPC error body. */
export function mcpErrorHandler ({ maxMessageSize, isOpen, answered }: ErrorHandlerContext) {
  return function mcpErrorHandler (err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
    let type = errorTypeOf(err)
    let status = ERROR_TABLE[type].status
    if (type === 'internal_error' && err.statusCode === 429) {
      // A rate limit the host registered for every route (@fastify/rate-limit, global).
      type = 'rate_limited'
      status = 429
    } else if (type === 'internal_error' && typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
      // Some other client error Fastify raised (a malformed request line, say).
      type = 'invalid_request'
      status = err.statusCode
    } else if (err instanceof McpAuthenticationError) {
      status = err.status
      reply.headers(err.headers)
    }
    answered?.(type, status)
    if (type === 'service_unavailable') {
      reply.header('retry-after', '1')
      request.log.warn({ err }, 'fastify-mcp-sse: a cross-instance message could not be routed')
    } else if (status >= 500) {
      request.log.error({ err }, 'fastify-mcp-sse: request failed')
    }

    const body: unknown = request.body
    const msg = typeof body === 'object' && body !== null && !Array.isArray(body) ? body as Record<string, unknown> : undefined
    const query = request.query as Record<string, unknown> | undefined
    const header = request.headers['mcp-session-id']
    const sessionId = typeof query?.sessionId === 'string' ? query.sessionId : typeof header === 'string' ? header : undefined
    reply
      .code(status)
      .type('application/json; charset=utf-8')
      .send(jsonRpcError(type, errorMessage(type, err, maxMessageSize), {
        id: msg?.id,
        method: msg?.method,
        sessionId,
        // A refused hijack must look exactly like an unknown session.
        connectionActive: type !== 'session_not_found' && sessionId !== undefined && isOpen(sessionId)
      }))
  }
}
