// `npm run soak`: the long soak run and its report. The harness lives in
// test/support/soak.ts, where the bounded CI run (test/soak.test.ts) uses it too.
import { main } from '../test/support/soak.js'

await main()
