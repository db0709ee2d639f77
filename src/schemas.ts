import { Type, type Static, type TSchema } from '@sinclair/typebox'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import type { FastifySchemaCompiler } from 'fastify'

// JSON-RPC 2.0 message shapes exactly as the MCP SDK accepts them (its
// JSONRPCMessageSchema): a message the SDK would drop must be refused here with a 400,
// never accepted with a 202 and then left unanswered. test/schemas.test.ts checks the
// two agree on generated messages, so an SDK upgrade that moves the line is caught.

const JsonRpcVersion = Type.Literal('2.0')
// zod's int() means a safe integer.
const SafeInteger = Type.Integer({ minimum: Number.MIN_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER })
// MCP forbids null request ids; the SDK takes strings and (safe) integers.
export const RequestId = Type.Union([Type.String(), SafeInteger])

// `_meta` of params and results: any members, but the ones MCP defines have their types.
const Meta = Type.Object({
  progressToken: Type.Optional(RequestId),
  'io.modelcontextprotocol/related-task': Type.Optional(Type.Object({ taskId: Type.String() }))
})
// Params are an object (MCP uses no positional params) whose `_meta`, if any, is a Meta.
const Params = Type.Object({ _meta: Type.Optional(Meta) })
const strict = { additionalProperties: false }

export const JsonRpcRequest = Type.Object({
  jsonrpc: JsonRpcVersion,
  id: RequestId,
  method: Type.String(),
  params: Type.Optional(Params)
}, strict)

// No `id` member at all: a message with a method and any id is a request, and a bad id
// must not let it pass as a notification.
export const JsonRpcNotification = Type.Object({
  jsonrpc: JsonRpcVersion,
  method: Type.String(),
  params: Type.Optional(Params)
}, strict)

export const JsonRpcResponse = Type.Object({
  jsonrpc: JsonRpcVersion,
  id: RequestId,
  result: Type.Object({ _meta: Type.Optional(Meta) })
}, strict)

export const JsonRpcErrorResponse = Type.Object({
  jsonrpc: JsonRpcVersion,
  id: Type.Optional(RequestId),
  error: Type.Object({
    code: SafeInteger,
    message: Type.String(),
    data: Type.Optional(Type.Unknown())
  })
}, strict)

export const JsonRpcMessage = Type.Union([JsonRpcRequest, JsonRpcNotification, JsonRpcResponse, JsonRpcErrorResponse])
export const JsonRpcBatch = Type.Array(JsonRpcMessage, { minItems: 1 })

/** The body of `POST {messageEndpoint}`: one JSON-RPC message or a non-empty batch. */
export const MessageBody = Type.Union([JsonRpcMessage, JsonRpcBatch])
export type MessageBody = Static<typeof MessageBody>

const compiled = new WeakMap<TSchema, ReturnType<typeof TypeCompiler.Compile>>()

/**
 * Validator compiler for the plugin's routes: each schema is compiled once by TypeBox
 * (no coercion, nothing removed) and a failure reports only its first error, so a huge
 * invalid batch costs one error, not one per element.
 */
export const validatorCompiler: FastifySchemaCompiler<TSchema> = ({ schema }) => {
  let check = compiled.get(schema)
  if (check === undefined) {
    check = TypeCompiler.Compile(schema)
    compiled.set(schema, check)
  }
  const checker = check
  return (value: unknown) => {
    if (checker.Check(value)) return { value }
    const [path, message] = schema === MessageBody ? explainMessageBody(value) : firstError(checker, value)
    return {
      error: [{ keyword: 'typebox', schemaPath: path, instancePath: path, params: {}, message }]
    }
  }
}

function firstError (checker: ReturnType<typeof TypeCompiler.Compile>, value: unknown, prefix = ''): [string, string] {
  const first = checker.Errors(value).First()
  return [prefix + (first?.path ?? ''), first?.message ?? 'does not match the schema']
}

const requestCheck = TypeCompiler.Compile(JsonRpcRequest)
const notificationCheck = TypeCompiler.Compile(JsonRpcNotification)
const responseCheck = TypeCompiler.Compile(JsonRpcResponse)
const errorCheck = TypeCompiler.Compile(JsonRpcErrorResponse)

/**
 * A union's own error ("expected union value") tells a client nothing. Pick the shape the
 * message was most likely meant to have and report what is wrong with it. Runs only on
 * invalid input.
 */
function explainMessageBody (value: unknown, prefix = ''): [string, string] {
  if (Array.isArray(value)) {
    if (value.length === 0) return [prefix, 'a batch must contain at least one message']
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i]
      if (Array.isArray(item)) return [`${prefix}/${i}`, 'a batch cannot contain a batch']
      if (!requestCheck.Check(item) && !notificationCheck.Check(item) &&
          !responseCheck.Check(item) && !errorCheck.Check(item)) {
        return explainMessageBody(item, `${prefix}/${i}`)
      }
    }
  }
  if (typeof value !== 'object' || value === null) {
    return [prefix, 'a JSON-RPC message must be an object (or a batch array of them)']
  }
  const m = value as Record<string, unknown>
  if (m.jsonrpc !== '2.0') return [`${prefix}/jsonrpc`, 'jsonrpc must be "2.0"']
  if ('method' in m) {
    return 'id' in m ? firstError(requestCheck, m, prefix) : firstError(notificationCheck, m, prefix)
  }
  if ('result' in m) return firstError(responseCheck, m, prefix)
  if ('error' in m) return firstError(errorCheck, m, prefix)
  return [prefix, 'a JSON-RPC message needs a method (request, notification), a result or an error (response)']
}
