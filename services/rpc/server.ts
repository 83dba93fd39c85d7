/**
 * gRPC server side of the agent stream (the broker uses this; it never
 * imports the gRPC library itself).
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import type { AgentMessage, BrokerMessage } from "./messages.ts";
import { monitoringService, stripOneof } from "./proto.ts";
import { RpcError, RpcStatus } from "./status.ts";
import { pemBytes, type ServerTlsOptions } from "./tls.ts";

/** Default largest message accepted (bytes). */
export const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/** One agent's stream as seen by the broker. */
export interface ServerStream {
  /** Peer address, e.g. `ipv4:127.0.0.1:53422`. */
  readonly peer: string;
  /** Whether the peer presented a client certificate that verified (mTLS). */
  readonly authenticatedPeer: boolean;
  /** Sends a message; false once the stream has ended. */
  send(message: BrokerMessage): boolean;
  /** Listener for every message the agent sends, in order. */
  onMessage(listener: (message: AgentMessage) => void): void;
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
  /** Called for each new agent stream. */
  onStream(stream: ServerStream): void;
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

class GrpcServerStream implements ServerStream {
  #call: Duplex;
  #closeListeners: Array<(error?: Error) => void> = [];
  #closed = false;
  readonly peer: string;
  readonly authenticatedPeer: boolean;

  constructor(call: Duplex) {
    this.#call = call;
    this.peer = call.getPeer();
    let verified = false;
    try {
      verified = Boolean(call.getAuthContext()?.sslPeerCertificate);
    } catch {
      verified = false;
    }
    this.authenticatedPeer = verified;
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
    this.#call.on("data", (data: unknown) => listener(stripOneof<AgentMessage>(data)));
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

/** Starts the gRPC server and resolves once it listens. */
export function startRpcServer(options: RpcServerOptions): Promise<RpcServer> {
  const maxBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const server = new grpc.Server({
    "grpc.max_receive_message_length": maxBytes,
    "grpc.max_send_message_length": maxBytes,
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.http2.min_ping_interval_without_data_ms": 5_000,
  });
  const streams = new Set<GrpcServerStream>();
  server.addService(monitoringService().service, {
    Connect: (call: Duplex) => {
      const stream = new GrpcServerStream(call);
      streams.add(stream);
      stream.onClose(() => streams.delete(stream));
      options.onStream(stream);
    },
  });
  const credentials = options.tls
    ? grpc.ServerCredentials.createSsl(
      options.tls.ca ? Buffer.from(pemBytes(options.tls.ca)) : null,
      [{
        cert_chain: Buffer.from(pemBytes(options.tls.cert)),
        private_key: Buffer.from(pemBytes(options.tls.key)),
      }],
      options.tls.requireClientCert ?? false,
    )
    : grpc.ServerCredentials.createInsecure();
  return new Promise((resolve, reject) => {
    server.bindAsync(options.listen, credentials, (error, port) => {
      if (error) {
        reject(new Error(`cannot listen on ${options.listen}: ${error.message}`, { cause: error }));
        return;
      }
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
