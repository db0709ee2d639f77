// `npm run fuzz`: the long fuzz run and its report. The harness lives in
// test/support/fuzz.ts, where the bounded CI run (test/fuzz.test.ts) uses it too.
import { main } from '../test/support/fuzz.js'

await main()
