/**
 * TLS settings for the agent <-> broker stream (PEM text, already read from
 * files by the caller).
 *
 * @module
 */

/** Broker side. */
export interface ServerTlsOptions {
  /** Server certificate chain (PEM). */
  cert: string;
  /** Server private key (PEM). */
  key: string;
  /**
   * CA bundle (PEM) that client certificates must chain to (mTLS). Keep it
   * small: Deno's TLS server also sends these certificates in its own chain.
   */
  ca?: string;
  /** Refuse clients without a certificate signed by `ca` (mTLS); needs `ca`. */
  requireClientCert?: boolean;
}

/** Agent side. */
export interface ClientTlsOptions {
  /** CA bundle (PEM) the broker's certificate must chain to; system roots when omitted. */
  ca?: string;
  /** Client certificate (PEM), for mTLS. */
  cert?: string;
  /** Client private key (PEM), for mTLS. */
  key?: string;
  /**
   * Expected name in the broker's certificate when it differs from the
   * address's host (also sent as SNI). Without it a DNS host is checked
   * against the certificate's DNS names and an IP address against its IP
   * addresses.
   */
  serverName?: string;
}

/**
 * Metadata key of the agent token (`authorization: Bearer <token>`), sent when
 * the stream opens so the broker can refuse it before any message.
 */
export const TOKEN_METADATA_KEY = "authorization";

/** Alternative metadata key carrying the bare token. */
export const TOKEN_METADATA_ALT_KEY = "x-monitor-token";

/** PEM text as the bytes the TLS layer expects. */
export function pemBytes(pem: string): Uint8Array {
  return new TextEncoder().encode(pem);
}
