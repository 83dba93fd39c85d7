/**
 * Transport security of the broker: reads the TLS files and secrets that the
 * resolved configuration (`broker:` of monitor.yaml with the `--tls-*` and
 * `--*token-*` flags, checked by services/config) names, plus the warnings an
 * operator should see at start. The rules joining these keys (mTLS needs
 * TLS, a client CA makes client certificates required) are the resolver's;
 * this module only reads files.
 *
 * monitor.yaml keys:
 * - `broker.tls: {cert, key, ca, require_client_cert}`: `ca` (the CA agent
 *   certificates must chain to) turns on mTLS; `require_client_cert` defaults
 *   to true with `ca` (client certificates are required, not optional).
 * - `broker.token_file` / `broker.token_env` (or `broker.token`): the agent
 *   token.
 * - `broker.admin_token_file` / `broker.admin_token_env` (or
 *   `broker.admin_token`): the admin API's bearer token.
 *
 * @module
 */
import { hostOf, isLoopbackHost } from "../common/net.ts";
import { readSecret, type Secret } from "../common/secrets.ts";
import { configTlsReader } from "../config/security_settings.ts";
import type { ServiceSettings } from "../config/service_settings.ts";
import type { ServerTlsOptions } from "../rpc/server_mod.ts";

/** Resolved security settings. */
export interface BrokerSecurity {
  tls?: ServerTlsOptions;
  /** The TLS files read (for permission lists and messages). */
  tlsFiles: string[];
  token?: Secret;
  adminToken?: Secret;
}

/**
 * Reads the TLS files and secrets the resolved configuration of the broker
 * names (relative paths are relative to monitor.yaml's folder; flags were
 * made absolute). Messages name the flag or key that named a file.
 */
export async function readBrokerSecurity(settings: ServiceSettings): Promise<BrokerSecurity> {
  const { config } = settings;
  const broker = config.broker;
  const security: BrokerSecurity = { tlsFiles: [] };
  const read = configTlsReader(settings, "broker", security.tlsFiles);
  if (broker.tls) {
    const { cert, key, ca, require_client_cert } = broker.tls;
    security.tls = {
      cert: await read("cert", cert),
      key: await read("key", key),
      requireClientCert: require_client_cert,
    };
    if (ca !== undefined) security.tls.ca = await read("ca", ca);
  }
  const base = config.source.dir;
  security.token = await readSecret({
    what: "broker.token",
    inline: broker.token,
    file: broker.token_file,
    env: broker.token_env,
    base,
  });
  security.adminToken = await readSecret({
    what: "broker.admin_token",
    inline: broker.admin_token,
    file: broker.admin_token_file,
    env: broker.admin_token_env,
    base,
  });
  return security;
}

/**
 * What an operator should be told at start: plain text or no token on a
 * listener other hosts can reach, and secret files others can read.
 */
export function securityWarnings(listen: string, security: BrokerSecurity): string[] {
  const warnings: string[] = [];
  if (!isLoopbackHost(hostOf(listen))) {
    if (!security.tls) {
      warnings.push(
        `the gRPC listener ${listen} is reachable from other hosts without TLS: agent data and tokens travel in plain text; set broker.tls (README: Transport security)`,
      );
    }
    if (!security.token && !security.tls?.requireClientCert) {
      warnings.push(
        `the gRPC listener ${listen} accepts any agent: set broker.token_file or client certificates (broker.tls.ca)`,
      );
    }
  }
  for (const secret of [security.token, security.adminToken]) {
    if (secret?.warning) warnings.push(secret.warning);
  }
  return warnings;
}
