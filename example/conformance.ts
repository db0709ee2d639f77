// The fixture server of the official MCP conformance suite (`@modelcontextprotocol/conformance`,
// server mode, `--requirements 2025-11-25`): the tools, resources, prompts and completions its
// scenarios call, with the exact names, texts and payloads they check. The suite speaks
// Streamable HTTP, so it runs against this fixture once the plugin serves that transport;
// until then test/conformance-fixture.test.ts checks it over HTTP+SSE with the SDK's client.
//
// Run directly (`node --import tsx example/conformance.ts`), it serves the fixture on
// http://127.0.0.1:$PORT (default 3001), one fixture server per session.
import { setTimeout as delay } from 'node:timers/promises'
import { pathToFileURL } from 'node:url'
import { crc32, deflateSync } from 'node:zlib'
import Fastify from 'fastify'
import { completable } from '@modelcontextprotocol/sdk/server/completable.js'
import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js'
import {
  CreateMessageResultSchema,
  ElicitResultSchema,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
  type CallToolResult,
  type CreateMessageResult,
  type ElicitRequestFormParams,
  type ElicitResult
} from '@modelcontextprotocol/sdk/types.js'
import { z } from 'zod'
import mcpSse from '../src/index.js'

/** The gap between the notifications of the logging and progress tools. */
const STEP_MS = 50

/** A PNG chunk: length, type, data, CRC-32 of type and data. */
function pngChunk (type: string, data: Buffer): Buffer {
  const typeAndData = Buffer.concat([Buffer.from(type, 'latin1'), data])
  const out = Buffer.alloc(4 + typeAndData.length + 4)
  out.writeUInt32BE(data.length, 0)
  typeAndData.copy(out, 4)
  out.writeUInt32BE(crc32(typeAndData), 4 + typeAndData.length)
  return out
}

/** A valid 1x1 PNG (8-bit RGB, one red pixel). */
function tinyPng (): Buffer {
  const header = Buffer.alloc(13)
  header.writeUInt32BE(1, 0) // width
  header.writeUInt32BE(1, 4) // height
  header[8] = 8 // bit depth
  header[9] = 2 // colour type: RGB (compression, filter, interlace: 0)
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', header),
    pngChunk('IDAT', deflateSync(Buffer.from([0, 0xff, 0x00, 0x00]))), // filter byte, then R G B
    pngChunk('IEND', Buffer.alloc(0))
  ])
}

/** A valid WAV: 8 kHz, mono, 16-bit PCM, 8 silent samples (1 ms). */
function tinyWav (): Buffer {
  const samples = Buffer.alloc(16)
  const header = Buffer.alloc(44)
  header.write('RIFF', 0, 'latin1')
  header.writeUInt32LE(36 + samples.length, 4)
  header.write('WAVE', 8, 'latin1')
  header.write('fmt ', 12, 'latin1')
  header.writeUInt32LE(16, 16) // fmt chunk size
  header.writeUInt16LE(1, 20) // PCM
  header.writeUInt16LE(1, 22) // channels
  header.writeUInt32LE(8000, 24) // sample rate
  header.writeUInt32LE(8000 * 2, 28) // byte rate
  header.writeUInt16LE(2, 32) // block align
  header.writeUInt16LE(16, 34) // bits per sample
  header.write('data', 36, 'latin1')
  header.writeUInt32LE(samples.length, 40)
  return Buffer.concat([header, samples])
}

/** Base64 of the tiny PNG the image tools, the binary resource and the image prompt carry. */
export const PNG_BASE64 = tinyPng().toString('base64')
/** Base64 of the tiny WAV the audio tool carries. */
export const WAV_BASE64 = tinyWav().toString('base64')

/** Suggestions for `arg1` of test_prompt_with_arguments (filtered by the typed prefix). */
export const ARG1_SUGGESTIONS = ['test', 'test-alpha', 'test-beta', 'example']

/** The form test_elicitation asks for. */
export const ELICITATION_SCHEMA = {
  type: 'object',
  properties: {
    username: { type: 'string', description: 'The user\'s name' },
    email: { type: 'string', description: 'The user\'s email address' }
  },
  required: ['username', 'email']
} satisfies ElicitRequestFormParams['requestedSchema']

/** SEP-1034: every primitive type, each with a default. */
export const DEFAULTS_SCHEMA = {
  type: 'object',
  properties: {
    name: { type: 'string', description: 'Name', default: 'John Doe' },
    age: { type: 'integer', description: 'Age', default: 30 },
    score: { type: 'number', description: 'Score', default: 95.5 },
    status: { type: 'string', description: 'Status', enum: ['active', 'inactive', 'pending'], default: 'active' },
    verified: { type: 'boolean', description: 'Verified', default: true }
  }
} satisfies ElicitRequestFormParams['requestedSchema']

/** SEP-1330: the five enum shapes (untitled/titled single, legacy enumNames, untitled/titled multi). */
export const ENUMS_SCHEMA = {
  type: 'object',
  properties: {
    untitledSingle: { type: 'string', enum: ['option1', 'option2', 'option3'] },
    titledSingle: {
      type: 'string',
      oneOf: [
        { const: 'value1', title: 'First Option' },
        { const: 'value2', title: 'Second Option' },
        { const: 'value3', title: 'Third Option' }
      ]
    },
    legacyEnum: { type: 'string', enum: ['opt1', 'opt2', 'opt3'], enumNames: ['Option One', 'Option Two', 'Option Three'] },
    untitledMulti: { type: 'array', items: { type: 'string', enum: ['option1', 'option2', 'option3'] } },
    titledMulti: {
      type: 'array',
      items: {
        anyOf: [
          { const: 'value1', title: 'First Choice' },
          { const: 'value2', title: 'Second Choice' },
          { const: 'value3', title: 'Third Choice' }
        ]
      }
    }
  }
} satisfies ElicitRequestFormParams['requestedSchema']

const text = (value: string): CallToolResult => ({ content: [{ type: 'text', text: value }] })

/** The text of a sampling answer (one block or several). */
function samplingText (result: CreateMessageResult): string {
  const blocks = Array.isArray(result.content) ? result.content : [result.content]
  return blocks.map(block => block.type === 'text' ? block.text : `[${block.type}]`).join('')
}

const describeElicitation = (result: ElicitResult): string =>
  `action=${result.action}, content=${JSON.stringify(result.content ?? {})}`

/**
 * The conformance fixture: one instance per session (the plugin calls this factory for every
 * new connection).
 */
export function buildConformanceServer (): McpServer {
  const server = new McpServer(
    { name: 'fastify-mcp-sse-conformance', version: '1.0.0' },
    {
      capabilities: {
        tools: {},
        resources: { subscribe: true },
        prompts: {},
        logging: {},
        completions: {}
      }
    }
  )

  // ---- tools ----

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

  server.registerTool('test_tool_with_logging', {
    description: 'Sends three info log messages while it runs'
  }, async extra => {
    for (const data of ['Tool execution started', 'Tool processing data', 'Tool execution completed']) {
      // Request-scoped, so on Streamable HTTP they travel on the call's own stream. Each is
      // followed by a pause, so none arrives together with the result.
      await extra.sendNotification({ method: 'notifications/message', params: { level: 'info', data } })
      await delay(STEP_MS, undefined, { signal: extra.signal })
    }
    return text('Tool with logging executed successfully')
  })

  server.registerTool('test_tool_with_progress', {
    description: 'Reports progress 0, 50, 100 of 100 when the call carries a progress token'
  }, async extra => {
    const progressToken = extra._meta?.progressToken
    for (const progress of [0, 50, 100]) {
      if (progressToken !== undefined) {
        await extra.sendNotification({ method: 'notifications/progress', params: { progressToken, progress, total: 100 } })
      }
      // The SDK client drops progress that arrives in the same read as the result.
      await delay(STEP_MS, undefined, { signal: extra.signal })
    }
    return text('Tool with progress executed successfully')
  })

  server.registerTool('test_error_handling', {
    description: 'Returns a tool error result (isError), not a JSON-RPC error'
  }, async () => ({
    isError: true,
    content: [{ type: 'text', text: 'This tool intentionally returns an error for testing' }]
  }))

  server.registerTool('test_sampling', {
    description: 'Asks the client\'s LLM (sampling/createMessage) and returns its answer',
    inputSchema: { prompt: z.string().describe('The prompt to send to the LLM') }
  }, async ({ prompt }, extra) => {
    const result = await extra.sendRequest({
      method: 'sampling/createMessage',
      params: { messages: [{ role: 'user', content: { type: 'text', text: prompt } }], maxTokens: 100 }
    }, CreateMessageResultSchema)
    return text(`LLM response: ${samplingText(result)}`)
  })

  server.registerTool('test_elicitation', {
    description: 'Asks the user (elicitation/create) for a username and an email',
    inputSchema: { message: z.string().describe('The message to show the user') }
  }, async ({ message }, extra) => {
    const result = await extra.sendRequest({
      method: 'elicitation/create',
      params: { message, requestedSchema: ELICITATION_SCHEMA }
    }, ElicitResultSchema)
    return text(`User response: ${describeElicitation(result)}`)
  })

  server.registerTool('test_elicitation_sep1034_defaults', {
    description: 'Elicitation whose fields all have defaults (SEP-1034)'
  }, async extra => {
    const result = await extra.sendRequest({
      method: 'elicitation/create',
      params: { message: 'Please review and update the form fields with defaults', requestedSchema: DEFAULTS_SCHEMA }
    }, ElicitResultSchema)
    return text(`Elicitation completed: ${describeElicitation(result)}`)
  })

  server.registerTool('test_elicitation_sep1330_enums', {
    description: 'Elicitation with every enum schema shape (SEP-1330)'
  }, async extra => {
    const result = await extra.sendRequest({
      method: 'elicitation/create',
      params: { message: 'Please choose from the enum fields', requestedSchema: ENUMS_SCHEMA }
    }, ElicitResultSchema)
    return text(`Elicitation completed: ${describeElicitation(result)}`)
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
    description: 'A resource clients can subscribe to',
    mimeType: 'text/plain'
  }, async uri => ({
    contents: [{ uri: uri.href, mimeType: 'text/plain', text: 'This is the content of the watched resource.' }]
  }))

  // McpServer has no subscription API: the low-level server answers them.
  const subscriptions = new Set<string>()
  server.server.setRequestHandler(SubscribeRequestSchema, async request => {
    subscriptions.add(request.params.uri)
    return {}
  })
  server.server.setRequestHandler(UnsubscribeRequestSchema, async request => {
    subscriptions.delete(request.params.uri)
    return {}
  })

  // ---- prompts ----

  server.registerPrompt('test_simple_prompt', {
    description: 'A prompt without arguments'
  }, async () => ({
    messages: [{ role: 'user', content: { type: 'text', text: 'This is a simple prompt for testing.' } }]
  }))

  server.registerPrompt('test_prompt_with_arguments', {
    description: 'A prompt with two arguments',
    argsSchema: {
      arg1: completable(z.string().describe('First test argument'), value => ARG1_SUGGESTIONS.filter(s => s.startsWith(value))),
      arg2: z.string().describe('Second test argument')
    }
  }, async ({ arg1, arg2 }) => ({
    messages: [{ role: 'user', content: { type: 'text', text: `Prompt with arguments: arg1='${arg1}', arg2='${arg2}'` } }]
  }))

  server.registerPrompt('test_prompt_with_embedded_resource', {
    description: 'A prompt that embeds a resource',
    argsSchema: { resourceUri: z.string().describe('URI of the resource to embed') }
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

  return server
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const port = Number(process.env.PORT ?? 3001)
  const host = process.env.HOST ?? '127.0.0.1'
  // Force-close on shutdown: a client's idle spare connection would otherwise hold
  // app.close() until Node's headersTimeout (a minute).
  const app = Fastify({ logger: { level: process.env.LOG_LEVEL ?? 'info' }, forceCloseConnections: true })
  await app.register(mcpSse, { server: () => buildConformanceServer() })
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => { void app.close().then(() => process.exit(0)) })
  }
  const address = await app.listen({ port, host })
  console.log(`MCP conformance fixture: ${address}/mcp`)
}
