// The official MCP conformance suite's fixture for the 2026-07-28 revision
// (@modelcontextprotocol/conformance, `server --requirements 2026-07-28`), built on SDK v2
// (@modelcontextprotocol/server): the tools, resources and prompts its scenarios call, with
// the values they expect. test/conformance-2026.test.ts runs the suite against it.
//
// Modern requests hold no session: the plugin builds a server from this factory for every
// request, so no server keeps anything from one request to the next. What a flow needs
// across requests travels outside it: `requestState` is sealed with an HMAC key that is a
// constant of this module (so any server, on any instance, verifies what another minted),
// and change events go to the host (`app.mcpEvents`), which delivers them to every
// `subscriptions/listen` stream.
//
// Run directly (`node --import tsx example/conformance-v2.ts`), it serves the fixture on
// http://127.0.0.1:$PORT (default 3002).
import { setTimeout as delay } from 'node:timers/promises'
import { pathToFileURL } from 'node:url'
import Fastify from 'fastify'
import {
  CLIENT_CAPABILITIES_META_KEY,
  McpServer,
  ResourceTemplate,
  acceptedContent,
  completable,
  createRequestStateCodec,
  fromJsonSchema,
  inputRequired,
  inputResponse,
  type CallToolResult,
  type ClientCapabilities,
  type InputRequests,
  type ServerContext
} from '@modelcontextprotocol/server'
import { z } from 'zod'
import mcpSse, { type McpEvents, type McpSessionContext } from '../src/index.js'
import { ARG1_SUGGESTIONS, PNG_BASE64, WAV_BASE64 } from './conformance.js'

/** The gap between the progress notifications of test_tool_with_progress. */
const STEP_MS = 50

/**
 * The HMAC key sealing `requestState`. A constant, so a state minted by the server of one
 * request verifies on the server of the next (a new one, maybe on another instance). A
 * fixture's key: a real server reads its key from its secrets.
 */
export const REQUEST_STATE_KEY = 'fastify-mcp-sse conformance fixture requestState key (not a secret)'

/** What the multi-round tools seal into their `requestState`. */
interface FlowState {
  tool: string
  step: number
  name?: string
}

const codec = createRequestStateCodec<FlowState>({ key: REQUEST_STATE_KEY, ttlSeconds: 600 })

/** json_schema_2020_12_tool's input schema, with the 2020-12 keywords the scenario looks for. */
export const JSON_SCHEMA_2020_12 = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  type: 'object',
  $defs: {
    address: {
      $anchor: 'addressDef',
      type: 'object',
      properties: { street: { type: 'string' }, city: { type: 'string' } }
    }
  },
  properties: {
    name: { type: 'string' },
    address: { $ref: '#/$defs/address' },
    contactMethod: { type: 'string', enum: ['phone', 'email'] },
    phone: { type: 'string' },
    email: { type: 'string' }
  },
  allOf: [{ anyOf: [{ required: ['phone'] }, { required: ['email'] }] }],
  if: { properties: { contactMethod: { const: 'phone' } }, required: ['contactMethod'] },
  then: { required: ['phone'] },
  else: { required: ['email'] },
  additionalProperties: false
}

/**
 * test_custom_header's input schema: `region` is mirrored into the `Mcp-Param-Region` header
 * (SEP-2243's `x-mcp-header`), which the SDK checks against the body before the tool runs.
 */
export const CUSTOM_HEADER_SCHEMA = {
  type: 'object',
  properties: { region: { type: 'string', description: 'A region, also sent as Mcp-Param-Region', 'x-mcp-header': 'Region' } },
  required: ['region']
}

const text = (value: string): CallToolResult => ({ content: [{ type: 'text', text: value }] })

/** An elicitation form with one required string field. */
const askFor = (message: string, field: string): ReturnType<typeof inputRequired.elicit> => inputRequired.elicit({
  message,
  requestedSchema: { type: 'object', properties: { [field]: { type: 'string' } }, required: [field] }
})

/** The capabilities the client declared on this request (`_meta` envelope). */
function clientCapabilities (ctx: ServerContext): ClientCapabilities {
  const envelope = ctx.mcpReq.envelope as Record<string, unknown> | undefined
  return (envelope?.[CLIENT_CAPABILITIES_META_KEY] ?? {}) as ClientCapabilities
}

/** The verified `requestState` of this round, when it belongs to `tool`. */
function flowState (ctx: ServerContext, tool: string): FlowState | undefined {
  const state = ctx.mcpReq.requestState<FlowState>()
  return state?.tool === tool ? state : undefined
}

/**
 * The 2026-07-28 conformance fixture. The plugin calls this factory for every modern
 * request (and every 2025 session, which this server serves too); `context.request.server`
 * is the app, whose `mcpEvents` the trigger tools publish to.
 */
export function buildConformanceServerV2 (context?: Pick<McpSessionContext, 'request'>): McpServer {
  const events: McpEvents | undefined = context?.request.server.mcpEvents
  const server = new McpServer(
    { name: 'fastify-mcp-sse-conformance-v2', version: '1.0.0' },
    {
      capabilities: {
        tools: { listChanged: true },
        resources: { subscribe: true, listChanged: true },
        prompts: { listChanged: true },
        logging: {},
        completions: {}
      },
      requestState: { verify: codec.verify }
    }
  )

  // ---- tools: content ----

  server.registerTool('test_simple_text', {
    description: 'Returns simple text content'
  }, async () => text('This is a simple text response for testing.'))

  server.registerTool('test_image_content', {
    description: 'Returns image content (base64 PNG)'
  }, async () => ({ content: [{ type: 'image', data: PNG_BASE64, mimeType: 'image/png' }] }))

  server.registerTool('test_audio_content', {
    description: 'Returns audio content (base64 WAV)'
  }, async () => ({ content: [{ type: 'audio', data: WAV_BASE64, mimeType: 'audio/wav' }] }))

  server.registerTool('test_embedded_resource', {
    description: 'Returns an embedded resource'
  }, async () => ({
    content: [{
      type: 'resource',
      resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' }
    }]
  }))

  server.registerTool('test_multiple_content_types', {
    description: 'Returns text, image and embedded resource content together'
  }, async () => ({
    content: [
      { type: 'text', text: 'Multiple content types test:' },
      { type: 'image', data: PNG_BASE64, mimeType: 'image/png' },
      {
        type: 'resource',
        resource: { uri: 'test://mixed-content-resource', mimeType: 'application/json', text: '{"test":"data","value":123}' }
      }
    ]
  }))

  server.registerTool('test_error_handling', {
    description: 'Returns a tool error result (isError), not a JSON-RPC error'
  }, async () => ({
    isError: true,
    content: [{ type: 'text', text: 'This tool intentionally returns an error for testing' }]
  }))

  server.registerTool('test_tool_with_progress', {
    description: 'Reports progress 0, 50, 100 of 100 when the call carries a progress token'
  }, async ctx => {
    const progressToken = ctx.mcpReq._meta?.progressToken
    for (const progress of [0, 50, 100]) {
      if (progressToken !== undefined) {
        await ctx.mcpReq.notify({ method: 'notifications/progress', params: { progressToken, progress, total: 100 } })
      }
      await delay(STEP_MS, undefined, { signal: ctx.mcpReq.signal })
    }
    return text('Tool with progress executed successfully')
  })

  server.registerTool('json_schema_2020_12_tool', {
    description: 'Tool with JSON Schema 2020-12 features',
    inputSchema: fromJsonSchema<Record<string, unknown>>(JSON_SCHEMA_2020_12)
  }, async args => text(`Received: ${JSON.stringify(args)}`))

  server.registerTool('test_custom_header', {
    description: 'Mirrors its region argument into the Mcp-Param-Region header (x-mcp-header)',
    inputSchema: fromJsonSchema<{ region: string }>(CUSTOM_HEADER_SCHEMA)
  }, async ({ region }) => text(`Region: ${region}`))

  // ---- tools: the server-stateless scenario's probes ----

  server.registerTool('test_missing_capability', {
    description: 'Needs the client\'s LLM (sampling): refused with -32021 when the request does not declare that capability'
  }, async ctx => {
    // The SDK checks every input request against the request's declared client capabilities
    // and answers MissingRequiredClientCapabilityError (-32021, HTTP 400) for one it lacks. (A
    // throw from here would not do: McpServer turns a tool's throw into an isError result.)
    const answer = inputResponse(ctx.mcpReq.inputResponses, 'completion')
    if (answer.kind !== 'sampling') {
      return inputRequired({
        inputRequests: {
          completion: inputRequired.createMessage({
            messages: [{ role: 'user', content: { type: 'text', text: 'Say hello' } }],
            maxTokens: 50
          })
        }
      })
    }
    return text('Sampling capability present')
  })

  server.registerTool('test_streaming_elicitation', {
    description: 'Asks the user for input: answers with an input_required result, never with a request of its own'
  }, async ctx => {
    const answer = acceptedContent(ctx.mcpReq.inputResponses, 'user_input')
    if (answer === undefined) {
      return inputRequired({ inputRequests: { user_input: askFor('Please provide some input', 'value') } })
    }
    return text(`Received: ${JSON.stringify(answer)}`)
  })

  server.registerTool('test_logging_tool', {
    description: 'Logs three info messages: they reach only a request whose _meta asks for a log level'
  }, async ctx => {
    for (const data of ['Tool execution started', 'Tool processing data', 'Tool execution completed']) {
      await ctx.mcpReq.log('info', data)
    }
    return text('Tool with logging executed successfully')
  })

  server.registerTool('test_trigger_tool_change', {
    description: 'Announces a change of the tool list to subscriptions/listen streams'
  }, async () => {
    events?.toolsChanged()
    return text('Tool list change published')
  })

  server.registerTool('test_trigger_prompt_change', {
    description: 'Announces a change of the prompt list to subscriptions/listen streams'
  }, async () => {
    events?.promptsChanged()
    return text('Prompt list change published')
  })

  server.registerTool('test_trigger_resource_change', {
    description: 'Announces a change of the resource list to subscriptions/listen streams'
  }, async () => {
    events?.resourcesChanged()
    return text('Resource list change published')
  })

  server.registerTool('test_trigger_resource_update', {
    description: 'Announces an update of test://watched-resource to its subscribers'
  }, async () => {
    events?.resourceUpdated('test://watched-resource')
    return text('Resource update published')
  })

  // ---- tools: multi-round-trip requests (input_required results) ----

  server.registerTool('test_input_required_result_elicitation', {
    description: 'Asks the user for their name (elicitation), then greets them'
  }, async ctx => {
    const answer = acceptedContent(ctx.mcpReq.inputResponses, 'user_name', z.object({ name: z.string() }))
    if (answer === undefined) {
      return inputRequired({ inputRequests: { user_name: askFor('What is your name?', 'name') } })
    }
    return text(`Hello, ${answer.name}!`)
  })

  server.registerTool('test_input_required_result_sampling', {
    description: 'Asks the client\'s LLM a question (sampling), then returns its answer'
  }, async ctx => {
    const answer = inputResponse(ctx.mcpReq.inputResponses, 'capital_question')
    if (answer.kind !== 'sampling') {
      return inputRequired({
        inputRequests: {
          capital_question: inputRequired.createMessage({
            messages: [{ role: 'user', content: { type: 'text', text: 'What is the capital of France?' } }],
            maxTokens: 100
          })
        }
      })
    }
    const blocks = Array.isArray(answer.result.content) ? answer.result.content : [answer.result.content]
    return text(`LLM response: ${blocks.map(b => b.type === 'text' ? b.text : `[${b.type}]`).join('')}`)
  })

  server.registerTool('test_input_required_result_list_roots', {
    description: 'Asks the client for its roots, then lists them'
  }, async ctx => {
    const answer = inputResponse(ctx.mcpReq.inputResponses, 'client_roots')
    if (answer.kind !== 'roots') {
      return inputRequired({ inputRequests: { client_roots: inputRequired.listRoots() } })
    }
    return text(`Client roots: ${answer.roots.map(root => root.uri).join(', ')}`)
  })

  server.registerTool('test_input_required_result_request_state', {
    description: 'Asks for a confirmation with a sealed requestState; says state-ok once it comes back intact'
  }, async ctx => {
    const confirmed = acceptedContent(ctx.mcpReq.inputResponses, 'confirm', z.object({ ok: z.boolean() }))
    const state = flowState(ctx, 'test_input_required_result_request_state')
    if (confirmed === undefined || state === undefined) {
      return inputRequired({
        inputRequests: {
          confirm: inputRequired.elicit({
            message: 'Please confirm',
            requestedSchema: { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] }
          })
        },
        requestState: await codec.mint({ tool: 'test_input_required_result_request_state', step: 1 })
      })
    }
    return text(`state-ok: confirmed=${String(confirmed.ok)}, step=${state.step}`)
  })

  server.registerTool('test_input_required_result_multiple_inputs', {
    description: 'Asks for a name (elicitation), a greeting (sampling) and the roots at once'
  }, async ctx => {
    const responses = ctx.mcpReq.inputResponses
    const name = acceptedContent(responses, 'user_name', z.object({ name: z.string() }))
    const greeting = inputResponse(responses, 'greeting')
    const roots = inputResponse(responses, 'client_roots')
    const state = flowState(ctx, 'test_input_required_result_multiple_inputs')
    if (name === undefined || greeting.kind !== 'sampling' || roots.kind !== 'roots' || state === undefined) {
      return inputRequired({
        inputRequests: {
          user_name: askFor('What is your name?', 'name'),
          greeting: inputRequired.createMessage({
            messages: [{ role: 'user', content: { type: 'text', text: 'Generate a greeting' } }],
            maxTokens: 50
          }),
          client_roots: inputRequired.listRoots()
        },
        requestState: await codec.mint({ tool: 'test_input_required_result_multiple_inputs', step: 1 })
      })
    }
    return text(`All inputs received: name=${name.name}, roots=${roots.roots.length}`)
  })

  server.registerTool('test_input_required_result_multi_round', {
    description: 'Asks for a name, then a favourite colour, in two rounds carried by requestState'
  }, async ctx => {
    const state = flowState(ctx, 'test_input_required_result_multi_round')
    const responses = ctx.mcpReq.inputResponses
    if (state?.step === 2) {
      const color = acceptedContent(responses, 'step2', z.object({ color: z.string() }))
      if (color !== undefined) return text(`Hello ${state.name ?? ''}, your favourite colour is ${color.color}`)
    }
    const name = state?.step === 1 ? acceptedContent(responses, 'step1', z.object({ name: z.string() })) : undefined
    if (name !== undefined || state?.step === 2) {
      return inputRequired({
        inputRequests: { step2: askFor('Step 2: What is your favorite color?', 'color') },
        requestState: await codec.mint({ tool: 'test_input_required_result_multi_round', step: 2, name: name?.name ?? state?.name ?? '' })
      })
    }
    return inputRequired({
      inputRequests: { step1: askFor('Step 1: What is your name?', 'name') },
      requestState: await codec.mint({ tool: 'test_input_required_result_multi_round', step: 1 })
    })
  })

  server.registerTool('test_input_required_result_tampered_state', {
    description: 'Seals its requestState: a tampered one is refused (-32602) before the tool runs'
  }, async ctx => {
    const confirmed = acceptedContent(ctx.mcpReq.inputResponses, 'confirm', z.object({ ok: z.boolean() }))
    const state = flowState(ctx, 'test_input_required_result_tampered_state')
    if (confirmed === undefined || state === undefined) {
      return inputRequired({
        inputRequests: {
          confirm: inputRequired.elicit({
            message: 'Please confirm',
            requestedSchema: { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] }
          })
        },
        requestState: await codec.mint({ tool: 'test_input_required_result_tampered_state', step: 1 })
      })
    }
    return text('state-ok')
  })

  server.registerTool('test_input_required_result_capabilities', {
    description: 'Asks only for the input the client declared it can give (elicitation, sampling, roots)'
  }, async ctx => {
    const declared = clientCapabilities(ctx)
    const responses = ctx.mcpReq.inputResponses
    if (responses !== undefined) return text(`Inputs received: ${Object.keys(responses).sort().join(', ')}`)
    const inputRequests: InputRequests = {}
    if (declared.elicitation !== undefined) inputRequests.user_name = askFor('What is your name?', 'name')
    if (declared.sampling !== undefined) {
      inputRequests.capital_question = inputRequired.createMessage({
        messages: [{ role: 'user', content: { type: 'text', text: 'What is the capital of France?' } }],
        maxTokens: 100
      })
    }
    if (declared.roots !== undefined) inputRequests.client_roots = inputRequired.listRoots()
    if (Object.keys(inputRequests).length === 0) return text('The client declared no capability to ask it for input')
    return inputRequired({ inputRequests })
  })

  // ---- resources ----

  server.registerResource('static-text', 'test://static-text', {
    description: 'Static text resource',
    mimeType: 'text/plain'
  }, async uri => ({
    contents: [{ uri: uri.href, mimeType: 'text/plain', text: 'This is the content of the static text resource.' }]
  }))

  server.registerResource('static-binary', 'test://static-binary', {
    description: 'Static binary resource (a PNG image)',
    mimeType: 'image/png'
  }, async uri => ({
    contents: [{ uri: uri.href, mimeType: 'image/png', blob: PNG_BASE64 }]
  }))

  server.registerResource('template', new ResourceTemplate('test://template/{id}/data', { list: undefined }), {
    description: 'Resource template with an id parameter',
    mimeType: 'application/json'
  }, async (uri, { id }) => ({
    contents: [{
      uri: uri.href,
      mimeType: 'application/json',
      text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${String(id)}` })
    }]
  }))

  server.registerResource('watched-resource', 'test://watched-resource', {
    description: 'A resource clients can subscribe to (subscriptions/listen)',
    mimeType: 'text/plain'
  }, async uri => ({
    contents: [{ uri: uri.href, mimeType: 'text/plain', text: 'This is the content of the watched resource.' }]
  }))

  // ---- prompts ----

  server.registerPrompt('test_simple_prompt', {
    description: 'A prompt without arguments'
  }, async () => ({
    messages: [{ role: 'user', content: { type: 'text', text: 'This is a simple prompt for testing.' } }]
  }))

  server.registerPrompt('test_prompt_with_arguments', {
    description: 'A prompt with two arguments',
    argsSchema: z.object({
      arg1: completable(z.string().describe('First test argument'), value => ARG1_SUGGESTIONS.filter(s => s.startsWith(value))),
      arg2: z.string().describe('Second test argument')
    })
  }, async ({ arg1, arg2 }) => ({
    messages: [{ role: 'user', content: { type: 'text', text: `Prompt with arguments: arg1='${arg1}', arg2='${arg2}'` } }]
  }))

  server.registerPrompt('test_prompt_with_embedded_resource', {
    description: 'A prompt that embeds a resource',
    argsSchema: z.object({ resourceUri: z.string().describe('URI of the resource to embed') })
  }, async ({ resourceUri }) => ({
    messages: [
      {
        role: 'user',
        content: { type: 'resource', resource: { uri: resourceUri, mimeType: 'text/plain', text: 'Embedded resource content for testing.' } }
      },
      { role: 'user', content: { type: 'text', text: 'Please process the embedded resource above.' } }
    ]
  }))

  server.registerPrompt('test_prompt_with_image', {
    description: 'A prompt with image content'
  }, async () => ({
    messages: [
      { role: 'user', content: { type: 'image', data: PNG_BASE64, mimeType: 'image/png' } },
      { role: 'user', content: { type: 'text', text: 'Please analyze the image above.' } }
    ]
  }))

  server.registerPrompt('test_input_required_result_prompt', {
    description: 'Asks the user what context to use (elicitation), then builds the prompt with it'
  }, async ctx => {
    const answer = acceptedContent(ctx.mcpReq.inputResponses, 'user_context', z.object({ context: z.string() }))
    if (answer === undefined) {
      return inputRequired({ inputRequests: { user_context: askFor('What context should the prompt use?', 'context') } })
    }
    return { messages: [{ role: 'user', content: { type: 'text', text: `Prompt with context: ${answer.context}` } }] }
  })

  return server
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const port = Number(process.env.PORT ?? 3002)
  const host = process.env.HOST ?? '127.0.0.1'
  const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'info' }, forceCloseConnections: true })
  await app.register(mcpSse, { server: context => buildConformanceServerV2(context) })
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => { void app.close().then(() => process.exit(0)) })
  }
  const address = await app.listen({ port, host })
  console.log(`MCP 2026-07-28 conformance fixture: ${address}/mcp`)
}
