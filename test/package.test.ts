// The package as a user gets it. `npm pack` (which builds dist/ through `prepare`) makes the
// tarball; it is installed into new projects in a temporary folder, outside this repository,
// so nothing resolves from our own node_modules:
//   - with only its peer dependencies, it serves the SDK's Client;
//   - the README's marked snippets run there as written.
//
// A README code block is marked for this test by `<!-- snippet-test ... -->` on the line right
// before its fence:
//   - a marked ```sh block is a setup: its lines run in a new empty folder with bash, `npm
//     install`'s `fastify-mcp-sse` replaced by the packed tarball (the package is not on the
//     npm registry), npm preferring its cache;
//   - a marked ```ts block is saved as server.ts in a project made by the nearest marked sh
//     block above it, one new project per ts block. Every package it imports must then be in
//     the project's package.json (a package only present through another's dependencies does
//     not count). It must type-check with our TypeScript under strict (noUnusedLocals and
//     noUnusedParameters too), and `npx --no tsx server.ts` must serve the SDK's Client an
//     `echo` tool at /sse (or at the path of `sse=<path>` in the marker, e.g.
//     `<!-- snippet-test sse=/mcp/sse -->`), logging Fastify's "Server listening at <url>"
//     line; every `port: <number>` in it becomes `port: 0`.
// Nothing here skips: a missing marker, tool or answer fails.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, join, relative } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import t, { type Test } from 'tap'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  name: string
  peerDependencies: Record<string, string>
}
const TSC = join(root, 'node_modules/typescript/bin/tsc')

// npm builds and installs: about 45 s alone, about 100 s under the load of the whole suite,
// and every marked README snippet adds a project of its own. The projects are independent,
// so they are made two at a time.
t.setTimeout(300_000)
t.jobs = 2

const work = mkdtempSync(join(tmpdir(), 'fastify-mcp-sse-package-test-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))

// Commands for the new projects see neither our node_modules/.bin nor a cache-bypassing npm.
const projectEnv: NodeJS.ProcessEnv = {
  ...process.env,
  PATH: (process.env.PATH ?? '').split(delimiter).filter(dir => !/node_modules[\\/]\.bin$|node-gyp-bin$/.test(dir)).join(delimiter),
  npm_config_prefer_offline: 'true',
  npm_config_audit: 'false',
  npm_config_fund: 'false',
  npm_config_update_notifier: 'false'
}

interface Run { code: number | null, stdout: string, out: string }

/** Runs a command to its end (killed after `timeoutMs`), stdout and stderr together. */
function run (command: string, args: string[], cwd: string, timeoutMs: number, env: NodeJS.ProcessEnv = projectEnv): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs, killSignal: 'SIGKILL' })
    let stdout = ''
    let out = ''
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); out += chunk.toString() })
    child.stderr.on('data', (chunk: Buffer) => { out += chunk.toString() })
    child.once('error', reject)
    child.once('close', code => resolve({ code, stdout, out }))
  })
}

async function mustRun (t: Test, what: string, command: string, args: string[], cwd: string, timeoutMs = 120_000): Promise<string> {
  const result = await run(command, args, cwd, timeoutMs)
  if (result.code !== 0) throw new Error(`${what} failed (exit ${result.code}):\n${result.out.slice(-3000)}`)
  t.comment(`${what}: ok`)
  return result.out
}

// --- The tarball --------------------------------------------------------------------

const packDir = join(work, 'pack')
mkdirSync(packDir)
const packed = await run('npm', ['pack', '--json', '--pack-destination', packDir], root, 120_000, process.env)
if (packed.code !== 0) throw new Error(`npm pack failed (exit ${packed.code}):\n${packed.out.slice(-3000)}`)
const packInfo = JSON.parse(packed.stdout) as Array<{ filename: string, files: Array<{ path: string }> }>
const tarball = join(packDir, packInfo[0]!.filename)

function sources (dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap(entry => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return sources(path)
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [relative(join(root, 'src'), path)] : []
  })
}

t.test('npm pack holds the JS and type declarations built from every source file, README, LICENSE and package.json, nothing else', async t => {
  const expected = ['LICENSE', 'README.md', 'package.json',
    ...sources(join(root, 'src')).flatMap(file => {
      const base = `dist/${file.replace(/\\/g, '/').replace(/\.ts$/, '')}`
      return [`${base}.js`, `${base}.d.ts`]
    })]
  t.same(packInfo[0]!.files.map(f => f.path).sort(), expected.sort())
})

// --- Installed with only its peer dependencies ---------------------------------------

t.test('installed from the tarball with only its peer dependencies, it serves the SDK client a tool', async t => {
  const dir = join(work, 'peers-only')
  mkdirSync(dir)
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'peers-only', private: true, type: 'module' }))
  const peers = Object.entries(pkg.peerDependencies).map(([name, range]) => `${name}@${range}`)
  await mustRun(t, `npm install the tarball ${peers.join(' ')}`, 'npm', ['install', tarball, ...peers], dir)
  const installed = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }
  t.same(Object.keys(installed.dependencies).sort(), [pkg.name, ...Object.keys(pkg.peerDependencies)].sort(), 'the project depends on the package and its peers only')
  const ls = await run('npm', ['ls', '--all'], dir, 60_000)
  t.equal(ls.code, 0, 'npm ls finds no missing or invalid dependency', { output: ls.out.slice(-2000) })

  // Plain JS, no build step: what the package's own dist/ and exports give a Node 20 app.
  writeFileSync(join(dir, 'server.js'), `
import Fastify from 'fastify'
import mcpSse from '${pkg.name}'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'

const app = Fastify()
await app.register(mcpSse, {
  server: () => {
    const server = new McpServer({ name: 'from-the-tarball', version: '1.0.0' })
    server.registerTool('where', {}, async () => ({ content: [{ type: 'text', text: import.meta.resolve('${pkg.name}') }] }))
    return server
  }
})
await app.listen({ port: 0, host: '127.0.0.1' })
console.log('Server listening at http://127.0.0.1:' + app.server.address().port)
`)
  const url = await serve(t, process.execPath, ['server.js'], dir)
  const client = await connect(t, `${url}/sse`)
  const result = await client.callTool({ name: 'where', arguments: {} })
  t.same(result.content, [{ type: 'text', text: pathToFileURL(join(dir, 'node_modules', pkg.name, 'dist', 'index.js')).href }],
    'the tool answers, served by the installed dist/index.js')
})

// --- The README's marked snippets -----------------------------------------------------

interface Block { lang: string, line: number, code: string, sse: string }

const README = readFileSync(join(root, 'README.md'), 'utf8')

/** The code blocks marked with `<!-- snippet-test ... -->` on the line before their fence. */
function markedBlocks (markdown: string): Block[] {
  const lines = markdown.split('\n')
  const blocks: Block[] = []
  for (let i = 0; i < lines.length - 1; i++) {
    const marker = /^<!--\s*snippet-test\b(.*)-->\s*$/.exec(lines[i]!)
    if (marker === null) continue
    const fence = /^(```+)(\w*)\s*$/.exec(lines[i + 1]!)
    if (fence === null) throw new Error(`README.md line ${i + 1}: a snippet-test marker must be right before a code fence`)
    const end = lines.findIndex((l, j) => j > i + 1 && l.startsWith(fence[1]!))
    if (end === -1) throw new Error(`README.md line ${i + 2}: the marked code block never closes`)
    const sse = /(?:^|\s)sse=(\S+)/.exec(marker[1]!)?.[1] ?? '/sse'
    blocks.push({ lang: fence[2]!, line: i + 2, code: lines.slice(i + 2, end).join('\n'), sse })
  }
  return blocks
}

const blocks = markedBlocks(README)
const snippets = blocks.filter(b => b.lang === 'ts')

t.test('README.md marks its quick start for this test: a setup block and the code', async t => {
  t.ok(snippets.length >= 1, 'at least one marked ts block')
  t.same(blocks.filter(b => !['sh', 'ts'].includes(b.lang)).map(b => `line ${b.line}: ${b.lang}`), [], 'marked blocks are sh or ts')
})

/** The package names a module imports (bare specifiers, no node: builtins). */
function importedPackages (code: string): string[] {
  const names = new Set<string>()
  for (const match of code.matchAll(/(?:\bfrom\s+|\bimport\s*\(?\s*)['"]([^'"]+)['"]/g)) {
    const specifier = match[1]!
    if (specifier.startsWith('.') || specifier.startsWith('node:')) continue
    const parts = specifier.split('/')
    names.add(specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!)
  }
  return [...names].sort()
}

for (const snippet of snippets) {
  t.test(`README.md line ${snippet.line}: the snippet, in a project made by its setup block, type-checks under strict and answers echo`, async t => {
    const setup = blocks.filter(b => b.lang === 'sh' && b.line < snippet.line).at(-1)
    if (setup === undefined) throw new Error(`README.md line ${snippet.line}: no marked sh setup block above this snippet`)
    const dir = join(work, `readme-line-${snippet.line}`)
    mkdirSync(dir)
    const script = setup.code.split('\n').map(line => /^\s*npm\s+(install|i|add)\b/.test(line)
      ? line.replace(new RegExp(`(?<=\\s)${pkg.name}(?=\\s|$)`, 'g'), `'${tarball}'`)
      : line).join('\n')
    await mustRun(t, `the setup block at README.md line ${setup.line}`, 'bash', ['-euo', 'pipefail', '-c', script], dir)

    const project = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { type?: string, dependencies?: Record<string, string>, devDependencies?: Record<string, string> }
    const declared = Object.keys({ ...project.dependencies, ...project.devDependencies })
    t.same(importedPackages(snippet.code).filter(name => !declared.includes(name)), [],
      'every package the snippet imports is installed by the setup block')

    const code = snippet.code.replace(/\bport:\s*\d+/g, 'port: 0')
    t.not(code, snippet.code, 'the snippet listens on a port number (made 0 here)')
    writeFileSync(join(dir, 'server.ts'), code)
    const check = await run(process.execPath, [TSC, '--noEmit', '--strict', '--noUnusedLocals', '--noUnusedParameters',
      '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--lib', 'es2023', '--skipLibCheck',
      'server.ts'], dir, 60_000)
    t.equal(check.code, 0, 'tsc --strict --noEmit finds no error', { output: check.out })

    const url = await serve(t, 'npx', ['--no', 'tsx', 'server.ts'], dir)
    const client = await connect(t, `${url}${snippet.sse}`)
    const tools = await client.listTools()
    t.ok(tools.tools.some(tool => tool.name === 'echo'), 'it lists an echo tool')
    const text = `hello from README.md line ${snippet.line}`
    t.same((await client.callTool({ name: 'echo', arguments: { text } })).content, [{ type: 'text', text }], 'echo answers')
  })
}

// --- Helpers --------------------------------------------------------------------------

/** Starts a server process (its own process group, killed when the test ends) and waits for Fastify's "Server listening at". */
async function serve (t: Test, command: string, args: string[], cwd: string): Promise<string> {
  const child: ChildProcess = spawn(command, args, { cwd, env: projectEnv, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  t.teardown(() => stop(child))
  return await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${command} ${args.join(' ')} did not log "Server listening at" in 30 s:\n${out}`)), 30_000)
    const onData = (chunk: Buffer): void => {
      out += chunk.toString()
      const urls = [...out.matchAll(/Server listening at (http:\/\/[^\s"]+)/g)].map(m => m[1]!)
      const url = urls.find(u => u.includes('127.0.0.1')) ?? urls[0]
      if (url !== undefined) { clearTimeout(timer); resolve(url) }
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onData)
    child.once('exit', code => { clearTimeout(timer); reject(new Error(`${command} ${args.join(' ')} exited (${code}) before listening:\n${out}`)) })
  })
}

async function stop (child: ChildProcess): Promise<void> {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
  try { process.kill(-child.pid, 'SIGTERM') } catch { return }
  const timer = setTimeout(() => { try { process.kill(-child.pid!, 'SIGKILL') } catch {} }, 5000)
  await exited
  clearTimeout(timer)
}

async function connect (t: Test, url: string): Promise<Client> {
  const client = new Client({ name: 'package-test', version: '1.0.0' })
  try {
    await client.connect(new SSEClientTransport(new URL(url)))
  } catch (err) {
    throw new Error(`the SDK client could not connect to ${url}: ${(err as Error).message}`)
  }
  t.teardown(() => client.close())
  return client
}
