// Every load scenario of the benchmarks, by the transport it runs on.
//   sse         HTTP+SSE (2024-11-05): POST to the session's message URL, the answer on its stream
//   streamable  Streamable HTTP (2025-03-26 .. 2025-11-25): POST /mcp with Mcp-Session-Id
//               (or without, for stateless servers), the answer on the POST's own response
//   modern      Streamable HTTP of the 2026-07-28 revision: no initialize and no session, the
//               protocol version, client info and capabilities in every request's `_meta`

export const SSE_SCENARIOS = ['echo', 'ping'] as const
export const STREAMABLE_SCENARIOS = ['streamable-echo', 'streamable-progress', 'streamable-list'] as const
export const MODERN_SCENARIOS = ['modern-echo', 'modern-progress', 'modern-list'] as const

export type SseScenario = typeof SSE_SCENARIOS[number]
export type StreamableScenario = typeof STREAMABLE_SCENARIOS[number]
export type ModernScenario = typeof MODERN_SCENARIOS[number]
export type HttpScenario = StreamableScenario | ModernScenario
export type Scenario = SseScenario | HttpScenario
export type Family = 'sse' | 'streamable' | 'modern'

export const SCENARIOS: readonly Scenario[] = [...SSE_SCENARIOS, ...STREAMABLE_SCENARIOS, ...MODERN_SCENARIOS]

export function familyOf (scenario: Scenario): Family {
  if ((SSE_SCENARIOS as readonly string[]).includes(scenario)) return 'sse'
  if ((STREAMABLE_SCENARIOS as readonly string[]).includes(scenario)) return 'streamable'
  return 'modern'
}

export const SCENARIO_TITLES: Record<Scenario, string> = {
  echo: 'HTTP+SSE: `tools/call` echo',
  ping: 'HTTP+SSE: `ping`',
  'streamable-echo': 'Streamable HTTP: `tools/call` echo',
  'streamable-progress': 'Streamable HTTP: `tools/call` with progress',
  'streamable-list': 'Streamable HTTP: `tools/list`',
  'modern-echo': '2026-07-28: `tools/call` echo',
  'modern-progress': '2026-07-28: `tools/call` with progress',
  'modern-list': '2026-07-28: `tools/list`'
}
