/**
 * gRPC server side of the agent stream (the broker uses this; it never
 * imports the gRPC library itself).
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import "./grpc_log.ts";
import type { AgentMessage, BrokerMessage } from "./messages.ts";
import { getLogger } from "../common/log.ts";
import { Buffer } from "node:buffer";
import {
  CONNECT_PATH,
  decodeAgentMessage,
  decodeBrokerMessage,
  encodeAgentMessage,
  encodeBrokerMessage,
} from "./codec.ts";
import { DEFAULT_MAX_MESSAGE_BYTES } from "./limits.ts";

export { DEFAULT_MAX_MESSAGE_BYTES };
import { RpcError, RpcStatus } from "./status.ts";
import { type ServerTlsOptions, TOKEN_METADATA_ALT_KEY, TOKEN_METADATA_KEY } from "./tls.ts";
import { TlsServerCredentials, TlsWatch } from "./server_tls.ts";

/**
 * Default most concurrent streams per connection; an agent needs one on its
 * own connection. On Deno 2.9.6, cancelling a few hundred streams of one
 * connection at once aborts the server process in node:http2 (nghttp2
 * assertion in find_stream_on_goaway_func, or free(): invalid pointer).
 * Looped reproduction (300 streams on one connection, all cancelled, 5 to 10
 * cycles a run): uncapped 4 of 5 runs aborted, capped at 32 1 of 3, capped at
 * 16 none of 7 (53 cycles).
 */
export const DEFAULT_MAX_STREAMS_PER_CONNECTION = 16;

/**
 * The broker's keep-alive ping period per connection (ms). It only finds
 * agents whose host vanished without closing the connection (a killed agent
 * process closes it at once); agents find a dead broker with their own pings
 * (services/rpc/client.ts, every 10 s). Each ping costs the broker a socket
 * write and a read per agent: at 10 s they were about a tenth of its
 * per-sample writes with agents sending every second (bench scenario 8).
 */
export const SERVER_KEEPALIVE_MS = 30_000;
/** How long the broker waits for the answer to its ping before it drops the connection (ms). */
export const SERVER_KEEPALIVE_TIMEOUT_MS = 5_000;

/** One agent's stream as seen by the broker. */
export interface ServerStream {
  /** Peer address, e.g. `ipv4:127.0.0.1:53422`. */
  readonly peer: string;
  /** Whether the peer presented a client certificate that verified (mTLS). */
  readonly authenticatedPeer: boolean;
  /**
   * Subject common name of the verified client certificate (mTLS), if any.
   */
  readonly peerName: string | undefined;
  /**
   * The agent token sent when the stream opened (`authorization: Bearer
   * <token>` or `x-monitor-token: <token>` metadata); undefined when none.
   */
  readonly token: string | undefined;
  /** Sends a message; false once the stream has ended. */
  send(message: BrokerMessage): boolean;
  /** Listener for every message the agent sends, in order. */
  onMessage(listener: (message: AgentMessage) => void): void;
  /**
   * Listener for bytes that do not decode as an AgentMessage (`details` says
   * what was expected). Without one, such a stream is failed INVALID_ARGUMENT.
   */
  onInvalid(listener: (details: string) => void): void;
  /** Listener called once when the stream ends (error: why, from the agent's side or transport). */
  onClose(listener: (error?: Error) => void): void;
  /** Ends the stream normally. */
  end(): void;
  /** Ends the stream with an error status the agent sees, e.g. INVALID_ARGUMENT. */
  fail(code: number, details: string): void;
  /** True once ended. */
  readonly closed: boolean;
}

/** Options of {@linkcode startRpcServer}. */
export interface RpcServerOptions {
  /** `host:port` to listen on; port 0 picks a free port. */
  listen: string;
  /** TLS; plain text when omitted. */
  tls?: ServerTlsOptions;
  /** Largest message accepted, bytes (default 4 MiB); larger ones get RESOURCE_EXHAUSTED. */
  maxMessageBytes?: number;
  /**
   * Most streams one HTTP/2 connection may have open at once (default
   * {@linkcode DEFAULT_MAX_STREAMS_PER_CONNECTION}). An agent uses one stream on
   * its own connection; a client opening more waits for a free one.
   */
  maxStreamsPerConnection?: number;
  /** Called for each new agent stream. */
  onStream(stream: ServerStream): void;
  /**
   * Called when a TLS connection is refused: a failed handshake (a client
   * that does not trust the broker's certificate, or does not speak TLS), or,
   * with mTLS, a stream refused UNAUTHENTICATED because its connection has no
   * verified client certificate (none, untrusted, expired). Default: a
   * warning in the log.
   */
  onTlsError?(peer: string, reason: string): void;
}

/** A listening server. */
export interface RpcServer {
  /** The bound `host:port` (with the real port when 0 was asked). */
  readonly address: string;
  readonly port: number;
  /**
   * Stops accepting new streams and waits up to `graceMs` for open streams to
   * end (callers end them first), then forces the rest closed.
   */
  close(graceMs?: number): Promise<void>;
}

type Duplex = grpc.ServerDuplexStream<unknown, unknown>;

/** Marks a received message whose bytes are not a valid AgentMessage (see {@linkcode agentService}). */
const UNDECODABLE = Symbol("undecodable agent message");

interface Undecodable {
  [UNDECODABLE]: string;
}

function isUndecodable(data: unknown): data is Undecodable {
  return typeof data === "object" && data !== null && UNDECODABLE in data;
}

/**
 * The Monitoring service on the precompiled codec (codec.ts; no .proto file
 * parsed, no protobufjs per message). Its request decoder does not throw:
 * grpc-js would end such a stream INTERNAL "Error deserializing request"; the
 * stream gets INVALID_ARGUMENT saying what was expected instead (see
 * GrpcServerStream).
 */
function agentService(): grpc.ServiceDefinition {
  const connect: grpc.MethodDefinition<AgentMessage | Undecodable, BrokerMessage> = {
    path: CONNECT_PATH,
    requestStream: true,
    responseStream: true,
    requestSerialize: (message) => Buffer.from(encodeAgentMessage(message as AgentMessage)),
    requestDeserialize: (bytes: Buffer) => {
      try {
        return decodeAgentMessage(bytes);
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        return {
          [UNDECODABLE]:
            `expected a monitoring.v1.AgentMessage (protobuf), found ${bytes.length} bytes that do not decode: ${reason}`,
        } satisfies Undecodable;
      }
    },
    responseSerialize: (message) => {
      const bytes = encodeBrokerMessage(message);
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    },
    responseDeserialize: (bytes: Buffer) => decodeBrokerMessage(bytes),
  };
  return { Connect: connect } as grpc.ServiceDefinition;
}

class GrpcServerStream implements ServerStream {
  #call: Duplex;
  #closeListeners: Array<(error?: Error) => void> = [];
  #closed = false;
  #invalidListener: ((details: string) => void) | undefined;
  readonly peer: string;
  readonly authenticatedPeer: boolean;
  readonly peerName: string | undefined;
  readonly token: string | undefined;

  constructor(call: Duplex) {
    this.#call = call;
    this.peer = call.getPeer();
    let certificate: { subject?: { CN?: string | string[] } } | undefined;
    try {
      certificate = call.getAuthContext()?.sslPeerCertificate;
    } catch {
      certificate = undefined;
    }
    this.authenticatedPeer = Boolean(certificate);
    const cn = certificate?.subject?.CN;
    this.peerName = Array.isArray(cn) ? cn[0] : cn;
    this.token = tokenOf(call.metadata);
    call.on("data", (data: unknown) => {
      if (!isUndecodable(data)) return;
      if (this.#invalidListener) this.#invalidListener(data[UNDECODABLE]);
      else this.fail(RpcStatus.INVALID_ARGUMENT, data[UNDECODABLE]);
    });
    call.on("error", (error: Error) => this.#finish(error));
    call.on("end", () => {
      if (!this.#closed) {
        try {
          call.end();
        } catch { /* already ended */ }
      }
      this.#finish();
    });
    call.on("cancelled", () => this.#finish(new RpcError(RpcStatus.CANCELLED, "stream cancelled")));
    call.on("close", () => this.#finish());
  }

  get closed(): boolean {
    return this.#closed;
  }

  send(message: BrokerMessage): boolean {
    if (this.#closed) return false;
    try {
      this.#call.write(message);
      return true;
    } catch {
      return false;
    }
  }

  onMessage(listener: (message: AgentMessage) => void): void {
    this.#call.on("data", (data: unknown) => {
      // Decoded by codec.ts in the shapes of messages.ts (no oneof bookkeeping to strip).
      if (!isUndecodable(data)) listener(data as AgentMessage);
    });
  }

  onInvalid(listener: (details: string) => void): void {
    this.#invalidListener = listener;
  }

  onClose(listener: (error?: Error) => void): void {
    if (this.#closed) listener();
    else this.#closeListeners.push(listener);
  }

  end(): void {
    if (this.#closed) return;
    try {
      this.#call.end();
    } catch { /* already ended */ }
    this.#finish();
  }

  fail(code: number, details: string): void {
    if (this.#closed) return;
    try {
      // grpc-js turns an "error" emitted on a server call into the stream's final status.
      this.#call.emit("error", Object.assign(new Error(details), { code, details }));
    } catch { /* already ended */ }
    this.#finish(new RpcError(code, details));
  }

  #finish(error?: Error) {
    if (this.#closed) return;
    this.#closed = true;
    for (const listener of this.#closeListeners.splice(0)) listener(error);
  }
}

/** The token of the stream's metadata (see {@linkcode ServerStream.token}). */
function tokenOf(metadata: grpc.Metadata): string | undefined {
  const first = (key: string) => {
    const value = metadata.get(key)[0];
    return typeof value === "string" ? value.trim() : undefined;
  };
  const auth = first(TOKEN_METADATA_KEY);
  if (auth !== undefined) {
    const match = /^Bearer\s+(\S.*)$/i.exec(auth);
    // Anything other than a bearer token is a wrong token, not a missing one.
    return match ? match[1].trim() : auth;
  }
  return first(TOKEN_METADATA_ALT_KEY) || undefined;
}

/** Why binding failed, in words (grpc-js says `No address added out of total 1 resolved errors: [...]`). */
function bindProblem(error: Error): string {
  if (/EADDRINUSE/.test(error.message)) {
    return 'the address is already in use (another broker, or a second "deno task up" with the same broker.listen?)';
  }
  if (/EACCES|EPERM/.test(error.message)) {
    return "not permitted to listen there (a port below 1024?)";
  }
  if (/EADDRNOTAVAIL/.test(error.message)) return "no such address on this host";
  const inner = /errors: \[(.*)\]\s*$/.exec(error.message)?.[1];
  return inner || error.message;
}

/** Starts the gRPC server and resolves once it listens. */
export async function startRpcServer(options: RpcServerOptions): Promise<RpcServer> {
  const service = agentService();
  const maxBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const server = new grpc.Server({
    "grpc.max_receive_message_length": maxBytes,
    "grpc.max_send_message_length": maxBytes,
    "grpc.max_concurrent_streams": options.maxStreamsPerConnection ??
      DEFAULT_MAX_STREAMS_PER_CONNECTION,
    "grpc.keepalive_time_ms": SERVER_KEEPALIVE_MS,
    "grpc.keepalive_timeout_ms": SERVER_KEEPALIVE_TIMEOUT_MS,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.http2.min_ping_interval_without_data_ms": 5_000,
  });
  const streams = new Set<GrpcServerStream>();
  const mutual = options.tls?.requireClientCert === true;
  const tlsWatch = new TlsWatch(
    options.onTlsError ??
      ((peer, reason) => getLogger("rpc").warn(`refused a TLS connection from ${peer}: ${reason}`)),
  );
  server.addService(service, {
    Connect: (call: Duplex) => {
      const stream = new GrpcServerStream(call);
      if (mutual && !stream.authenticatedPeer) {
        // mTLS: the handshake only asked for a certificate (see server_tls.ts); refuse here.
        const reason = tlsWatch.refusal(stream.peer);
        tlsWatch.report(stream.peer, reason);
        stream.fail(RpcStatus.UNAUTHENTICATED, `client certificate refused: ${reason}`);
        return;
      }
      streams.add(stream);
      stream.onClose(() => streams.delete(stream));
      options.onStream(stream);
    },
  });
  const credentials = options.tls
    ? new TlsServerCredentials(options.tls)
    : grpc.ServerCredentials.createInsecure();
  return await new Promise((resolve, reject) => {
    server.bindAsync(options.listen, credentials, (error, port) => {
      if (error) {
        reject(
          new Error(`cannot listen on ${options.listen}: ${bindProblem(error)}`, { cause: error }),
        );
        return;
      }
      if (options.tls) tlsWatch.watch(server);
      const host = options.listen.slice(0, options.listen.lastIndexOf(":"));
      resolve({
        address: `${host}:${port}`,
        port,
        close: (graceMs = 5000) =>
          new Promise<void>((done) => {
            const timer = setTimeout(() => {
              for (const s of streams) s.fail(RpcStatus.UNAVAILABLE, "broker shutting down");
              server.forceShutdown();
              done();
            }, graceMs);
            server.tryShutdown(() => {
              clearTimeout(timer);
              done();
            });
          }),
      });
    });
  });
}
