/**
 * gRPC server side of the agent stream (the broker uses this; it never
 * imports a gRPC or HTTP/2 library). The `Connect` bidi stream is served on
 * this folder's own HTTP/2 server (h2.ts, hpack.ts) over node:net or
 * node:tls sockets: no grpc-js and no `node:http2` in the broker, so the
 * broker is out of reach of Deno's nghttp2 aborts (denoland/deno#36788) by
 * design, and a message costs one DATA frame in and, for its ack, one DATA
 * frame out in one socket write (bench scenario 8, README Performance).
 *
 * gRPC on HTTP/2 as served here: `POST /monitoring.v1.Monitoring/Connect`
 * with `content-type: application/grpc` (other paths: UNIMPLEMENTED; other
 * content types: HTTP 415); messages framed by framing.ts (identity
 * encoding only); the response headers go out with the first message, the
 * status in trailers (`grpc-status`, `grpc-message` percent-encoded), or in
 * a trailers-only response when the stream ends before any message.
 *
 * ## GOAWAY: never sent
 *
 * Not on stream ends, not on protocol errors (the socket is closed), not at
 * shutdown: {@linkcode RpcServer.close} stops listening, closes idle
 * connections, waits for the open streams to end (their trailers go out),
 * ends the rest UNAVAILABLE "broker shutting down" after the grace time and
 * closes each socket (FIN) once its last stream ended. An agent on Deno's
 * node:http2 client therefore never receives a GOAWAY from a broker.
 *
 * @module
 */
import { createServer as createNetServer, type Server as NetServer, type Socket } from "node:net";
import { createServer as createTlsServer, type TLSSocket } from "node:tls";
import type { AgentMessage, BrokerMessage } from "./messages.ts";
import { getLogger } from "../common/log.ts";
import { CONNECT_PATH, decodeAgentMessage, encodeBrokerMessage } from "./codec.ts";
import { DEFAULT_MAX_MESSAGE_BYTES } from "./limits.ts";
import { frameMessage, FrameReader } from "./framing.ts";
import { H2Connection, type H2Stream } from "./h2.ts";
import type { HeaderField } from "./hpack.ts";
import { splitHostPort } from "../common/net.ts";

export { DEFAULT_MAX_MESSAGE_BYTES };
import { RpcError, RpcStatus } from "./status.ts";
import { type ServerTlsOptions, TOKEN_METADATA_ALT_KEY, TOKEN_METADATA_KEY } from "./tls.ts";
import { peerOf, tlsServerOptions, TlsWatch } from "./server_tls.ts";

/**
 * Default most concurrent streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS;
 * a stream beyond it is refused REFUSED_STREAM); an agent needs one on its
 * own connection. Chosen when the server ran on Deno 2.9.6's node:http2,
 * where cancelling a few hundred streams of one connection at once aborted
 * the process (nghttp2 assertion in find_stream_on_goaway_func, or free():
 * invalid pointer; looped reproduction: uncapped 4 of 5 runs aborted, capped
 * at 16 none of 7); kept as a bound on what one connection may hold.
 */
export const DEFAULT_MAX_STREAMS_PER_CONNECTION = 16;

/**
 * The broker pings a connection that sent nothing for this long (ms). It
 * only finds agents whose host vanished without closing the connection (a
 * killed agent process closes it at once); agents find a dead broker with
 * their own pings (services/rpc/client.ts, every 10 s). An agent sending
 * every second is never pinged: its frames show it is there.
 */
export const SERVER_KEEPALIVE_MS = 30_000;
/** How long the broker waits for the answer to its ping before it closes the connection (ms). */
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
  /**
   * Keep-alive: a connection silent this long is pinged (ms, default
   * {@linkcode SERVER_KEEPALIVE_MS}); one whose ping stays unanswered for
   * `keepaliveTimeoutMs` (default {@linkcode SERVER_KEEPALIVE_TIMEOUT_MS}) is closed.
   */
  keepaliveMs?: number;
  /** See `keepaliveMs`. */
  keepaliveTimeoutMs?: number;
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

/** `grpc-message` as sent: UTF-8, percent-encoded outside printable ASCII (and `%`). */
export function encodeGrpcMessage(details: string): string {
  let out = "";
  for (const byte of new TextEncoder().encode(details)) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25
      ? String.fromCharCode(byte)
      : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

const RESPONSE_HEADERS: ReadonlyArray<readonly [string, string]> = [
  [":status", "200"],
  ["content-type", "application/grpc"],
  ["grpc-accept-encoding", "identity"],
];

/** What a stream needs from its connection and server. */
interface StreamContext {
  peer: string;
  authenticatedPeer: boolean;
  peerName: string | undefined;
  maxBytes: number;
}

class Http2ServerStream implements ServerStream {
  readonly #h2: H2Stream;
  readonly #maxBytes: number;
  readonly #reader: FrameReader;
  #messageListeners: Array<(message: AgentMessage) => void> = [];
  #closeListeners: Array<(error?: Error) => void> = [];
  #invalidListener: ((details: string) => void) | undefined;
  #closed = false;
  readonly peer: string;
  readonly authenticatedPeer: boolean;
  readonly peerName: string | undefined;
  readonly token: string | undefined;

  constructor(h2: H2Stream, headers: HeaderField[], context: StreamContext) {
    this.#h2 = h2;
    this.#maxBytes = context.maxBytes;
    this.#reader = new FrameReader(context.maxBytes, "the broker");
    this.peer = context.peer;
    this.authenticatedPeer = context.authenticatedPeer;
    this.peerName = context.peerName;
    this.token = tokenOf(headers);
    h2.events = {
      onData: (bytes) => this.#data(bytes),
      // The agent half-closed: the stream ends with status OK, as grpc-js's server did.
      onEnd: () => this.end(),
      onAbort: (reason, code) =>
        this.#finish(
          new RpcError(
            RpcStatus.CANCELLED,
            code === undefined ? `stream cancelled: ${reason}` : "stream cancelled",
          ),
        ),
    };
  }

  get closed(): boolean {
    return this.#closed;
  }

  #data(bytes: Uint8Array) {
    if (this.#closed) return;
    const { messages, error } = this.#reader.push(bytes);
    for (const message of messages) {
      let decoded: AgentMessage;
      try {
        decoded = decodeAgentMessage(message);
      } catch (decodeError) {
        const details =
          `expected a monitoring.v1.AgentMessage (protobuf), found ${message.length} bytes that do not decode: ${
            decodeError instanceof Error ? decodeError.message : String(decodeError)
          }`;
        if (this.#invalidListener) this.#invalidListener(details);
        else this.fail(RpcStatus.INVALID_ARGUMENT, details);
        if (this.#closed) return;
        continue;
      }
      for (const listener of this.#messageListeners) listener(decoded);
      if (this.#closed) return;
    }
    if (error) this.fail(error.code, error.details);
  }

  send(message: BrokerMessage): boolean {
    if (this.#closed) return false;
    const bytes = encodeBrokerMessage(message);
    if (bytes.length > this.#maxBytes) {
      this.fail(
        RpcStatus.RESOURCE_EXHAUSTED,
        `Sent message larger than max (${bytes.length} vs. ${this.#maxBytes})`,
      );
      return false;
    }
    if (!this.#h2.headersSent) this.#h2.respond(RESPONSE_HEADERS);
    this.#h2.write(frameMessage(bytes));
    return true;
  }

  onMessage(listener: (message: AgentMessage) => void): void {
    this.#messageListeners.push(listener);
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
    this.#h2.end(this.#status(RpcStatus.OK, ""));
    this.#finish();
  }

  fail(code: number, details: string): void {
    if (this.#closed) return;
    this.#h2.end(this.#status(code, details));
    this.#finish(new RpcError(code, details));
  }

  /** Trailers, or the whole trailers-only response when nothing was sent yet. */
  #status(code: number, details: string): Array<[string, string]> {
    const fields: Array<[string, string]> = this.#h2.headersSent
      ? []
      : [[":status", "200"], ["content-type", "application/grpc"]];
    fields.push(["grpc-status", String(code)]);
    if (details) fields.push(["grpc-message", encodeGrpcMessage(details)]);
    return fields;
  }

  #finish(error?: Error) {
    if (this.#closed) return;
    this.#closed = true;
    this.#messageListeners = [];
    for (const listener of this.#closeListeners.splice(0)) listener(error);
  }
}

/** The first value of header `name`. */
function header(headers: HeaderField[], name: string): string | undefined {
  for (const [key, value] of headers) if (key === name) return value;
  return undefined;
}

/** The token of the stream's metadata (see {@linkcode ServerStream.token}). */
function tokenOf(headers: HeaderField[]): string | undefined {
  const auth = header(headers, TOKEN_METADATA_KEY)?.trim();
  if (auth !== undefined) {
    const match = /^Bearer\s+(\S.*)$/i.exec(auth);
    // Anything other than a bearer token is a wrong token, not a missing one.
    return match ? match[1].trim() : auth;
  }
  return header(headers, TOKEN_METADATA_ALT_KEY)?.trim() || undefined;
}

/**
 * Why a request is not a gRPC call of this service, as the response that
 * says so; undefined when it is one.
 */
function refusal(headers: HeaderField[]): Array<[string, string]> | undefined {
  const method = header(headers, ":method");
  const contentType = header(headers, "content-type") ?? "";
  if (method !== "POST") return [[":status", "405"], ["allow", "POST"]];
  if (!/^application\/grpc(\+proto)?(;|$)/.test(contentType)) {
    return [[":status", "415"], ["content-type", "text/plain"]];
  }
  const grpcStatus = (code: number, details: string): Array<[string, string]> => [
    [":status", "200"],
    ["content-type", "application/grpc"],
    ["grpc-status", String(code)],
    ["grpc-message", encodeGrpcMessage(details)],
  ];
  const path = header(headers, ":path");
  if (path !== CONNECT_PATH) {
    return grpcStatus(
      RpcStatus.UNIMPLEMENTED,
      `The server does not implement the method ${path ?? "(no :path)"}`,
    );
  }
  const encoding = header(headers, "grpc-encoding");
  if (encoding !== undefined && encoding !== "identity") {
    return grpcStatus(
      RpcStatus.UNIMPLEMENTED,
      `grpc-encoding ${encoding} is not supported; the broker accepts identity`,
    );
  }
  return undefined;
}

/** Why binding failed, in words. */
function bindProblem(error: Error): string {
  const code = (error as { code?: string }).code ?? "";
  if (/EADDRINUSE/.test(code + error.message)) {
    return 'the address is already in use (another broker, or a second "deno task up" with the same broker.listen?)';
  }
  if (/EACCES|EPERM/.test(code + error.message)) {
    return "not permitted to listen there (a port below 1024?)";
  }
  if (/EADDRNOTAVAIL/.test(code + error.message)) return "no such address on this host";
  return error.message;
}

/** How often connections are checked for keep-alive (ms). */
const KEEPALIVE_SWEEP_MS = 1000;
/** A connection whose socket holds more than this unsent is closed (the peer does not read). */
const MAX_UNSENT_BYTES = 8 * 1024 * 1024;

/** Starts the gRPC server and resolves once it listens. */
export async function startRpcServer(options: RpcServerOptions): Promise<RpcServer> {
  const maxBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const maxStreams = options.maxStreamsPerConnection ?? DEFAULT_MAX_STREAMS_PER_CONNECTION;
  const log = getLogger("rpc");
  const mutual = options.tls?.requireClientCert === true;
  const tlsWatch = new TlsWatch(
    options.onTlsError ??
      ((peer, reason) => log.warn(`refused a TLS connection from ${peer}: ${reason}`)),
  );
  const connections = new Map<Socket, H2Connection>();
  const streams = new Set<Http2ServerStream>();
  let closing = false;

  /** Ends a connection's socket once it carries no stream (used when closing). */
  const endIfIdle = (conn: H2Connection) => {
    if (conn.streamCount === 0) conn.close("the broker is shutting down");
  };

  const accept = (socket: Socket, tlsSocket: TLSSocket | undefined) => {
    if (closing) {
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    const peer = peerOf(socket) ?? "unknown peer";
    // Only a certificate the handshake asked for (mTLS) and verified counts; without
    // requestCert Deno's node:tls reports `authorized` true for a client that sent none.
    const authorized = mutual && tlsSocket?.authorized === true;
    let peerName: string | undefined;
    if (authorized) {
      const cn = (tlsSocket!.getPeerCertificate() as { subject?: { CN?: string | string[] } })
        ?.subject?.CN;
      peerName = Array.isArray(cn) ? cn[0] : cn;
    }
    const context: StreamContext = { peer, authenticatedPeer: authorized, peerName, maxBytes };
    const conn: H2Connection = new H2Connection({
      write(bytes) {
        if (socket.destroyed) return;
        socket.write(bytes);
        if (socket.writableLength > MAX_UNSENT_BYTES) {
          conn.fail(`the peer reads nothing (${socket.writableLength} bytes unsent)`);
        }
      },
      close() {
        if (socket.destroyed) return;
        socket.end();
        // A peer that never closes its side is not waited for.
        const timer = setTimeout(() => socket.destroy(), 1000);
        socket.once("close", () => clearTimeout(timer));
      },
    }, {
      onStream(h2, headers, endStream) {
        const refused = refusal(headers);
        if (refused) {
          h2.end(refused);
          return;
        }
        const stream = new Http2ServerStream(h2, headers, context);
        if (closing) {
          stream.fail(RpcStatus.UNAVAILABLE, "broker shutting down");
          return;
        }
        if (mutual && !stream.authenticatedPeer) {
          // mTLS: the handshake only asked for a certificate (see server_tls.ts); refuse here.
          const reason = tlsWatch.refusal(stream.peer);
          tlsWatch.report(stream.peer, reason);
          stream.fail(RpcStatus.UNAUTHENTICATED, `client certificate refused: ${reason}`);
          return;
        }
        streams.add(stream);
        stream.onClose(() => {
          streams.delete(stream);
          if (closing) endIfIdle(conn);
        });
        options.onStream(stream);
        // A request without a body: the agent half-closed at once; the stream ends OK, as
        // when it half-closes later.
        if (endStream) stream.end();
      },
      onError(reason) {
        log.debug(`closed the HTTP/2 connection of ${peer}: ${reason}`);
      },
    }, { maxConcurrentStreams: maxStreams });
    connections.set(socket, conn);
    socket.on("data", (chunk: Uint8Array) => conn.receive(chunk, clock));
    socket.on("error", (error: Error) => log.debug(`connection of ${peer}: ${error.message}`));
    socket.on("close", () => {
      connections.delete(socket);
      conn.transportClosed("the connection was closed");
    });
    conn.start();
  };

  let server: NetServer;
  if (options.tls) {
    const tlsServer = createTlsServer(tlsServerOptions(options.tls));
    tlsWatch.watch(tlsServer);
    tlsServer.on("secureConnection", (socket: TLSSocket) => accept(socket, socket));
    server = tlsServer;
  } else {
    server = createNetServer((socket: Socket) => accept(socket, undefined));
  }
  /** Every accepted TCP socket (with TLS also those still in their handshake), for close(). */
  const sockets = new Set<Socket>();
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });

  const keepaliveMs = options.keepaliveMs ?? SERVER_KEEPALIVE_MS;
  const keepaliveTimeoutMs = options.keepaliveTimeoutMs ?? SERVER_KEEPALIVE_TIMEOUT_MS;
  let clock = performance.now();
  const sweep = setInterval(() => {
    clock = performance.now();
    for (const conn of connections.values()) {
      conn.keepalive(clock, keepaliveMs, keepaliveTimeoutMs);
    }
  }, Math.min(KEEPALIVE_SWEEP_MS, keepaliveMs / 4, keepaliveTimeoutMs / 4));

  const { host, port } = splitHostPort(options.listen, "listen address");
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (error) {
    clearInterval(sweep);
    throw new Error(`cannot listen on ${options.listen}: ${bindProblem(error as Error)}`, {
      cause: error,
    });
  }
  server.on("error", (error: Error) => log.warn(`gRPC listener: ${error.message}`));
  const bound = (server.address() as { port: number }).port;
  const hostPart = options.listen.slice(0, options.listen.lastIndexOf(":"));
  let closed: Promise<void> | undefined;
  return {
    address: `${hostPart}:${bound}`,
    port: bound,
    close(graceMs = 5000) {
      closed ??= (async () => {
        closing = true;
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const conn of connections.values()) endIfIdle(conn);
        const deadline = Date.now() + graceMs;
        while (streams.size > 0 && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        for (const stream of [...streams]) {
          stream.fail(RpcStatus.UNAVAILABLE, "broker shutting down");
        }
        for (const conn of connections.values()) conn.close("the broker is shutting down");
        // Sockets still open a second later (a peer that does not answer the FIN, a TLS
        // handshake that never finishes) are destroyed: server.close() waits for all of them.
        const stragglers = setTimeout(() => {
          for (const socket of sockets) socket.destroy();
        }, 1000);
        await stopped;
        clearTimeout(stragglers);
        clearInterval(sweep);
      })();
      return closed;
    },
  };
}
