// The HTTP+SSE suite of test/cors.test.ts again, unchanged, with the example server built on
// SDK v2 (@modelcontextprotocol/server): the plugin serves both SDK lines alike.
import t from 'tap'

process.env.MCP_TEST_SDK = 'v2'
const { SDK_LINE } = await import('../support/helpers.js')
t.equal(SDK_LINE, 'v2', 'the suite below runs against SDK v2 servers')
await import('../cors.test.js')
