// Re-renders a results file's chart: `node --import tsx benchmarks/chart.ts [results/latest.json]`
// writes the .svg next to the .json (what `npm run bench` does at the end of a run; the
// chart depends on the JSON alone).
import { readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { renderChart } from './lib/chart.js'
import type { Results } from './lib/report.js'
import { ROOT } from './lib/servers.js'

const input = resolve(process.argv[2] ?? join(ROOT, 'benchmarks', 'results', 'latest.json'))
const output = input.replace(/\.json$/, '') + '.svg'
writeFileSync(output, renderChart(JSON.parse(readFileSync(input, 'utf8')) as Results))
process.stdout.write(`${output}\n`)
