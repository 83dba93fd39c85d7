/**
 * The agent's end of the stream: a small gRPC client on this folder's own
 * HTTP/2 layer (h2_client.ts, on h2.ts's frame code and hpack.ts) over
 * `Deno.connect` / `Deno.connectTls` (ALPN `h2`): the agent loads no gRPC
 * library and not `node:http2`. One bidirectional `Connect` stream per
 * connection: POST {@linkcode CONNECT_PATH} with `content-type:
 * application/grpc`, `te: trailers`; each message is framed by framing.ts
 * and encoded by the precompiled codec (codec.ts); the status comes from the
 * trailers, or from the headers of a trailers-only response, or from the
 * HTTP status (all decoded with HPACK, Huffman and dynamic table included).
 *
 * Why not `node:http2`: one batch sent and its ack received cost the agent
 * 0.6 ms of CPU through it, 0.17 ms on `Deno.connect` (README, Performance),
 * and its import costs memory.
 *
 * ## Invariant: this client never sends an HTTP/2 GOAWAY
 *
 * Deno 2.9's `node:http2` (nghttp2) can abort the whole process when a
 * session RECEIVES a GOAWAY (`find_stream_on_goaway_func: Assertion
 * 'stream->closed_next == NULL' failed`, denoland/deno#36788); no JavaScript
 * can catch it, and a broker may run on it (older versions did). Here:
 * - h2_client.ts has no way to write a GOAWAY;
 * - {@linkcode AgentStream.close} ends the request stream (an empty DATA
 *   frame with END_STREAM), and once that is written closes the socket's
 *   write side (FIN) and then the socket;
 * - when the broker ends the stream (trailers, trailers-only response,
 *   RST_STREAM), breaks the protocol, or the link fails, the socket is
 *   closed at once.
 *
 * Checked by client_test.ts, which reads the bytes the broker receives
 * through a TCP proxy and parses the HTTP/2 frame headers: no frame of type
 * 0x7 (GOAWAY) after close(), after the broker ends the stream, after a
 * refused message (and a grpc-js client closing its channel does send one
 * there).
 *
 * @module
 */
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
import { H2ClientConnection } from "./h2_client.ts";
import type { HeaderField } from "./hpack.ts";

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
const USER_AGENT = "monitor-agent-rpc/2 (deno)";

/** Size of the buffer each socket read fills (bytes). */
const READ_BYTES = 64 * 1024;

/**
 * Deno's `connectTls` takes the name to check (and send as SNI) apart from
 * the address it connects to through this symbol (Deno 2.x, marked
 * unstable); `agent.tls.server_name` uses it.
 */
const SERVER_NAME = Symbol.for("unstableServerName");

/**
 * The TLS client's error with what to check (rustls's words, as Deno
 * reports them: `invalid peer certificate: UnknownIssuer`, `... Expired`,
 * `... certificate not valid for name ...`). `expectedName` is the name the
 * certificate was checked against.
 */
export function describeTlsError(error: Error, expectedName?: string): string {
  const message = error.message;
  if (/NotValidForName|not valid for name/i.test(message)) {
    return `${message} (the certificate does not name ${
      expectedName ?? "the address"
    }: connect by a name or address the certificate lists, or set the expected name with agent.tls.server_name / --tls-server-name)`;
  }
  if (
    /invalid peer certificate|UnknownIssuer|Expired|BadSignature|CERT|VERIFY|ISSUER/i.test(message)
  ) {
    return `${message}: the broker's certificate is not trusted: it has expired, or is not signed by the CA in agent.tls.ca (or, without it, the system roots)`;
  }
  return message;
}

/** Opens the TCP or TLS connection (ALPN h2; the client certificate for mTLS). */
function dial(host: string, port: number, tls: ClientTlsOptions | undefined): Promise<Deno.Conn> {
  if (!tls) return Deno.connect({ hostname: host, port });
  const options: Deno.ConnectTlsOptions & { cert?: string; key?: string; [SERVER_NAME]?: string } =
    { hostname: host, port, alpnProtocols: ["h2"] };
  if (tls.ca) options.caCerts = [tls.ca];
  if (tls.cert && tls.key) {
    options.cert = tls.cert;
    options.key = tls.key;
  }
  if (tls.serverName) options[SERVER_NAME] = tls.serverName;
  return Deno.connectTls(options);
}

/** Header fields as a map (a repeated name keeps its first value; names are lower case). */
function headerMap(fields: HeaderField[]): HeaderMap {
  const map: HeaderMap = {};
  for (const [name, value] of fields) if (!(name in map)) map[name] = value;
  return map;
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
  let conn: Deno.Conn | undefined;
  let connClosed = false;
  let tornDown = false;
  /** The preface and the request's HEADERS were queued (the socket is up). */
  let started = false;
  /** Messages sent before that, queued behind them once it is. */
  let pending: Uint8Array[] = [];
  let markReleased: () => void = () => {};
  const released = new Promise<void>((resolve) => markReleased = resolve);
  let keepaliveTimer: ReturnType<typeof setTimeout> | undefined;
  let pingTimer: ReturnType<typeof setTimeout> | undefined;
  let flushTimer: ReturnType<typeof setTimeout> | undefined;
  /** Socket writes, one after the other. */
  let writing: Promise<void> = Promise.resolve();
  let reading: Promise<void> = Promise.resolve();

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
  const stopTimers = () => {
    clearTimeout(connectTimer);
    clearTimeout(keepaliveTimer);
    clearTimeout(pingTimer);
  };
  /** Closes the socket once; released() resolves when its reads and writes are over. */
  const closeConn = () => {
    clearTimeout(flushTimer);
    if (connClosed) return;
    connClosed = true;
    if (!conn) return; // dialing: closed when the dial settles
    try {
      conn.close();
    } catch { /* already closed */ }
    Promise.allSettled([reading, writing]).then(() => markReleased());
  };

  /**
   * Closes the connection without GOAWAY (module doc): with `endStream`, the
   * request stream is ended first (DATA with END_STREAM) and the socket's
   * write side closed (FIN) once that frame is out; otherwise the socket is
   * closed at once.
   */
  const teardown = (endStream: boolean) => {
    stopTimers();
    if (tornDown) return;
    tornDown = true;
    if (!endStream || !conn || !started || h2.localEnded || h2.remoteEnded) {
      closeConn();
      return;
    }
    flushTimer = setTimeout(closeConn, CLOSE_FLUSH_MS);
    h2.end();
    h2.flush();
    const socket = conn;
    writing = writing.then(() => socket.closeWrite()).catch(() => {}).then(closeConn);
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
  const lost = (why: string) =>
    connected ? new RpcError(RpcStatus.UNAVAILABLE, why) : unreachable(why);

  const connectTimer = setTimeout(
    () => finish(unreachable("Failed to connect before the deadline"), false),
    options.connectTimeoutMs ?? 5000,
  );

  const authority = options.tls?.serverName ?? options.address;
  const request: Array<[string, string]> = [
    [":method", "POST"],
    [":scheme", options.tls ? "https" : "http"],
    [":authority", authority],
    [":path", CONNECT_PATH],
    ["content-type", "application/grpc"],
    ["te", "trailers"],
    ["grpc-accept-encoding", "identity"],
    ["user-agent", USER_AGENT],
  ];
  if (options.token) request.push([TOKEN_METADATA_KEY, `Bearer ${options.token}`]);

  /** Hands bytes to the socket, in order. */
  const write = (bytes: Uint8Array) => {
    const socket = conn;
    if (!socket || connClosed) return;
    writing = writing.then(async () => {
      if (connClosed) return;
      let at = 0;
      while (at < bytes.length) at += await socket.write(bytes.subarray(at));
    }).catch((error: Error) => {
      if (!connClosed) finish(lost(error.message), false);
    });
  };

  const h2 = new H2ClientConnection(write, {
    onSettings() {
      if (closed) return;
      connected = true;
      clearTimeout(connectTimer);
      settleReady();
      scheduleKeepalive();
    },
    onHeaders(fields, endStream, trailers) {
      if (closed) return;
      const headers = headerMap(fields);
      if (!trailers) {
        const httpStatus = Number(headers[":status"]);
        if (httpStatus !== 200) return finish(statusOfHttp(httpStatus), false);
      }
      const status = statusOf(headers);
      if (status !== undefined) return finish(status ?? undefined, false);
      if (trailers) {
        return finish(
          new RpcError(RpcStatus.UNKNOWN, "the broker ended the stream without a status"),
          false,
        );
      }
      if (endStream) {
        finish(
          new RpcError(RpcStatus.UNKNOWN, "the broker ended the stream without a grpc-status"),
          false,
        );
      }
    },
    onData(chunk) {
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
    },
    onEnd() {
      finish(
        new RpcError(RpcStatus.UNKNOWN, "the broker ended the stream without a grpc-status"),
        false,
      );
    },
    onReset(code) {
      finish(statusOfReset(code), false);
    },
    onPingAck() {
      if (pingTimer === undefined || closed) return;
      clearTimeout(pingTimer);
      pingTimer = undefined;
      scheduleKeepalive();
    },
    // A broker restarting gracefully sends GOAWAY and then ends this stream with its status.
    onGoaway() {},
    onError(reason) {
      finish(lost(`HTTP/2: ${reason}`), false);
    },
  });

  /** Reads until the broker closes the connection or this side closes the socket. */
  const readLoop = async (socket: Deno.Conn) => {
    const buffer = new Uint8Array(READ_BYTES);
    try {
      while (!connClosed) {
        const n = await socket.read(buffer);
        if (n === null) break;
        // A copy: DATA payloads are kept by the FrameReader until their message is whole.
        h2.receive(buffer.slice(0, n));
      }
    } catch (error) {
      if (!connClosed) return finish(lost((error as Error).message), false);
    }
    if (!closed) finish(lost("the connection to the broker was closed"), false);
    closeConn();
  };

  const dialing = dial(host, port, options.tls).then(async (socket) => {
    conn = socket;
    if (connClosed) {
      connClosed = false;
      return closeConn();
    }
    if (options.tls) {
      try {
        await (socket as Deno.TlsConn).handshake();
      } catch (error) {
        if (connClosed) return;
        tlsError = new Error(
          describeTlsError(error as Error, options.tls.serverName ?? host),
          { cause: error },
        );
        return finish(lost((error as Error).message), false);
      }
      if (connClosed) return;
    }
    reading = readLoop(socket);
    h2.start(request);
    started = true;
    for (const bytes of pending) h2.send(bytes);
    pending = [];
  }, (error: Error) => {
    finish(lost(error.message), false);
    markReleased();
  });
  dialing.catch(() => {});

  /** One ping per period; no answer within KEEPALIVE_TIMEOUT_MS ends the stream UNAVAILABLE. */
  function scheduleKeepalive() {
    keepaliveTimer = setTimeout(() => {
      if (closed) return;
      pingTimer = setTimeout(() => {
        finish(
          new RpcError(
            RpcStatus.UNAVAILABLE,
            `keepalive: the broker at ${options.address} did not answer a ping within ${KEEPALIVE_TIMEOUT_MS} ms`,
          ),
          false,
        );
      }, KEEPALIVE_TIMEOUT_MS);
      h2.ping();
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
      if (started) h2.send(frameMessage(bytes));
      else pending.push(frameMessage(bytes));
      return true;
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
