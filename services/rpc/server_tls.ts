/**
 * TLS of the broker's gRPC listener: credentials and the bookkeeping that
 * turns refused handshakes and refused client certificates into clear
 * reasons. Internal to services/rpc.
 *
 * Two things found on Deno 2.9.6 shape this file (first seen under grpc-js
 * 1.14.7, whose server the broker used before server.ts):
 *
 * - grpc-js's `ServerCredentials.createSsl(null, ...)` fell back to the file
 *   named by `GRPC_DEFAULT_SSL_ROOTS_FILE_PATH` as the client-CA list, and
 *   Deno's node:tls server sends every certificate of `ca` in its own certificate
 *   chain. With a system bundle there (≈ 140 certificates, 220 KB) the
 *   handshake message outgrows what clients accept and every TLS connection
 *   fails ("received corrupt message of type HandshakePayloadTooLarge" in
 *   Deno, "excessive message size" in OpenSSL). So `ca` is set only for mTLS,
 *   from the configured client CA.
 * - When Deno's TLS server refuses a client certificate during the handshake
 *   it closes the connection without an alert: the agent sees only "failed to
 *   connect" and the server only "socket hang up". So for mTLS the handshake
 *   asks for a certificate without refusing it, and every stream whose
 *   connection did not verify is ended with UNAUTHENTICATED and the reason
 *   (see {@linkcode TlsWatch.refusal}). The decision is the TLS layer's own
 *   verification (`socket.authorized` of the node:tls socket); this file
 *   only describes it.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import type { TlsOptions } from "node:tls";
import { pemBytes, type ServerTlsOptions } from "./tls.ts";

/** Fields of a peer certificate used to describe a refusal (node:tls `PeerCertificate`). */
interface PeerCertificateInfo {
  subject?: { CN?: string | string[] };
  issuer?: { CN?: string | string[] };
  valid_from?: string;
  valid_to?: string;
}

/** What node:tls gives for an accepted TLS socket. */
interface TlsSocketLike {
  remoteAddress?: string;
  remotePort?: number;
  authorized?: boolean;
  authorizationError?: Error | string | null;
  getPeerCertificate?(): PeerCertificateInfo | null;
  once(event: "close", listener: () => void): void;
}

/** The events of the node:tls server used here. */
interface SecureListener {
  on(event: "tlsClientError", listener: (error: Error, socket?: TlsSocketLike) => void): void;
  on(event: "secureConnection", listener: (socket: TlsSocketLike) => void): void;
}

/** node:tls server options carrying only what the caller configured (see the module doc). */
export function tlsServerOptions(tls: ServerTlsOptions): TlsOptions {
  const mutual = tls.requireClientCert === true;
  if (mutual && !tls.ca) {
    throw new Error("tls: requireClientCert needs ca, the CA client certificates must chain to");
  }
  return {
    cert: Buffer.from(pemBytes(tls.cert)),
    key: Buffer.from(pemBytes(tls.key)),
    ...(mutual && tls.ca ? { ca: Buffer.from(pemBytes(tls.ca)) } : {}),
    // Refusal happens per stream (see the module doc), hence rejectUnauthorized false.
    requestCert: mutual,
    rejectUnauthorized: !mutual,
    ALPNProtocols: ["h2"],
  };
}

function commonName(name: { CN?: string | string[] } | undefined): string {
  const cn = name?.CN;
  return (Array.isArray(cn) ? cn[0] : cn) ?? "?";
}

/**
 * Why a client certificate was not accepted, in words.
 * @param certificate the peer certificate, if one was presented
 * @param code the TLS layer's verification error code, e.g. `CERT_HAS_EXPIRED`
 * @param now the current time (Unix ms)
 */
export function describeRefusal(
  certificate: PeerCertificateInfo | null | undefined,
  code: string | undefined,
  now: number = Date.now(),
): string {
  if (!certificate || !certificate.subject) {
    return "no client certificate was presented; the broker requires one signed by its client CA (broker.tls.ca)";
  }
  const who = `the client certificate of ${JSON.stringify(commonName(certificate.subject))} ` +
    `(issued by ${JSON.stringify(commonName(certificate.issuer))})`;
  const notAfter = certificate.valid_to ? Date.parse(certificate.valid_to) : NaN;
  const notBefore = certificate.valid_from ? Date.parse(certificate.valid_from) : NaN;
  if (Number.isFinite(notAfter) && notAfter < now) {
    return `${who} expired on ${new Date(notAfter).toISOString()}`;
  }
  if (Number.isFinite(notBefore) && notBefore > now) {
    return `${who} is not valid before ${new Date(notBefore).toISOString()}`;
  }
  return `${who} does not verify against the broker's client CA${code ? ` (${code})` : ""}`;
}

/** Remembers why connections were refused, by peer (`address:port`, see {@linkcode peerOf}). */
export class TlsWatch {
  readonly #refused = new Map<string, string>();
  readonly #report: (peer: string, reason: string) => void;

  /** @param report called for every failed handshake and every refused certificate */
  constructor(report: (peer: string, reason: string) => void) {
    this.#report = report;
  }

  /** Subscribes to the handshake events of the TLS `listener` (call before it listens). */
  watch(listener: SecureListener): void {
    listener.on("tlsClientError", (error, socket) => {
      this.#report(peerOf(socket) ?? "a client", `TLS handshake failed: ${error.message}`);
    });
    listener.on("secureConnection", (socket) => {
      if (socket.authorized !== false) return;
      const peer = peerOf(socket);
      if (!peer) return;
      const code = socket.authorizationError;
      this.#refused.set(
        peer,
        describeRefusal(
          socket.getPeerCertificate?.(),
          typeof code === "string" ? code : code?.message,
        ),
      );
      socket.once("close", () => this.#refused.delete(peer));
    });
  }

  /** Why the connection of `peer` has no verified client certificate. */
  refusal(peer: string): string {
    return this.#refused.get(peer) ??
      "no verified client certificate; the broker requires one signed by its client CA (broker.tls.ca)";
  }

  /** Reports a refusal (the same callback as handshake failures). */
  report(peer: string, reason: string): void {
    this.#report(peer, reason);
  }
}

/** A socket's peer as the server names it: `127.0.0.1:53422`, `[::1]:53422`. */
export function peerOf(
  socket: { remoteAddress?: string; remotePort?: number } | undefined,
): string | undefined {
  if (!socket?.remoteAddress) return undefined;
  const address = socket.remoteAddress.includes(":")
    ? `[${socket.remoteAddress}]`
    : socket.remoteAddress;
  return socket.remotePort ? `${address}:${socket.remotePort}` : address;
}
