// The Streamable HTTP suite of test/streamable.test.ts again, unchanged, with the example
// server built on SDK v2 (@modelcontextprotocol/server).
import t from 'tap'

process.env.MCP_TEST_SDK = 'v2'
const { SDK_LINE } = await import('../support/helpers.js')
t.equal(SDK_LINE, 'v2', 'the suite below runs against SDK v2 servers')
await import('../streamable.test.js')
