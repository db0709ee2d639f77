// The conformance suite's fixture server (example/conformance.ts), checked over the plugin's
// HTTP+SSE transport with the SDK's own client: every tool, resource, prompt and utility
// the 2025-11-25 scenarios call, with the values they expect. The expected values are
// written out here from the scenario list, not imported from the fixture.
import { crc32, inflateSync } from 'node:zlib'
import t, { type Test } from 'tap'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js'
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  LoggingMessageNotificationSchema,
  type CallToolResult,
  type CreateMessageRequest,
  type ElicitRequest,
  type ElicitResult,
  type JSONRPCMessage,
  type LoggingMessageNotification
} from '@modelcontextprotocol/sdk/types.js'
import { buildConformanceServer } from '../example/conformance.js'
import { runFixture } from './support/conformance.js'
import { startApp } from './support/helpers.js'

type ElicitParams = ElicitRequest['params']

interface Fixture {
  client: Client
  /** Every JSON-RPC message that reached the client after initialization, as it came. */
  wire: JSONRPCMessage[]
  /** The params of every sampling/createMessage request the client answered. */
  sampled: Array<CreateMessageRequest['params']>
  /** The params of every elicitation/create request the client answered. */
  elicited: ElicitParams[]
}

interface FixtureOptions {
  /** How the user answers elicitations; by default accepts with a username and an email. */
  elicit?: (params: ElicitParams) => ElicitResult
  /** What the client's LLM says to a prompt. */
  llm?: (prompt: string) => string
}

const acceptAlice = (): ElicitResult => ({ action: 'accept', content: { username: 'alice', email: 'alice@example.com' } })

/** The app serving the fixture, and a client that declares sampling and elicitation. */
async function connectFixture (t: Test, opts: FixtureOptions = {}, base?: string): Promise<Fixture> {
  base ??= (await startApp(t, { server: () => buildConformanceServer() })).base
  const sampled: Fixture['sampled'] = []
  const elicited: Fixture['elicited'] = []
  const wire: JSONRPCMessage[] = []
  const client = new Client({ name: 'conformance-test-client', version: '1.0.0' }, { capabilities: { sampling: {}, elicitation: {} } })
  client.setRequestHandler(CreateMessageRequestSchema, async request => {
    sampled.push(request.params)
    const first = request.params.messages[0]?.content
    const prompt = first !== undefined && !Array.isArray(first) && first.type === 'text' ? first.text : ''
    return { model: 'test-model', role: 'assistant', content: { type: 'text', text: (opts.llm ?? (p => `Echo: ${p}`))(prompt) } }
  })
  client.setRequestHandler(ElicitRequestSchema, async request => {
    elicited.push(request.params)
    return (opts.elicit ?? acceptAlice)(request.params)
  })
  const transport = new SSEClientTransport(new URL(`${base}/sse`))
  await client.connect(transport)
  t.teardown(() => client.close())
  const deliver = transport.onmessage
  transport.onmessage = message => { wire.push(message); deliver?.(message) }
  return { client, wire, sampled, elicited }
}

async function call (client: Client, name: string, args: Record<string, unknown> = {}): Promise<CallToolResult> {
  return await client.callTool({ name, arguments: args }) as CallToolResult
}

/** A loose view of a wire message, to pick requests and notifications out of it. */
interface WireMessage { id?: string | number, method?: string, params?: Record<string, unknown>, result?: unknown }
const onWire = (wire: JSONRPCMessage[], method: string): WireMessage[] =>
  (wire as WireMessage[]).filter(m => m.method === method)

/** Checks that `base64` is a well-formed PNG (chunk CRCs, IHDR, inflatable IDAT, IEND). */
function checkPng (t: Test, base64: string): void {
  const png = Buffer.from(base64, 'base64')
  t.same([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature')
  const chunks: Array<{ type: string, data: Buffer }> = []
  for (let at = 8; at < png.length;) {
    const length = png.readUInt32BE(at)
    const typeAndData = png.subarray(at + 4, at + 8 + length)
    t.equal(png.readUInt32BE(at + 8 + length), crc32(typeAndData), `CRC of chunk ${chunks.length}`)
    chunks.push({ type: typeAndData.subarray(0, 4).toString('latin1'), data: typeAndData.subarray(4) })
    at += 12 + length
  }
  t.same(chunks.map(c => c.type), ['IHDR', 'IDAT', 'IEND'])
  const header = chunks[0]?.data ?? Buffer.alloc(13)
  const [width, height, depth, colour] = [header.readUInt32BE(0), header.readUInt32BE(4), header[8], header[9]]
  t.same({ width, height, depth, colour }, { width: 1, height: 1, depth: 8, colour: 2 }, '1x1 8-bit RGB')
  t.equal(inflateSync(chunks[1]?.data ?? Buffer.alloc(0)).length, height * (1 + width * 3), 'one filter byte and one RGB pixel per row')
}

/** Checks that `base64` is a well-formed PCM WAV file. */
function checkWav (t: Test, base64: string): void {
  const wav = Buffer.from(base64, 'base64')
  t.equal(wav.toString('latin1', 0, 4), 'RIFF')
  t.equal(wav.readUInt32LE(4), wav.length - 8, 'RIFF size')
  t.equal(wav.toString('latin1', 8, 16), 'WAVEfmt ')
  t.equal(wav.readUInt16LE(20), 1, 'PCM')
  const channels = wav.readUInt16LE(22)
  const rate = wav.readUInt32LE(24)
  const bits = wav.readUInt16LE(34)
  t.equal(wav.readUInt32LE(28), rate * channels * bits / 8, 'byte rate')
  t.equal(wav.readUInt16LE(32), channels * bits / 8, 'block align')
  t.equal(wav.toString('latin1', 36, 40), 'data')
  t.equal(wav.readUInt32LE(40), wav.length - 44, 'data size')
  t.ok(wav.length > 44, 'has samples')
}

const TOOL_NAMES = [
  'test_audio_content',
  'test_elicitation',
  'test_elicitation_sep1034_defaults',
  'test_elicitation_sep1330_enums',
  'test_embedded_resource',
  'test_error_handling',
  'test_image_content',
  'test_multiple_content_types',
  'test_sampling',
  'test_simple_text',
  'test_tool_with_logging',
  'test_tool_with_progress'
]

// ---- lifecycle and utilities ----

t.test('the server declares tools, subscribable resources, prompts, logging and completions', async t => {
  const { client } = await connectFixture(t)
  t.same(client.getServerCapabilities(), {
    tools: { listChanged: true },
    resources: { subscribe: true, listChanged: true },
    prompts: { listChanged: true },
    logging: {},
    completions: {}
  })
  t.equal(client.getServerVersion()?.name, 'fastify-mcp-sse-conformance')
})

t.test('ping answers an empty result', async t => {
  const { client } = await connectFixture(t)
  t.same(await client.ping(), {})
})

t.test('logging/setLevel answers an empty result', async t => {
  const { client, wire } = await connectFixture(t)
  t.same(await client.setLoggingLevel('debug'), {})
  t.same((wire as WireMessage[]).map(m => m.result), [{}])
})

t.test('completion/complete suggests values for arg1 of test_prompt_with_arguments', async t => {
  const { client } = await connectFixture(t)
  const result = await client.complete({
    ref: { type: 'ref/prompt', name: 'test_prompt_with_arguments' },
    argument: { name: 'arg1', value: 'test' }
  })
  t.same(result, { completion: { values: ['test', 'test-alpha', 'test-beta'], total: 3, hasMore: false } })
})

// ---- tools ----

t.test('tools/list has every fixture tool, each with a valid name, a description and an object inputSchema', async t => {
  const { client } = await connectFixture(t)
  const { tools } = await client.listTools()
  t.same(tools.map(tool => tool.name).sort(), TOOL_NAMES)
  for (const tool of tools) {
    t.match(tool.name, /^[A-Za-z0-9_./-]{1,64}$/, `${tool.name}: name pattern`)
    t.ok(typeof tool.description === 'string' && tool.description.length > 0, `${tool.name}: description`)
    t.equal(tool.inputSchema.type, 'object', `${tool.name}: inputSchema`)
  }
  const byName = new Map(tools.map(tool => [tool.name, tool.inputSchema]))
  t.match(byName.get('test_sampling'), { properties: { prompt: { type: 'string' } }, required: ['prompt'] })
  t.match(byName.get('test_elicitation'), { properties: { message: { type: 'string' } }, required: ['message'] })
  t.same(byName.get('test_simple_text')?.properties ?? {}, {}, 'the other tools take no arguments')
})

t.test('test_simple_text returns the scenario\'s text', async t => {
  const { client } = await connectFixture(t)
  t.same((await call(client, 'test_simple_text')).content, [{ type: 'text', text: 'This is a simple text response for testing.' }])
})

t.test('test_image_content returns one PNG image content item holding a valid PNG', async t => {
  const { client } = await connectFixture(t)
  const { content } = await call(client, 'test_image_content')
  t.equal(content.length, 1)
  const [image] = content
  t.match(image, { type: 'image', mimeType: 'image/png', data: String })
  if (image?.type === 'image') checkPng(t, image.data)
})

t.test('test_audio_content returns one WAV audio content item holding a valid WAV', async t => {
  const { client } = await connectFixture(t)
  const { content } = await call(client, 'test_audio_content')
  t.equal(content.length, 1)
  const [audio] = content
  t.match(audio, { type: 'audio', mimeType: 'audio/wav', data: String })
  if (audio?.type === 'audio') checkWav(t, audio.data)
})

t.test('test_embedded_resource returns the embedded text resource', async t => {
  const { client } = await connectFixture(t)
  t.same((await call(client, 'test_embedded_resource')).content, [{
    type: 'resource',
    resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' }
  }])
})

t.test('test_multiple_content_types returns a text, an image and a resource, in that order', async t => {
  const { client } = await connectFixture(t)
  const { content } = await call(client, 'test_multiple_content_types')
  t.same(content.map(item => item.type), ['text', 'image', 'resource'])
  t.match(content[0], { type: 'text', text: /\S/ })
  t.match(content[1], { type: 'image', mimeType: 'image/png' })
  if (content[1]?.type === 'image') checkPng(t, content[1].data)
  t.match(content[2], { type: 'resource', resource: { uri: /^test:\/\//, mimeType: String, text: String } })
})

t.test('test_tool_with_logging sends three info messages, in order and ~50 ms apart, before its result', async t => {
  const { client } = await connectFixture(t)
  const logs: Array<LoggingMessageNotification['params']> = []
  client.setNotificationHandler(LoggingMessageNotificationSchema, n => { logs.push(n.params) })
  await client.setLoggingLevel('debug')
  const started = Date.now()
  const result = await call(client, 'test_tool_with_logging')
  const elapsed = Date.now() - started
  t.same(logs, [
    { level: 'info', data: 'Tool execution started' },
    { level: 'info', data: 'Tool processing data' },
    { level: 'info', data: 'Tool execution completed' }
  ], 'all three arrived before the result')
  t.ok(elapsed >= 100, `the call spans at least two 50 ms gaps (${elapsed} ms)`)
  t.same(result.content, [{ type: 'text', text: 'Tool with logging executed successfully' }])
  t.notOk(result.isError)
})

t.test('test_tool_with_progress reports 0, 50, 100 of 100, echoing the call\'s progress token', async t => {
  const { client, wire } = await connectFixture(t)
  const progress: Array<{ progress: number, total?: number }> = []
  const result = await client.callTool({ name: 'test_tool_with_progress', arguments: {} }, undefined, {
    onprogress: p => { progress.push(p) }
  }) as CallToolResult
  t.same(progress, [{ progress: 0, total: 100 }, { progress: 50, total: 100 }, { progress: 100, total: 100 }])
  const reply = (wire as WireMessage[]).find(m => m.result !== undefined)
  const tokens = onWire(wire, 'notifications/progress').map(m => m.params?.progressToken)
  t.same(tokens, [reply?.id, reply?.id, reply?.id], 'the token is the one the client sent (its request id)')
  t.same(result.content, [{ type: 'text', text: 'Tool with progress executed successfully' }])
})

t.test('test_tool_with_progress sends no progress when the call has no progress token', async t => {
  const { client, wire } = await connectFixture(t)
  const result = await call(client, 'test_tool_with_progress')
  t.same(onWire(wire, 'notifications/progress'), [])
  t.same(result.content, [{ type: 'text', text: 'Tool with progress executed successfully' }])
})

t.test('test_error_handling answers a result with isError, not a JSON-RPC error', async t => {
  const { client, wire } = await connectFixture(t)
  const result = await call(client, 'test_error_handling')
  t.equal(result.isError, true)
  t.same(result.content, [{ type: 'text', text: 'This tool intentionally returns an error for testing' }])
  t.equal((wire as Array<{ error?: unknown }>).filter(m => m.error !== undefined).length, 0, 'no error response on the wire')
})

t.test('test_sampling asks the client\'s LLM with the prompt and maxTokens 100, and returns its answer', async t => {
  const { client, wire, sampled } = await connectFixture(t, { llm: prompt => `Paris is the answer to "${prompt}"` })
  const result = await call(client, 'test_sampling', { prompt: 'What is the capital of France?' })
  const expected = { messages: [{ role: 'user', content: { type: 'text', text: 'What is the capital of France?' } }], maxTokens: 100 }
  t.same(onWire(wire, 'sampling/createMessage').map(m => m.params), [expected], 'on the wire')
  t.same(sampled, [expected], 'as the handler saw it')
  t.same(result.content, [{ type: 'text', text: 'LLM response: Paris is the answer to "What is the capital of France?"' }])
})

t.test('test_elicitation asks for a required username and email, and reports the accepted content', async t => {
  const { client, wire, elicited } = await connectFixture(t)
  const result = await call(client, 'test_elicitation', { message: 'Please provide your information' })
  const [params] = onWire(wire, 'elicitation/create').map(m => m.params)
  t.match(params, {
    message: 'Please provide your information',
    requestedSchema: {
      type: 'object',
      properties: { username: { type: 'string' }, email: { type: 'string' } },
      required: ['username', 'email']
    }
  })
  t.same(Object.keys((params?.requestedSchema as { properties: object }).properties), ['username', 'email'], 'no other fields')
  t.same(elicited, [params], 'the handler saw what was sent')
  t.same(result.content, [{ type: 'text', text: 'User response: action=accept, content={"username":"alice","email":"alice@example.com"}' }])
})

t.test('test_elicitation reports a declined elicitation', async t => {
  const { client } = await connectFixture(t, { elicit: () => ({ action: 'decline' }) })
  const result = await call(client, 'test_elicitation', { message: 'Who are you?' })
  t.same(result.content, [{ type: 'text', text: 'User response: action=decline, content={}' }])
})

t.test('test_elicitation_sep1034_defaults asks with a default for every primitive type', async t => {
  // The user accepts every default as offered.
  const withDefaults = (params: ElicitParams): ElicitResult => {
    const properties = 'requestedSchema' in params ? params.requestedSchema.properties : {}
    const content = Object.fromEntries(Object.entries(properties).map(([key, schema]) => [key, (schema as { default: string | number | boolean }).default]))
    return { action: 'accept', content }
  }
  const { client, wire } = await connectFixture(t, { elicit: withDefaults })
  const result = await call(client, 'test_elicitation_sep1034_defaults')
  const [params] = onWire(wire, 'elicitation/create').map(m => m.params)
  t.match(params, { message: /\S/ })
  t.match(params?.requestedSchema, {
    type: 'object',
    properties: {
      name: { type: 'string', default: 'John Doe' },
      age: { type: 'integer', default: 30 },
      score: { type: 'number', default: 95.5 },
      status: { type: 'string', enum: ['active', 'inactive', 'pending'], default: 'active' },
      verified: { type: 'boolean', default: true }
    }
  })
  t.same(result.content, [{
    type: 'text',
    text: 'Elicitation completed: action=accept, content={"name":"John Doe","age":30,"score":95.5,"status":"active","verified":true}'
  }])
})

t.test('test_elicitation_sep1330_enums asks with the five enum shapes, each in its exact form', async t => {
  const { client, wire } = await connectFixture(t, {
    elicit: () => ({ action: 'accept', content: { untitledSingle: 'option1', titledSingle: 'value2', legacyEnum: 'opt3', untitledMulti: ['option1', 'option3'], titledMulti: ['value1'] } })
  })
  const result = await call(client, 'test_elicitation_sep1330_enums')
  const [params] = onWire(wire, 'elicitation/create').map(m => m.params)
  const properties = (params?.requestedSchema as { properties: Record<string, Record<string, unknown>> }).properties
  t.same(Object.keys(properties), ['untitledSingle', 'titledSingle', 'legacyEnum', 'untitledMulti', 'titledMulti'])
  t.same(Object.keys(properties.untitledSingle ?? {}).sort(), ['enum', 'type'], 'untitled single: enum only, no oneOf or enumNames')
  t.match(properties.untitledSingle, { type: 'string', enum: ['option1', 'option2', 'option3'] })
  t.same(Object.keys(properties.titledSingle ?? {}).sort(), ['oneOf', 'type'], 'titled single: oneOf only, no enum')
  t.match(properties.titledSingle, { type: 'string', oneOf: [{ const: String, title: String }, { const: String, title: String }] })
  t.match(properties.legacyEnum, { type: 'string', enum: ['opt1', 'opt2', 'opt3'], enumNames: [String, String, String] })
  t.match(properties.untitledMulti, { type: 'array', items: { type: 'string', enum: ['option1', 'option2', 'option3'] } })
  t.same(Object.keys((properties.titledMulti?.items ?? {}) as object), ['anyOf'], 'titled multi: items hold anyOf only')
  t.match(properties.titledMulti, { type: 'array', items: { anyOf: [{ const: String, title: String }, { const: String, title: String }] } })
  t.match(result.content, [{ type: 'text', text: /^Elicitation completed: action=accept, content=\{"untitledSingle":"option1",/ }])
})

t.test('each session\'s sampling request goes to its own client', async t => {
  const { base } = await startApp(t, { server: () => buildConformanceServer() })
  const a = await connectFixture(t, { llm: () => 'from A' }, base)
  const b = await connectFixture(t, { llm: () => 'from B' }, base)
  const [ra, rb] = await Promise.all([
    call(a.client, 'test_sampling', { prompt: 'to A' }),
    call(b.client, 'test_sampling', { prompt: 'to B' })
  ])
  t.same(ra.content, [{ type: 'text', text: 'LLM response: from A' }])
  t.same(rb.content, [{ type: 'text', text: 'LLM response: from B' }])
  t.same(a.sampled.map(p => p.messages[0]?.content), [{ type: 'text', text: 'to A' }])
  t.same(b.sampled.map(p => p.messages[0]?.content), [{ type: 'text', text: 'to B' }])
})

// ---- resources ----

t.test('resources/list has the static and watched resources, templates/list the template', async t => {
  const { client } = await connectFixture(t)
  const { resources } = await client.listResources()
  t.same(resources.map(r => ({ uri: r.uri, mimeType: r.mimeType })).sort((x, y) => x.uri.localeCompare(y.uri)), [
    { uri: 'test://static-binary', mimeType: 'image/png' },
    { uri: 'test://static-text', mimeType: 'text/plain' },
    { uri: 'test://watched-resource', mimeType: 'text/plain' }
  ])
  for (const r of resources) t.ok(r.name.length > 0 && (r.description ?? '').length > 0, `${r.uri}: name and description`)
  const { resourceTemplates } = await client.listResourceTemplates()
  t.same(resourceTemplates.map(r => ({ uriTemplate: r.uriTemplate, mimeType: r.mimeType })), [
    { uriTemplate: 'test://template/{id}/data', mimeType: 'application/json' }
  ])
})

t.test('test://static-text reads as its text', async t => {
  const { client } = await connectFixture(t)
  t.same((await client.readResource({ uri: 'test://static-text' })).contents, [
    { uri: 'test://static-text', mimeType: 'text/plain', text: 'This is the content of the static text resource.' }
  ])
})

t.test('test://static-binary reads as a base64 blob of a valid PNG', async t => {
  const { client } = await connectFixture(t)
  const { contents } = await client.readResource({ uri: 'test://static-binary' })
  t.equal(contents.length, 1)
  const [content] = contents
  t.match(content, { uri: 'test://static-binary', mimeType: 'image/png', blob: String })
  t.notOk(content !== undefined && 'text' in content, 'no text')
  if (content !== undefined && 'blob' in content) checkPng(t, content.blob)
})

t.test('test://template/123/data reads as the JSON for id 123', async t => {
  const { client } = await connectFixture(t)
  const { contents } = await client.readResource({ uri: 'test://template/123/data' })
  t.equal(contents.length, 1)
  t.match(contents[0], { uri: 'test://template/123/data', mimeType: 'application/json', text: String })
  const content = contents[0]
  t.same(JSON.parse(content !== undefined && 'text' in content ? content.text : 'null'), { id: '123', templateTest: true, data: 'Data for ID: 123' })
})

t.test('test://watched-resource reads as text', async t => {
  const { client } = await connectFixture(t)
  t.match((await client.readResource({ uri: 'test://watched-resource' })).contents, [
    { uri: 'test://watched-resource', mimeType: 'text/plain', text: /\S/ }
  ])
})

t.test('subscribing to and unsubscribing from test://watched-resource both answer an empty result', async t => {
  const { client } = await connectFixture(t)
  t.same(await client.subscribeResource({ uri: 'test://watched-resource' }), {})
  t.same(await client.unsubscribeResource({ uri: 'test://watched-resource' }), {})
})

// ---- prompts ----

t.test('prompts/list has the four prompts, each with a description and its arguments', async t => {
  const { client } = await connectFixture(t)
  const { prompts } = await client.listPrompts()
  const byName = Object.fromEntries(prompts.map(p => [p.name, p]))
  t.same(Object.keys(byName).sort(), ['test_prompt_with_arguments', 'test_prompt_with_embedded_resource', 'test_prompt_with_image', 'test_simple_prompt'])
  for (const p of prompts) t.ok((p.description ?? '').length > 0, `${p.name}: description`)
  t.same(byName.test_prompt_with_arguments?.arguments?.map(a => [a.name, a.required]), [['arg1', true], ['arg2', true]])
  t.same(byName.test_prompt_with_embedded_resource?.arguments?.map(a => [a.name, a.required]), [['resourceUri', true]])
  t.notOk(byName.test_simple_prompt?.arguments?.length, 'test_simple_prompt takes no arguments')
  t.notOk(byName.test_prompt_with_image?.arguments?.length, 'test_prompt_with_image takes no arguments')
})

t.test('test_simple_prompt gets one user text message', async t => {
  const { client } = await connectFixture(t)
  t.same((await client.getPrompt({ name: 'test_simple_prompt' })).messages, [
    { role: 'user', content: { type: 'text', text: 'This is a simple prompt for testing.' } }
  ])
})

t.test('test_prompt_with_arguments gets a message that contains both argument values', async t => {
  const { client } = await connectFixture(t)
  const { messages } = await client.getPrompt({ name: 'test_prompt_with_arguments', arguments: { arg1: 'testValue1', arg2: 'testValue2' } })
  t.equal(messages.length, 1)
  t.match(messages[0], { role: 'user', content: { type: 'text', text: /testValue1[\s\S]*testValue2/ } })
})

t.test('test_prompt_with_embedded_resource gets a resource message for the given URI', async t => {
  const { client } = await connectFixture(t)
  const { messages } = await client.getPrompt({ name: 'test_prompt_with_embedded_resource', arguments: { resourceUri: 'test://example-resource' } })
  t.match(messages[0], { role: 'user', content: { type: 'resource', resource: { uri: 'test://example-resource', mimeType: 'text/plain', text: /\S/ } } })
  t.match(messages.slice(1), [{ role: 'user', content: { type: 'text' } }])
})

t.test('test_prompt_with_image gets an image message holding a valid PNG', async t => {
  const { client } = await connectFixture(t)
  const { messages } = await client.getPrompt({ name: 'test_prompt_with_image' })
  const image = messages.find(m => m.content.type === 'image')?.content
  t.match(image, { type: 'image', mimeType: 'image/png', data: String })
  if (image?.type === 'image') checkPng(t, image.data)
})

// ---- run directly ----

t.test('run directly, example/conformance.ts serves the fixture on PORT', async t => {
  const { url, stop } = await runFixture(t, 'example/conformance.ts', /MCP conformance fixture: (\S+)/)
  t.match(url, /^http:\/\/127\.0\.0\.1:\d+\/mcp$/)
  const { client } = await connectFixture(t, {}, url.replace(/\/mcp$/, ''))
  t.equal(client.getServerVersion()?.name, 'fastify-mcp-sse-conformance')
  t.same((await call(client, 'test_simple_text')).content, [{ type: 'text', text: 'This is a simple text response for testing.' }])
  await client.close()
  t.equal(await stop(), 0, 'SIGTERM closes the app and exits cleanly')
})
