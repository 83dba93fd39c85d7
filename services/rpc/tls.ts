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
  /** CA bundle (PEM) that client certificates must chain to (mTLS). */
  ca?: string;
  /** Refuse clients without a certificate signed by `ca` (mTLS). */
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
  /** Expected server name when it differs from the address's host. */
  serverName?: string;
}

/** PEM text as the bytes the TLS layer expects. */
export function pemBytes(pem: string): Uint8Array {
  return new TextEncoder().encode(pem);
}
