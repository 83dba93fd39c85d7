/**
 * gRPC client side of the agent stream (the agent uses this; it never
 * imports the gRPC library itself).
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { Buffer } from "node:buffer";
import type { AgentMessage, BrokerMessage } from "./messages.ts";
import { monitoringService, stripOneof } from "./proto.ts";
import { RpcError, RpcStatus } from "./status.ts";
import { type ClientTlsOptions, pemBytes } from "./tls.ts";
import { DEFAULT_MAX_MESSAGE_BYTES } from "./server.ts";

/** Options of {@linkcode openAgentStream}. */
export interface AgentStreamOptions {
  /** Broker `host:port`. */
  address: string;
  /** TLS; plain text when omitted. */
  tls?: ClientTlsOptions;
  /** Largest message sent or received, bytes (default 4 MiB). */
  maxMessageBytes?: number;
  /** How long to wait for the connection before failing with UNAVAILABLE (ms, default 5000). */
  connectTimeoutMs?: number;
  /** Keep-alive ping period (ms, default 10000): a dead link is noticed within this plus 5 s. */
  keepaliveMs?: number;
}

/** The agent's end of the stream. */
export interface AgentStream {
  /** Sends a message; false once the stream has ended. */
  send(message: AgentMessage): boolean;
  /** Listener for every message the broker sends, in order. */
  onMessage(listener: (message: BrokerMessage) => void): void;
  /** Listener called once when the stream ends; `error` is an RpcError unless the broker ended it cleanly. */
  onClose(listener: (error?: RpcError) => void): void;
  /** Resolves once the transport is connected, rejects with UNAVAILABLE after the connect timeout. */
  ready(): Promise<void>;
  /** Ends the stream and closes the connection. */
  close(): void;
  /** True once ended. */
  readonly closed: boolean;
}

type Duplex = grpc.ClientDuplexStream<unknown, unknown>;

/** Opens one bidirectional stream to the broker (a new connection per call). */
export function openAgentStream(options: AgentStreamOptions): AgentStream {
  const maxBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const credentials = options.tls
    ? grpc.credentials.createSsl(
      options.tls.ca ? Buffer.from(pemBytes(options.tls.ca)) : null,
      options.tls.key ? Buffer.from(pemBytes(options.tls.key)) : null,
      options.tls.cert ? Buffer.from(pemBytes(options.tls.cert)) : null,
    )
    : grpc.credentials.createInsecure();
  const channelOptions: grpc.ChannelOptions = {
    "grpc.max_receive_message_length": maxBytes,
    "grpc.max_send_message_length": maxBytes,
    "grpc.keepalive_time_ms": options.keepaliveMs ?? 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.enable_retries": 0,
  };
  if (options.tls?.serverName) {
    channelOptions["grpc.ssl_target_name_override"] = options.tls.serverName;
    channelOptions["grpc.default_authority"] = options.tls.serverName;
  }
  const Service = monitoringService();
  const client = new Service(options.address, credentials, channelOptions);
  const call = (client as unknown as { Connect(): Duplex }).Connect();
  const closeListeners: Array<(error?: RpcError) => void> = [];
  let closed = false;
  let closeError: RpcError | undefined;

  const finish = (error?: RpcError) => {
    if (closed) return;
    closed = true;
    closeError = error;
    client.close();
    for (const listener of closeListeners.splice(0)) listener(error);
  };
  call.on("error", (error: grpc.ServiceError) => {
    finish(new RpcError(error.code ?? RpcStatus.UNKNOWN, error.details || error.message));
  });
  call.on("end", () => finish());
  call.on("status", (status: grpc.StatusObject) => {
    if (status.code !== grpc.status.OK) finish(new RpcError(status.code, status.details));
  });

  return {
    get closed() {
      return closed;
    },
    send(message) {
      if (closed) return false;
      try {
        call.write(message);
        return true;
      } catch {
        return false;
      }
    },
    onMessage(listener) {
      call.on("data", (data: unknown) => listener(stripOneof<BrokerMessage>(data)));
    },
    onClose(listener) {
      if (closed) listener(closeError);
      else closeListeners.push(listener);
    },
    ready() {
      const deadline = new Date(Date.now() + (options.connectTimeoutMs ?? 5000));
      return new Promise((resolve, reject) => {
        client.waitForReady(deadline, (error) => {
          if (error) {
            reject(
              new RpcError(
                RpcStatus.UNAVAILABLE,
                `broker at ${options.address} not reachable: ${error.message}`,
              ),
            );
          } else resolve();
        });
      });
    },
    close() {
      if (closed) return;
      try {
        call.cancel();
      } catch { /* already ended */ }
      finish();
    },
  };
}
