// `npm run churn`: the long churn run and its report. The harness lives in
// test/support/churn.ts, where the bounded CI run (test/churn.test.ts) uses it too.
import { main } from '../test/support/churn.js'

await main()
