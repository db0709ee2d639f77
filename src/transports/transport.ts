import type { OutgoingHttpHeaders } from 'node:http'
import type { JsonRpcMessage, McpMessageExtra, McpTransport } from '../mcp.js'

/** Why a session ended; logged, and handed to the store once. */
export type CloseReason = 'client_disconnected' | 'server_closed' | 'buffer_overflow' | 'closed_by_store' | 'server_shutdown' | 'connect_failed' | 'idle_timeout' | 'deleted_by_client'

/** The wire protocols a session can be carried by: HTTP+SSE (2024-11-05) and Streamable HTTP (2025). */
export type TransportKind = 'sse' | 'streamable'

/**
 * Where the answers to one POST's requests go, when the transport answers on the POST's
 * own response (Streamable HTTP). Opaque to the store, which only passes it along.
 */
export interface ReplyChannel {
  /** Ids of the requests this POST carried, whose responses it waits for. */
  readonly requestIds: ReadonlyArray<string | number>
}

/** Who watches a session's traffic (metrics, traces); set by the store when telemetry is on. */
export interface TransportObserver {
  /** A message from the client; `deliver` hands it to the server (inside the message's trace context). */
  received: (message: JsonRpcMessage, extra: McpMessageExtra, deliver: () => void) => void
  /** A message the server sent to the client. */
  sent: (message: JsonRpcMessage) => void
  /** Bytes of events written to the client. */
  written: (bytes: number) => void
  /** The transport ended: requests still open end with it. */
  ended: () => void
}

/**
 * What the session store needs of a session's transport, whatever its wire protocol:
 * the SDK's `Transport` (the server side), plus a way in for the client's messages and a
 * single way out when it ends.
 */
export interface SessionTransport extends McpTransport {
  /** The wire protocol. */
  readonly kind: TransportKind
  readonly sessionId: string
  /** True until the session's transport has ended for any reason. */
  readonly isOpen: boolean
  /** Why it ended, once it has. */
  readonly closeReason: CloseReason | undefined
  /** Bytes written to the client and not yet taken by its socket. */
  readonly bufferedBytes: number
  /**
   * Hands a POST's messages to the connected server (via `onmessage`), in order. `reply`,
   * when the wire protocol answers on the POST itself, is where their responses go.
   */
  deliver (messages: JsonRpcMessage[], extra: McpMessageExtra, reply: ReplyChannel | undefined): void
  /** Ends the transport with a reason; `onended` runs once, whatever ended it. */
  terminate (reason: CloseReason): void
  /** Set by the store: called once when the transport ends. */
  onended: ((reason: CloseReason) => void) | undefined
  /** Set by the store when telemetry is on. */
  observer: TransportObserver | undefined
}

/**
 * What a Streamable HTTP answer is written to: the client's `ServerResponse` when the
 * request arrived here, or a relay to the instance it arrived at when the session is held
 * here and the request came through the cluster. `ServerResponse` fits it as it is.
 */
export interface ResponseSink {
  readonly headersSent: boolean
  readonly destroyed: boolean
  readonly writableEnded: boolean
  /** Bytes written and not yet taken by the client's socket. */
  readonly writableLength: number
  readonly writableNeedDrain: boolean
  /** The client's socket, when it is in this process. */
  readonly socket?: { setTimeout: (ms: number) => unknown, setNoDelay: (noDelay: boolean) => unknown } | null
  /**
   * True when the client was cut off for not reading (past `maxBufferedBytes`) where the
   * bytes are buffered: on the instance a relayed stream is written to.
   */
  readonly cutOff?: boolean
  /**
   * Where the client is on another instance: asks whether that instance still has it
   * (false, and 'close', when it does not). Local responses know without asking.
   */
  probe?: () => Promise<boolean>
  writeHead: (status: number, headers: OutgoingHttpHeaders) => unknown
  flushHeaders: () => void
  write: (chunk: string) => boolean
  end: (chunk?: string) => unknown
  destroy: () => unknown
  on: (event: 'close' | 'drain', listener: () => void) => unknown
  off: (event: 'close' | 'drain', listener: () => void) => unknown
}
