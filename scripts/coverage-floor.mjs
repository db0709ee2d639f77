// The coverage floor of `npm test`. tap 21 enforces only 100% (or nothing, with
// allow-incomplete-coverage), so this reads the floor from the `# coverage-floor:` line of
// .taprc and the json-summary report tap wrote for the run, and fails below the floor.
import { readFileSync } from 'node:fs'

const taprc = readFileSync(new URL('../.taprc', import.meta.url), 'utf8')
const line = /^# coverage-floor:(.*)$/m.exec(taprc)
if (line === null) {
  console.error('coverage-floor: .taprc has no "# coverage-floor: lines N branches N functions N statements N" line')
  process.exit(2)
}
const floor = Object.fromEntries([...line[1].matchAll(/(lines|branches|functions|statements)\s+(\d+(?:\.\d+)?)/g)].map(m => [m[1], Number(m[2])]))

let summary
try {
  summary = JSON.parse(readFileSync(new URL('../.tap/report/coverage-summary.json', import.meta.url), 'utf8'))
} catch (err) {
  console.error(`coverage-floor: no coverage report from the test run (${err.message})`)
  process.exit(2)
}

const failures = []
for (const [metric, min] of Object.entries(floor)) {
  const pct = summary.total[metric].pct
  const verdict = pct >= min ? 'ok' : 'BELOW THE FLOOR'
  console.log(`coverage ${metric}: ${pct}% (floor ${min}%) ${verdict}`)
  if (pct < min) failures.push(metric)
}
if (failures.length > 0) {
  console.error(`coverage-floor: ${failures.join(', ')} fell below the floor in .taprc`)
  process.exit(1)
}
