/**
 * gRPC client side of the agent stream (the agent uses this; it never
 * imports the gRPC library itself).
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import "./grpc_log.ts";
import { isIP, type Socket } from "node:net";
import { connect as tlsConnect, type ConnectionOptions } from "node:tls";
import { hostOf } from "../common/net.ts";
import type { AgentMessage, BrokerMessage } from "./messages.ts";
import { CONNECT_PATH, decodeBrokerMessage, encodeAgentMessage } from "./codec.ts";
import { RpcError, RpcStatus } from "./status.ts";
import { type ClientTlsOptions, TOKEN_METADATA_KEY } from "./tls.ts";
import { DEFAULT_MAX_MESSAGE_BYTES } from "./limits.ts";
import { Buffer } from "node:buffer";

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
  /** Agent token, sent as `authorization: Bearer <token>` metadata when the stream opens. */
  token?: string;
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
  /** Ends the stream and closes the connection (see {@linkcode AgentStream.released}). */
  close(): void;
  /**
   * Resolves once the stream has ended and its connection is closed. A
   * connection still being set up when the stream ends is first let finish
   * (for up to 2 s, within the connect timeout): grpc-js 1.14 closes a channel
   * caught connecting only partly (its backoff and connection-delay timers run on).
   */
  released(): Promise<void>;
  /** True once ended. */
  readonly closed: boolean;
}

type Duplex = grpc.ClientDuplexStream<AgentMessage, BrokerMessage>;

type SecureConnector = ReturnType<grpc.ChannelCredentials["_createSecureConnector"]>;

/**
 * The TLS client's error with what to check. Deno reports an expired and an
 * untrusted broker certificate alike (`UNABLE_TO_VERIFY_LEAF_SIGNATURE`,
 * "unable to verify the first certificate"), so the hint names both.
 */
export function describeTlsError(error: Error): string {
  const code = (error as { code?: unknown }).code;
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") {
    return `${error.message} (connect by a name or address the certificate lists, or set the expected name with agent.tls.server_name / --tls-server-name)`;
  }
  if (
    typeof code === "string" &&
    /CERT|VERIFY|ISSUER|SELF_SIGNED|EXPIRED|UNTRUSTED/.test(code)
  ) {
    return `${error.message} [${code}]: the broker's certificate is not trusted: it has expired, or is not signed by the CA in agent.tls.ca (or, without it, the system roots)`;
  }
  return error.message;
}

/**
 * TLS to the broker with the handshake done here rather than by
 * `grpc.credentials.createSsl`, for two reasons found on Deno 2.9:
 * grpc-js always sets `servername` to the target host, and Deno's node:tls
 * refuses an IP address there (`ERR_INVALID_ARG_VALUE`; Node only warns),
 * so a broker addressed by IP could never be reached; and the handshake's
 * error (expired or untrusted certificate, refused client certificate) is
 * kept so that {@linkcode AgentStream.ready} can say why.
 *
 * A DNS name is sent as SNI and checked against the certificate; an IP
 * address is checked against the certificate's IP subject alternative names.
 * `serverName` overrides both.
 */
class AgentTlsCredentials extends grpc.ChannelCredentials {
  readonly #options: ConnectionOptions;
  readonly #onError: (error: Error) => void;

  constructor(address: string, tls: ClientTlsOptions, onError: (error: Error) => void) {
    super();
    const host = hostOf(address);
    const options: ConnectionOptions = { host, ALPNProtocols: ["h2"] };
    if (tls.serverName) options.servername = tls.serverName;
    else if (isIP(host) === 0) options.servername = host;
    if (tls.ca) options.ca = tls.ca;
    if (tls.cert) options.cert = tls.cert;
    if (tls.key) options.key = tls.key;
    this.#options = options;
    this.#onError = onError;
  }

  override _isSecure(): boolean {
    return true;
  }

  override _equals(other: grpc.ChannelCredentials): boolean {
    return other === this;
  }

  override _createSecureConnector(
    _target: Parameters<grpc.ChannelCredentials["_createSecureConnector"]>[0],
    _options: grpc.ChannelOptions,
    callCredentials?: grpc.CallCredentials,
  ): SecureConnector {
    const calls = callCredentials ?? grpc.credentials.createEmpty();
    return {
      connect: (socket: Socket) =>
        new Promise((resolve, reject) => {
          const secure = tlsConnect({ ...this.#options, socket }, () => {
            resolve({ socket: secure, secure: true });
          });
          secure.on("error", (error: Error) => {
            this.#onError(new Error(describeTlsError(error), { cause: error }));
            reject(error);
          });
        }),
      waitForReady: () => Promise.resolve(),
      getCallCredentials: () => calls,
      destroy: () => {},
    };
  }
}

/**
 * How long (ms) a stream that ended while its connection was still being set
 * up lets that finish before closing the channel anyway (a broker that drops
 * packets should not hold an agent's stop for the whole connect timeout).
 */
const RELEASE_WAIT_MS = 2000;

/** Opens one bidirectional stream to the broker (a new connection per call). */
export function openAgentStream(options: AgentStreamOptions): AgentStream {
  const maxBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  let tlsError: Error | undefined;
  const credentials = options.tls
    ? new AgentTlsCredentials(options.address, options.tls, (error) => tlsError = error)
    : grpc.credentials.createInsecure();
  const channelOptions: grpc.ChannelOptions = {
    "grpc.max_receive_message_length": maxBytes,
    "grpc.max_send_message_length": maxBytes,
    "grpc.keepalive_time_ms": options.keepaliveMs ?? 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.enable_retries": 0,
    // Its own connection, as documented above. Sharing grpc-js's global subchannel pool let a
    // reconnected agent receive a graceful broker restart's GOAWAY on a connection that
    // still tracked a cancelled stream, which aborts Deno 2.9.6's HTTP/2 client
    // (`find_stream_on_goaway_func: stream->closed_next == NULL`, denoland/deno#36788).
    "grpc.use_local_subchannel_pool": 1,
  };
  if (options.tls?.serverName) {
    channelOptions["grpc.default_authority"] = options.tls.serverName;
  }
  // The precompiled codec (codec.ts), not the .proto file parsed at start.
  const client = new grpc.Client(options.address, credentials, channelOptions);
  const metadata = new grpc.Metadata();
  if (options.token) metadata.set(TOKEN_METADATA_KEY, `Bearer ${options.token}`);
  const call: Duplex = client.makeBidiStreamRequest(
    CONNECT_PATH,
    (message: AgentMessage) => Buffer.from(encodeAgentMessage(message)),
    (bytes: Buffer) => decodeBrokerMessage(bytes),
    metadata,
  );
  const channel = client.getChannel();
  const connectDeadline = new Date(Date.now() + (options.connectTimeoutMs ?? 5000));
  const closeListeners: Array<(error?: RpcError) => void> = [];
  let closed = false;
  let closeError: RpcError | undefined;
  let markReleased: () => void = () => {};
  const released = new Promise<void>((resolve) => markReleased = resolve);

  /** Adds the TLS handshake's own error, which grpc-js reports only as "connection failed". */
  const withTls = (details: string) =>
    tlsError && !details.includes(tlsError.message)
      ? `${details} (TLS: ${tlsError.message})`
      : details;
  /**
   * Closes the channel once that is clean in grpc-js 1.14: after the resolver's
   * pending result (delivered on an immediate; a channel closed before it starts
   * connecting again, for good) and, when the connection is still being set up,
   * after that ends (READY or failed), for at most {@linkcode RELEASE_WAIT_MS}
   * and never past the connect deadline.
   */
  const release = () => {
    const closeSoon = () =>
      setImmediate(() => {
        client.close();
        markReleased();
      });
    try {
      const state = channel.getConnectivityState(false);
      const until = Math.min(connectDeadline.getTime(), Date.now() + RELEASE_WAIT_MS);
      if (state !== grpc.connectivityState.CONNECTING || Date.now() >= until) closeSoon();
      else channel.watchConnectivityState(state, until, closeSoon);
    } catch {
      closeSoon();
    }
  };
  const finish = (error?: RpcError) => {
    if (closed) return;
    closed = true;
    closeError = error;
    release();
    for (const listener of closeListeners.splice(0)) listener(error);
  };
  call.on("error", (error: grpc.ServiceError) => {
    finish(
      new RpcError(error.code ?? RpcStatus.UNKNOWN, withTls(error.details || error.message)),
    );
  });
  call.on("end", () => finish());
  call.on("status", (status: grpc.StatusObject) => {
    if (status.code !== grpc.status.OK) {
      finish(new RpcError(status.code, withTls(status.details)));
    }
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
      call.on("data", (data: BrokerMessage) => listener(data));
    },
    onClose(listener) {
      if (closed) listener(closeError);
      else closeListeners.push(listener);
    },
    ready() {
      // Watched here rather than through client.waitForReady: that one asks the channel for
      // its state with tryToConnect (`getConnectivityState(true)`) whenever the state
      // changes, including the change to SHUTDOWN made by close(), which starts the closed
      // channel resolving and connecting again (grpc-js 1.14), and its subchannel then
      // keeps backoff and pool timers running after the stream has ended.
      const deadline = connectDeadline;
      const unreachable = (why: string) =>
        new RpcError(
          RpcStatus.UNAVAILABLE,
          `broker at ${options.address} not reachable: ${
            tlsError ? `TLS handshake failed: ${tlsError.message}` : why
          }`,
        );
      return new Promise((resolve, reject) => {
        const check = (error?: Error) => {
          if (closed) return reject(unreachable("the stream was closed before it connected"));
          if (error) return reject(unreachable("Failed to connect before the deadline"));
          let state: grpc.connectivityState;
          try {
            state = channel.getConnectivityState(true);
            if (state === grpc.connectivityState.READY) return resolve();
            if (state === grpc.connectivityState.SHUTDOWN) throw new Error("closed");
            channel.watchConnectivityState(state, deadline, check);
          } catch {
            reject(unreachable("The channel has been closed"));
          }
        };
        check();
      });
    },
    close() {
      if (closed) return;
      try {
        call.cancel();
      } catch { /* already ended */ }
      finish();
    },
    released() {
      return released;
    },
  };
}
