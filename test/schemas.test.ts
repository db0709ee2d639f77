// The plugin's TypeBox schemas must accept exactly the messages the SDK accepts: a message
// the SDK drops would otherwise be answered 202 and then never (a lost request). Checked
// on generated messages against the SDK's own JSONRPCMessageSchema, so an SDK upgrade that
// moves the line fails here.
import t from 'tap'
import fc from 'fast-check'
import { TypeCompiler } from '@sinclair/typebox/compiler'
import { JSONRPCMessageSchema } from '@modelcontextprotocol/sdk/types.js'
import { JsonRpcMessage } from '../src/schemas.js'

const check = TypeCompiler.Compile(JsonRpcMessage)
const runs = Number(process.env.FUZZ_RUNS ?? 3000)

// Values of every JSON type, biased toward the edges that matter here.
const scalar = fc.oneof(
  fc.constant(null), fc.boolean(), fc.string({ maxLength: 8 }),
  fc.integer(), fc.constantFrom(0, -1, 1.5, 2 ** 53, -(2 ** 53), 1e21, Number.MAX_SAFE_INTEGER),
  fc.constantFrom('2.0', '1.0', '', 'ping', 'tools/call')
)
const json = fc.letrec(tie => ({
  value: fc.oneof({ depthSize: 'small' }, scalar, fc.array(tie('value'), { maxLength: 3 }), fc.dictionary(fc.string({ maxLength: 5 }), tie('value'), { maxKeys: 3 }))
})).value
const maybe = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined, freq: 3 })
const meta = fc.oneof(json, fc.record({
  progressToken: maybe(fc.oneof(fc.string({ maxLength: 4 }), fc.integer(), fc.constantFrom(1.5, 2 ** 60, null))),
  'io.modelcontextprotocol/related-task': maybe(fc.oneof(json, fc.record({ taskId: fc.oneof(fc.string({ maxLength: 4 }), fc.integer()) }))),
  other: maybe(json)
}, { requiredKeys: [] }))
const params = fc.oneof(json, fc.record({ _meta: maybe(meta), name: maybe(json), arguments: maybe(json) }, { requiredKeys: [] }))

const id = fc.oneof(fc.string({ maxLength: 6 }), fc.integer())
/** Well-formed messages of each kind (with valid or odd params / _meta / results). */
const valid = fc.oneof(
  fc.record({ jsonrpc: fc.constant('2.0'), id, method: fc.constantFrom('ping', 'tools/call'), params: maybe(params) }, { requiredKeys: ['jsonrpc', 'id', 'method'] }),
  fc.record({ jsonrpc: fc.constant('2.0'), method: fc.constantFrom('notifications/initialized', 'notifications/cancelled'), params: maybe(params) }, { requiredKeys: ['jsonrpc', 'method'] }),
  fc.record({ jsonrpc: fc.constant('2.0'), id, result: fc.oneof(json, fc.record({ _meta: maybe(meta), content: maybe(json) }, { requiredKeys: [] })) }),
  fc.record({ jsonrpc: fc.constant('2.0'), id: maybe(id), error: fc.record({ code: fc.oneof(fc.integer(), scalar), message: fc.oneof(fc.string(), scalar), data: maybe(json) }, { requiredKeys: ['code', 'message'] }) }, { requiredKeys: ['jsonrpc', 'error'] })
)
const member = fc.constantFrom('jsonrpc', 'id', 'method', 'params', 'result', 'error', 'extra')
/** A message, then at most one change: a member dropped, replaced by any JSON value, or added. */
const messageLike = fc.tuple(valid, fc.nat(3), member, json).map(([message, change, key, value]) => {
  const m: Record<string, unknown> = Object.fromEntries(Object.entries(message).filter(([, v]) => v !== undefined))
  if (change === 1) delete m[key]
  else if (change >= 2) m[key] = value
  return m
})

t.test('the plugin accepts exactly the messages the SDK accepts', async t => {
  let accepted = 0
  fc.assert(fc.property(messageLike, message => {
    const ours = check.Check(message)
    const sdk = JSONRPCMessageSchema.safeParse(message).success
    if (ours) accepted++
    return ours === sdk
  }), { numRuns: runs })
  t.ok(accepted > runs / 20, `the generator reaches valid messages too (${accepted} of ${runs})`)
})

t.test('known edge cases agree with the SDK', async t => {
  const cases: unknown[] = [
    { jsonrpc: '2.0', id: 1, method: 'ping' },
    { jsonrpc: '2.0', id: 'a', method: 'ping', params: {} },
    { jsonrpc: '2.0', id: 1, method: 'ping', params: [] },
    { jsonrpc: '2.0', id: 1, method: 'ping', extra: true },
    { jsonrpc: '2.0', id: 1, method: 'ping', params: { _meta: 5 } },
    { jsonrpc: '2.0', id: 1, method: 'ping', params: { _meta: { progressToken: 1.5 } } },
    { jsonrpc: '2.0', id: 2 ** 60, method: 'ping' },
    { jsonrpc: '2.0', id: null, method: 'ping' },
    { jsonrpc: '2.0', method: 'notifications/initialized' },
    { jsonrpc: '2.0', id: 1, result: {} },
    { jsonrpc: '2.0', id: 1, result: [] },
    { jsonrpc: '2.0', error: { code: -1, message: 'x' } },
    { jsonrpc: '2.0', id: null, error: { code: -1, message: 'x' } },
    { jsonrpc: '2.0', id: 1, error: { code: 1.5, message: 'x' } }
  ]
  for (const message of cases) {
    t.equal(check.Check(message), JSONRPCMessageSchema.safeParse(message).success, JSON.stringify(message))
  }
})
