// mcp-remote (a stdio-to-remote bridge, a client nobody on this project wrote) in front of
// the plugin: the SDK's own Client talks stdio to a spawned mcp-remote, which talks HTTP+SSE
// to the plugin on 127.0.0.1. mcp-remote needs Node >= 18, so it runs on the Node that runs
// the tests. Its config dir (MCP_REMOTE_CONFIG_DIR) and HOME are a temporary folder.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js'
import { ApiKeyAuthProvider } from '../src/index.js'
import { recordWire, startObservedApp, until } from './support/helpers.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const PKG_DIR = join(root, 'node_modules/mcp-remote')
if (!existsSync(join(PKG_DIR, 'package.json'))) throw new Error(`mcp-remote is not installed in ${PKG_DIR}: run npm ci.`)
const pkg = JSON.parse(readFileSync(join(PKG_DIR, 'package.json'), 'utf8')) as { version: string, bin: Record<string, string> }
t.comment(`mcp-remote ${pkg.version} runs on ${process.execPath} (${process.version})`)
const PROXY = join(PKG_DIR, pkg.bin['mcp-remote'] as string)

const home = mkdtempSync(join(tmpdir(), 'mcp-remote-test-'))
t.teardown(() => rmSync(home, { recursive: true, force: true }))

interface Bridge { client: Client, transport: StdioClientTransport, stderr: () => string }

/** Spawns mcp-remote for `url` and connects the SDK's Client to it over stdio. */
async function bridge (t: Test, url: string, args: string[]): Promise<Bridge> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [PROXY, url, ...args],
    env: { PATH: process.env.PATH ?? '', HOME: home, MCP_REMOTE_CONFIG_DIR: join(home, 'mcp-auth') },
    cwd: home,
    stderr: 'pipe'
  })
  let stderr = ''
  transport.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  const client = new Client({ name: 'mcp-remote-test', version: '1.0.0' })
  t.teardown(async () => {
    const pid = transport.pid
    await client.close().catch(() => {})
    // close() ends the child; make sure of it even if it did not.
    if (pid !== null && alive(pid)) process.kill(pid, 'SIGKILL')
  })
  try {
    await client.connect(transport, { timeout: 20_000 })
  } catch (err) {
    t.comment(`mcp-remote stderr:\n${stderr}`)
    throw err
  }
  return { client, transport, stderr: () => stderr }
}

function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch { return false }
}

function text (result: unknown): string {
  const first = (result as CallToolResult).content[0]
  return first !== undefined && first.type === 'text' ? first.text : ''
}

t.test(`mcp-remote ${pkg.version} --transport sse-only: initialize, list tools, call echo`, async t => {
  const mcp = await startObservedApp(t)
  const { client, stderr } = await bridge(t, `${mcp.base}/sse`, ['--transport', 'sse-only'])
  t.same(client.getServerVersion(), { name: 'fastify-mcp-sse-example', version: '1.0.0' }, 'the plugin\'s server answered initialize')
  const { tools } = await client.listTools()
  t.same(tools.map(x => x.name).sort(), ['countdown', 'echo'])
  t.equal(text(await client.callTool({ name: 'echo', arguments: { text: 'through mcp-remote ✓' } })), 'through mcp-remote ✓')
  t.same(mcp.clients, [{ name: `mcp-remote-test (via mcp-remote ${pkg.version})`, version: '1.0.0' }],
    'one session initialized, by our client through mcp-remote')
  t.match(stderr(), /Connected to remote server using SSEClientTransport/)
  t.notOk(mcp.requests.includes('POST /sse'), 'sse-only never tried Streamable HTTP')
  t.ok(mcp.requests.includes('POST /messages'), 'it POSTed to the announced message endpoint')
})

t.test('progress notifications of a long call are relayed to the stdio client', async t => {
  const mcp = await startObservedApp(t)
  const { client } = await bridge(t, `${mcp.base}/sse`, ['--transport', 'sse-only'])
  const progress: number[] = []
  const result = await client.callTool({ name: 'countdown', arguments: { from: 3, intervalMs: 20 } }, undefined,
    { onprogress: p => { progress.push(p.progress) } })
  t.same(progress, [0, 1, 2])
  t.equal(text(result), 'Counted down from 3')
})

t.test('the default strategy (http-first) falls back to SSE on the 404 of POST /sse', async t => {
  const mcp = await startObservedApp(t)
  const { client, stderr } = await bridge(t, `${mcp.base}/sse`, [])
  t.equal(text(await client.callTool({ name: 'echo', arguments: { text: 'fell back' } })), 'fell back')
  t.ok(mcp.requests.includes('POST /sse'), 'it tried Streamable HTTP first')
  t.match(stderr(), /Connected to remote server using SSEClientTransport/)
  t.equal(mcp.clients.length, 1)
})

t.test('an API key passed with --header reaches both the stream and the POSTs', async t => {
  const mcp = await startObservedApp(t, { auth: { provider: new ApiKeyAuthProvider({ keys: ['k'] }) } })
  const { client } = await bridge(t, `${mcp.base}/sse`, ['--transport', 'sse-only', '--header', 'x-api-key:k'])
  t.equal(text(await client.callTool({ name: 'echo', arguments: { text: 'keyed' } })), 'keyed')
  t.equal(mcp.clients.length, 1)
})

t.test('closing the client ends mcp-remote, and every session it opened closes on the server', async t => {
  const mcp = await startObservedApp(t)
  const { client, transport } = await bridge(t, `${mcp.base}/sse`, ['--transport', 'sse-only'])
  t.equal(text(await client.callTool({ name: 'echo', arguments: { text: 'bye' } })), 'bye')
  const pid = transport.pid
  t.ok(pid !== null && alive(pid), 'mcp-remote is running')
  t.ok(mcp.app.mcpSessions.size >= 1, 'with its session open')
  await client.close()
  await until(() => pid === null || !alive(pid), 5000, 'mcp-remote to exit')
  await until(() => mcp.app.mcpSessions.size === 0, 5000, 'its sessions to close')
  t.pass('mcp-remote exited and the server closed its sessions')
})

t.test('the streams mcp-remote opens only to probe for auth are reclaimed when it aborts them; its own session lives on', async t => {
  const mcp = await startObservedApp(t)
  const { client } = await bridge(t, `${mcp.base}/sse`, ['--transport', 'sse-only'])
  // mcp-remote 0.15 probes the URL with GETs (for a 401 challenge) and never reads or cancels
  // those bodies: each is a real session here until the probe's AbortSignal.timeout (5 s and
  // 10 s) ends its connection. Only one session is ever initialized.
  t.equal(mcp.requests.filter(r => r === 'GET /sse').length, 3, 'three GETs of the stream: two probes and the real one')
  await until(() => mcp.app.mcpSessions.size === 1, 15_000, 'the probe streams to be reclaimed')
  t.pass('the probes\' sessions closed when mcp-remote aborted them')
  t.equal(text(await client.callTool({ name: 'echo', arguments: { text: 'still here' } })), 'still here', 'the bridge\'s own session still works')
  t.equal(mcp.clients.length, 1, 'and it is the only session that was ever initialized')
})

// Streamable HTTP: given the `/mcp` URL, mcp-remote's default strategy (http-first) speaks
// Streamable HTTP and never falls back to SSE.


t.test('given /mcp, the default strategy (http-first) connects with Streamable HTTP: tools, progress, no fallback', async t => {
  const mcp = await startObservedApp(t, { sessionIdleTimeout: 500 })
  const seen = recordWire(mcp.app)
  const { client, transport, stderr } = await bridge(t, `${mcp.base}/mcp`, [])
  t.same(client.getServerVersion(), { name: 'fastify-mcp-sse-example', version: '1.0.0' }, 'the plugin\'s server answered initialize')
  const { tools } = await client.listTools()
  t.same(tools.map(x => x.name).sort(), ['countdown', 'echo'])
  t.equal(text(await client.callTool({ name: 'echo', arguments: { text: 'through mcp-remote over /mcp ✓' } })), 'through mcp-remote over /mcp ✓')
  const progress: number[] = []
  const result = await client.callTool({ name: 'countdown', arguments: { from: 3, intervalMs: 20 } }, undefined,
    { onprogress: p => { progress.push(p.progress) } })
  t.same(progress, [0, 1, 2], 'the progress of a streamed POST answer reached the stdio client')
  t.equal(text(result), 'Counted down from 3')

  t.match(stderr(), /Connected to remote server using StreamableHTTPClientTransport/)
  t.notMatch(stderr(), /SSEClientTransport|Recursively reconnecting/, 'no fallback to SSE')
  t.ok(mcp.requests.includes('POST /mcp'), 'the messages were POSTed to /mcp')
  t.notOk(mcp.requests.some(r => r === 'GET /sse' || r === 'POST /sse' || r === 'POST /messages'), 'nothing went to the HTTP+SSE endpoints')
  // mcp-remote 0.15 checks the connection with a second client of its own before ours.
  t.same(mcp.clients, [{ name: 'mcp-remote-fallback-test', version: '0.0.0' }, { name: `mcp-remote-test (via mcp-remote ${pkg.version})`, version: '1.0.0' }],
    'two sessions initialized: mcp-remote\'s connection test, then our client through mcp-remote')
  const inits = seen.filter(r => r.method === 'POST' && r.path === '/mcp' && r.sessionId === undefined)
  t.equal(inits.length, 2, 'each with a POST /mcp without Mcp-Session-Id (its initialize)')
  const issued = inits.map(r => r.issued).filter(x => x !== undefined).sort()
  t.equal(issued.length, 2, 'each answered with a new Mcp-Session-Id')
  t.same([...new Set(seen.flatMap(r => r.sessionId ?? []))].sort(), issued, 'every later request carried one of those two ids')
  // Its auth probes (GET /mcp, Accept: application/json, text/event-stream, no session id)
  // are HTTP+SSE clients to the one-URL endpoint: each opens an HTTP+SSE session that
  // nothing ever POSTs to (no POST /messages above), reclaimed when the probe aborts.
  const probes = seen.filter(r => r.method === 'GET' && r.path === '/mcp' && r.sessionId === undefined).length
  t.equal([...mcp.app.mcpSessions].filter(s => s.kind === 'sse').length <= probes, true,
    `the only HTTP+SSE sessions are those of its ${probes} probe GETs`)

  const pid = transport.pid
  await client.close()
  await until(() => pid === null || !alive(pid), 5000, 'mcp-remote to exit')
  t.comment(`mcp-remote ${mcp.requests.includes('DELETE /mcp') ? 'sent' : 'sent no'} DELETE /mcp on exit`)
  await until(() => ![...mcp.app.mcpSessions].some(s => s.kind === 'streamable'), 5000, 'its Streamable sessions to close')
  t.pass('its Streamable sessions closed (DELETE, or the idle timeout once its streams were gone)')
})
