/**
 * Transport security settings of the broker from monitor.yaml (`broker:`)
 * and flags: TLS of the gRPC listener (optionally mTLS), the agent token and
 * the admin token, plus the warnings an operator should see at start.
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
import {
  readTlsFile,
  secretSources,
  tlsFileResolver,
  tlsMapping,
} from "../common/security_settings.ts";
import type { ServerTlsOptions } from "../rpc/mod.ts";

/** Security-related flags of the broker's command line. */
export interface BrokerSecurityFlags {
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  tlsRequireClientCert?: boolean;
  tokenFile?: string;
  tokenEnv?: string;
  adminTokenFile?: string;
  adminTokenEnv?: string;
}

/** Resolved security settings. */
export interface BrokerSecurity {
  tls?: ServerTlsOptions;
  /** The TLS files read (for permission lists and messages). */
  tlsFiles: string[];
  token?: Secret;
  adminToken?: Secret;
}

/**
 * Reads the TLS files and secrets named by `section` (monitor.yaml's
 * `broker:`) and `flags` (flags win; relative paths of the file are relative
 * to `base`, those of flags to the working directory).
 */
export async function readBrokerSecurity(
  section: Record<string, unknown>,
  flags: BrokerSecurityFlags,
  base: string,
): Promise<BrokerSecurity> {
  const doc = tlsMapping(section, "broker", "{cert, key, ca}");
  const cwd = Deno.cwd();
  const pick = tlsFileResolver(doc, "broker", base, cwd);
  const cert = pick(flags.tlsCert, "cert");
  const key = pick(flags.tlsKey, "key");
  const ca = pick(flags.tlsCa, "ca");
  const requireRaw = flags.tlsRequireClientCert ?? doc.require_client_cert;
  if (requireRaw !== undefined && typeof requireRaw !== "boolean") {
    throw new Error(
      `broker.tls.require_client_cert: expected true or false, found ${JSON.stringify(requireRaw)}`,
    );
  }
  const security: BrokerSecurity = { tlsFiles: [] };
  if (cert === undefined && key === undefined) {
    if (ca !== undefined || requireRaw === true) {
      throw new Error(
        `${
          ca?.[1] ?? "broker.tls.require_client_cert"
        }: mTLS needs TLS: expected broker.tls.cert and broker.tls.key too`,
      );
    }
  } else {
    if (cert === undefined || key === undefined) {
      throw new Error(
        `${
          cert === undefined ? "broker.tls.cert" : "broker.tls.key"
        }: expected both cert and key (PEM files)`,
      );
    }
    const requireClientCert = requireRaw ?? ca !== undefined;
    if (requireClientCert && ca === undefined) {
      throw new Error(
        "broker.tls.ca: expected the CA (PEM file) agent certificates must chain to, since require_client_cert is true",
      );
    }
    if (!requireClientCert && ca !== undefined) {
      throw new Error(
        `${
          ca[1]
        }: a client CA makes client certificates required; optional client certificates are not supported (remove ca, or drop require_client_cert: false)`,
      );
    }
    security.tls = {
      cert: await readTlsFile(cert),
      key: await readTlsFile(key),
      requireClientCert,
    };
    security.tlsFiles.push(cert[0], key[0]);
    if (ca !== undefined) {
      security.tls.ca = await readTlsFile(ca);
      security.tlsFiles.push(ca[0]);
    }
  }
  // Flags replace the file's sources of that secret; relative files of flags are the cwd's.
  const secret = (name: "token" | "admin_token", file?: string, env?: string) =>
    file !== undefined || env !== undefined
      ? readSecret({ what: `broker.${name}`, file, env, base: cwd })
      : readSecret({ what: `broker.${name}`, ...secretSources(section, name, "broker"), base });
  security.token = await secret("token", flags.tokenFile, flags.tokenEnv);
  security.adminToken = await secret("admin_token", flags.adminTokenFile, flags.adminTokenEnv);
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
