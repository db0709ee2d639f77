import createError from '@fastify/error'

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
  | 'internal_error'

/** HTTP status and JSON-RPC error code of each error type. */
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

// Request-time errors. Each carries its table row through `mcpType`, read by the
// plugin's error handler; statuses match the table.
export const FST_ERR_MCP_SSE_SESSION_NOT_FOUND = createError<[]>(
  'FST_ERR_MCP_SSE_SESSION_NOT_FOUND',
  'Session not found. Open a new SSE connection and use the endpoint it announces.',
  404
)
export const FST_ERR_MCP_SSE_UNSUPPORTED_MEDIA_TYPE = createError<[string]>(
  'FST_ERR_MCP_SSE_UNSUPPORTED_MEDIA_TYPE',
  'Unsupported content type "%s": send application/json.',
  415
)
export const FST_ERR_MCP_SSE_FORBIDDEN_ORIGIN = createError<[string, string]>(
  'FST_ERR_MCP_SSE_FORBIDDEN_ORIGIN',
  '%s "%s" is not allowed.',
  403
)
export const FST_ERR_MCP_SSE_TOO_MANY_SESSIONS = createError<[number]>(
  'FST_ERR_MCP_SSE_TOO_MANY_SESSIONS',
  'Too many open sessions (the limit is %d). Try again later.',
  503
)
export const FST_ERR_MCP_SSE_HANDLER_ERROR = createError<[]>(
  'FST_ERR_MCP_SSE_HANDLER_ERROR',
  'The message handler failed.',
  500
)

export const FST_ERR_MCP_SSE_REDIS_UNAVAILABLE = createError<[string]>(
  'FST_ERR_MCP_SSE_REDIS_UNAVAILABLE',
  'fastify-mcp-sse: Redis is unavailable (%s). Check redis.url / redis.client and that the server is reachable.',
  503
)

export const FST_ERR_MCP_SSE_AUTHENTICATION = createError<[string]>(
  'FST_ERR_MCP_SSE_AUTHENTICATION',
  '%s',
  401
)

const typeByCode: Readonly<Record<string, McpErrorType>> = {
  FST_ERR_MCP_SSE_SESSION_NOT_FOUND: 'session_not_found',
  FST_ERR_MCP_SSE_UNSUPPORTED_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_MCP_SSE_FORBIDDEN_ORIGIN: 'forbidden_origin',
  FST_ERR_MCP_SSE_TOO_MANY_SESSIONS: 'too_many_sessions',
  FST_ERR_MCP_SSE_HANDLER_ERROR: 'message_handler_error',
  FST_ERR_MCP_SSE_AUTHENTICATION: 'authentication_error',
  FST_ERR_MCP_SSE_REDIS_UNAVAILABLE: 'service_unavailable',
  // Fastify's own body errors, raised before our handler runs.
  FST_ERR_CTP_BODY_TOO_LARGE: 'message_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'parse_error',
  FST_ERR_CTP_INVALID_JSON_BODY: 'parse_error',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid_request',
  FST_ERR_VALIDATION: 'invalid_request'
}

/** Which row of the table an error thrown inside the plugin's scope belongs to. */
export function errorTypeOf (err: { code?: string, statusCode?: number }): McpErrorType {
  const byCode = err.code !== undefined ? typeByCode[err.code] : undefined
  if (byCode !== undefined) return byCode
  return 'internal_error'
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
