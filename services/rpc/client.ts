/**
 * The agent's end of the stream: a small gRPC client written directly on
 * `node:http2` (the agent loads no gRPC library; the broker's server is this
 * folder's own HTTP/2 server, server.ts and h2.ts). One bidirectional `Connect` stream per connection:
 * POST {@linkcode CONNECT_PATH} with `content-type: application/grpc`,
 * `te: trailers`; each message is framed by framing.ts and encoded by the
 * precompiled codec (codec.ts); the status comes from the trailers, or from
 * the headers of a trailers-only response, or from the HTTP status.
 *
 * ## Invariant: this client never sends an HTTP/2 GOAWAY
 *
 * Deno 2.9's `node:http2` (nghttp2) can abort the whole process when a
 * session RECEIVES a GOAWAY (`find_stream_on_goaway_func: Assertion
 * 'stream->closed_next == NULL' failed`, denoland/deno#36788); no JavaScript
 * can catch it. grpc-js's client sends RST_STREAM then GOAWAY when it closes
 * its channel, so every agent that stopped could kill a broker on node:http2
 * (the broker no longer is, but an agent must not depend on that). Here, by
 * design:
 * - the TCP (or TLS) socket is opened by this module and handed to
 *   `node:http2` through `createConnection`; the reference is kept;
 * - `session.close()` and `session.destroy()` are never called (both send
 *   GOAWAY while the socket is open);
 * - {@linkcode AgentStream.close} ends the request stream (END_STREAM),
 *   lets `node:http2` hand that frame to the socket, then ends (FIN) and
 *   destroys THE SOCKET: after FIN nothing more can reach the broker, and a
 *   session whose socket is gone closes without writing anything;
 * - when the broker ends the stream (trailers, trailers-only response,
 *   RST_STREAM) or the link fails, the socket is destroyed at once, which
 *   also means a GOAWAY the broker sends later (a graceful restart) never
 *   reaches this side's nghttp2 with a closed stream in it.
 *
 * Checked by client_test.ts, which reads the bytes the broker receives
 * through a TCP proxy and parses the HTTP/2 frame headers: no frame of type
 * 0x7 (GOAWAY) after close(), after the broker ends the stream, after a
 * refused message (and a grpc-js client closing its channel does send one
 * there). What Deno 2.9.6's node:http2 client writes, read the same way
 * after a stream was opened: `session.close()` GOAWAY; `session.destroy()`
 * GOAWAY then RST_STREAM; `stream.close(NGHTTP2_CANCEL)` an empty DATA with
 * END_STREAM then RST_STREAM; destroying the socket nothing more.
 *
 * @module
 */
import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  connect as http2Connect,
} from "node:http2";
import { connect as netConnect, isIP, type Socket } from "node:net";
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from "node:tls";
import { splitHostPort } from "../common/net.ts";
import type { AgentMessage, BrokerMessage } from "./messages.ts";
import { CONNECT_PATH, decodeBrokerMessage, encodeAgentMessage } from "./codec.ts";
import { RpcError, RpcStatus } from "./status.ts";
import { type ClientTlsOptions, TOKEN_METADATA_KEY } from "./tls.ts";
import { DEFAULT_MAX_MESSAGE_BYTES } from "./limits.ts";
import {
  frameMessage,
  FrameReader,
  type HeaderMap,
  statusOf,
  statusOfHttp,
  statusOfReset,
} from "./framing.ts";

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
  /** Sends a message; false once the stream has ended (or when the message is refused). */
  send(message: AgentMessage): boolean;
  /** Listener for every message the broker sends, in order. */
  onMessage(listener: (message: BrokerMessage) => void): void;
  /** Listener called once when the stream ends; `error` is an RpcError unless the broker ended it cleanly. */
  onClose(listener: (error?: RpcError) => void): void;
  /**
   * Resolves once the broker's HTTP/2 settings arrived, rejects with
   * UNAVAILABLE when the connection fails or after the connect timeout.
   */
  ready(): Promise<void>;
  /** Ends the stream and closes the connection (see {@linkcode AgentStream.released}). */
  close(): void;
  /** Resolves once the stream has ended and its connection is closed. */
  released(): Promise<void>;
  /** True once ended. */
  readonly closed: boolean;
}

/** How long a keep-alive ping may wait for its answer (ms). */
export const KEEPALIVE_TIMEOUT_MS = 5000;

/** How long close() lets the END_STREAM and FIN go out before destroying the socket anyway (ms). */
const CLOSE_FLUSH_MS = 1000;

/** `user-agent` of the agent's requests. */
const USER_AGENT = "monitor-agent-rpc/1 (node:http2)";

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
 * TLS options of the connection. A DNS name is sent as SNI and checked
 * against the certificate; an IP address is checked against the
 * certificate's IP subject alternative names (Deno's node:tls refuses an IP
 * address as `servername`). `serverName` overrides both.
 */
function tlsOptions(host: string, port: number, tls: ClientTlsOptions): ConnectionOptions {
  const options: ConnectionOptions = { host, port, ALPNProtocols: ["h2"] };
  if (tls.serverName) options.servername = tls.serverName;
  else if (isIP(host) === 0) options.servername = host;
  if (tls.ca) options.ca = tls.ca;
  if (tls.cert) options.cert = tls.cert;
  if (tls.key) options.key = tls.key;
  return options;
}

/**
 * Opens one bidirectional stream to the broker on a connection of its own.
 * Throws a TypeError when `address` is not `host:port`.
 *
 * @example
 * ```ts ignore
 * const stream = openAgentStream({ address: "127.0.0.1:50052", token: "secret" });
 * stream.onMessage((message) => console.log(message));
 * stream.onClose((error) => console.log("ended", error?.message ?? "cleanly"));
 * await stream.ready();
 * stream.send({ hello: { agent_id: "a1", hostname: "h", version: "1", token: "secret" } });
 * stream.close();
 * await stream.released();
 * ```
 */
export function openAgentStream(options: AgentStreamOptions): AgentStream {
  const { host, port } = splitHostPort(options.address, "broker address");
  const maxBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const keepaliveMs = options.keepaliveMs ?? 10_000;
  const reader = new FrameReader(maxBytes);
  const messageListeners: Array<(message: BrokerMessage) => void> = [];
  const closeListeners: Array<(error?: RpcError) => void> = [];
  const readyWaiters: Array<{ resolve: () => void; reject: (error: RpcError) => void }> = [];
  let connected = false;
  let connectError: RpcError | undefined;
  let closed = false;
  let closeError: RpcError | undefined;
  let tlsError: Error | undefined;
  let session: ClientHttp2Session | undefined;
  let request: ClientHttp2Stream | undefined;
  /** Messages sent before the connection was up, written once the request is open. */
  let pending: Uint8Array[] = [];
  let tornDown = false;
  let socketClosed = false;
  let sessionClosed = true;
  let markReleased: () => void = () => {};
  const released = new Promise<void>((resolve) => markReleased = resolve);
  let keepaliveTimer: ReturnType<typeof setTimeout> | undefined;
  let pingTimer: ReturnType<typeof setTimeout> | undefined;
  let flushTimer: ReturnType<typeof setTimeout> | undefined;

  const unreachable = (why: string) =>
    new RpcError(
      RpcStatus.UNAVAILABLE,
      `broker at ${options.address} not reachable: ${
        tlsError ? `TLS handshake failed: ${tlsError.message}` : why
      }`,
    );
  const settleReady = () => {
    for (const waiter of readyWaiters.splice(0)) {
      if (connected) waiter.resolve();
      else waiter.reject(connectError!);
    }
  };
  const maybeReleased = () => {
    if (socketClosed && tcpClosed && sessionClosed) {
      clearTimeout(flushTimer);
      markReleased();
    }
  };
  const stopTimers = () => {
    clearTimeout(connectTimer);
    clearTimeout(keepaliveTimer);
    clearTimeout(pingTimer);
  };

  /**
   * Closes the connection without GOAWAY (module doc): with `endStream`, the
   * request stream is ended first and the socket ended (FIN) once that frame
   * is out; otherwise the socket is destroyed at once.
   */
  const teardown = (endStream: boolean) => {
    stopTimers();
    if (tornDown) return;
    tornDown = true;
    if (!endStream || !request || request.writableEnded || request.destroyed) {
      socket.destroy();
      return;
    }
    flushTimer = setTimeout(() => socket.destroy(), CLOSE_FLUSH_MS);
    // END_STREAM is handed to nghttp2 on 'finish' and written to the socket
    // on a later turn; the FIN goes after it (socket.end flushes first).
    request.end(() => setImmediate(() => socket.end(() => socket.destroy())));
  };

  /** Ends the stream once: `error` undefined is a clean end (status OK or close()). */
  const finish = (error: RpcError | undefined, endStream: boolean) => {
    if (closed) {
      teardown(endStream);
      return;
    }
    closed = true;
    closeError = error;
    if (!connected && !connectError) {
      connectError = error && error.code === RpcStatus.UNAVAILABLE
        ? error
        : unreachable("the stream was closed before it connected");
    }
    teardown(endStream);
    settleReady();
    for (const listener of closeListeners.splice(0)) listener(error);
  };
  /** Adds the TLS handshake's own error when the failure came from it. */
  const lost = (why: string) =>
    connected ? new RpcError(RpcStatus.UNAVAILABLE, why) : unreachable(why);

  // The socket: opened here, kept here, destroyed here (module doc).
  // With TLS the TCP socket is opened here too and handed to node:tls: a TLS socket
  // that opened its own TCP connection left it open when destroyed after a failed
  // handshake (Deno 2.9.6; the broker never saw the agent go).
  const tcp: Socket = netConnect({ host, port });
  const socket: Socket | TLSSocket = options.tls
    ? tlsConnect({ ...tlsOptions(host, port, options.tls), socket: tcp })
    : tcp;
  let tcpClosed = false;
  tcp.on("close", () => {
    tcpClosed = true;
    maybeReleased();
  });
  if (socket !== tcp) {
    tcp.on("error", (error: Error) => finish(lost(error.message), false));
    socket.on("close", () => tcp.destroy());
  }
  const connectTimer = setTimeout(
    () => finish(unreachable("Failed to connect before the deadline"), false),
    options.connectTimeoutMs ?? 5000,
  );
  socket.on("error", (error: Error) => {
    if (options.tls && !connected && !tlsError && !(error as { syscall?: string }).syscall) {
      tlsError = new Error(describeTlsError(error), { cause: error });
    }
    finish(lost(error.message), false);
  });
  let peerEnded = false;
  socket.on("end", () => peerEnded = true);
  socket.on("close", () => {
    socketClosed = true;
    if (!closed) finish(lost("the connection to the broker was closed"), false);
    stopTimers();
    maybeReleased();
  });
  socket.once(options.tls ? "secureConnect" : "connect", () => {
    if (tornDown) return;
    startSession();
  });

  const authority = options.tls?.serverName ?? options.address;

  function startSession() {
    sessionClosed = false;
    const url = `${options.tls ? "https" : "http"}://${
      isIP(host) === 6 ? `[${host}]` : host
    }:${port}`;
    const h2 = http2Connect(url, {
      createConnection: () => socket,
      settings: { enablePush: false },
    });
    session = h2;
    h2.on("error", (error: Error) => finish(lost(`HTTP/2: ${error.message}`), false));
    h2.on("close", () => {
      sessionClosed = true;
      maybeReleased();
    });
    // A broker restarting gracefully sends GOAWAY and then ends this stream with
    // its status; nothing to do until then.
    h2.on("goaway", () => {});
    h2.once("remoteSettings", () => {
      if (closed) return;
      connected = true;
      clearTimeout(connectTimer);
      settleReady();
      scheduleKeepalive();
    });
    const headers: Record<string, string> = {
      ":method": "POST",
      ":scheme": options.tls ? "https" : "http",
      ":authority": authority,
      ":path": CONNECT_PATH,
      "content-type": "application/grpc",
      "te": "trailers",
      "grpc-accept-encoding": "identity",
      "user-agent": USER_AGENT,
    };
    if (options.token) headers[TOKEN_METADATA_KEY] = `Bearer ${options.token}`;
    const req = h2.request(headers, { endStream: false });
    request = req;
    for (const frame of pending) req.write(frame);
    pending = [];
    let gotStatus = false;
    req.on("response", (responseHeaders: HeaderMap) => {
      const httpStatus = Number(responseHeaders[":status"]);
      if (httpStatus !== 200) {
        gotStatus = true;
        return finish(statusOfHttp(httpStatus), false);
      }
      // Trailers-only: the status is in the headers (an error before any message).
      const status = statusOf(responseHeaders);
      if (status !== undefined) {
        gotStatus = true;
        finish(status ?? undefined, false);
      }
    });
    req.on("data", (chunk: Uint8Array) => {
      if (closed) return;
      const { messages, error } = reader.push(chunk);
      for (const bytes of messages) {
        let message: BrokerMessage;
        try {
          message = decodeBrokerMessage(bytes);
        } catch (decodeError) {
          return finish(
            new RpcError(
              RpcStatus.INTERNAL,
              `the broker sent a message that is not a monitoring.v1.BrokerMessage: ${
                (decodeError as Error).message
              }`,
            ),
            false,
          );
        }
        for (const listener of messageListeners) listener(message);
        if (closed) return;
      }
      if (error) finish(error, false);
    });
    req.on("trailers", (trailers: HeaderMap) => {
      gotStatus = true;
      const status = statusOf(trailers);
      if (status === undefined) {
        finish(
          new RpcError(RpcStatus.UNKNOWN, "the broker ended the stream without a status"),
          false,
        );
      } else finish(status ?? undefined, false);
    });
    req.on("error", (error: Error) => {
      if (!gotStatus) finish(lost(`stream error: ${error.message}`), false);
    });
    req.on("close", () => {
      if (closed || gotStatus) return;
      const code = req.rstCode;
      // Closed together with the connection, or by the broker alone: told apart once the
      // socket's own events of the same read have run.
      setTimeout(() => {
        if (closed) return;
        if (peerEnded || socket.destroyed) {
          finish(lost("the connection to the broker was closed"), false);
        } else if (code === undefined || code === 0) {
          finish(
            new RpcError(RpcStatus.UNKNOWN, "the broker ended the stream without a grpc-status"),
            false,
          );
        } else finish(statusOfReset(code), false);
      }, 0);
    });
  }

  /** One ping per period; no answer within KEEPALIVE_TIMEOUT_MS ends the stream UNAVAILABLE. */
  function scheduleKeepalive() {
    keepaliveTimer = setTimeout(() => {
      if (closed || !session) return;
      pingTimer = setTimeout(() => {
        finish(
          new RpcError(
            RpcStatus.UNAVAILABLE,
            `keepalive: the broker at ${options.address} did not answer a ping within ${KEEPALIVE_TIMEOUT_MS} ms`,
          ),
          false,
        );
      }, KEEPALIVE_TIMEOUT_MS);
      try {
        session.ping((error: Error | null) => {
          clearTimeout(pingTimer);
          if (closed) return;
          if (error) finish(lost(`keepalive ping failed: ${error.message}`), false);
          else scheduleKeepalive();
        });
      } catch (error) {
        clearTimeout(pingTimer);
        finish(lost(`keepalive ping failed: ${(error as Error).message}`), false);
      }
    }, keepaliveMs);
  }

  return {
    get closed() {
      return closed;
    },
    send(message) {
      if (closed) return false;
      const bytes = encodeAgentMessage(message);
      if (bytes.length > maxBytes) {
        finish(
          new RpcError(
            RpcStatus.RESOURCE_EXHAUSTED,
            `Sent message larger than max (${bytes.length} vs. ${maxBytes})`,
          ),
          true,
        );
        return false;
      }
      if (!request) {
        pending.push(frameMessage(bytes));
        return true;
      }
      try {
        request.write(frameMessage(bytes));
        return true;
      } catch {
        return false;
      }
    },
    onMessage(listener) {
      messageListeners.push(listener);
    },
    onClose(listener) {
      if (closed) listener(closeError);
      else closeListeners.push(listener);
    },
    ready() {
      if (connected) return Promise.resolve();
      if (connectError) return Promise.reject(connectError);
      return new Promise((resolve, reject) => readyWaiters.push({ resolve, reject }));
    },
    close() {
      finish(undefined, true);
    },
    released() {
      return released;
    },
  };
}
