/**
 * Transport security settings of the agent from monitor.yaml (`agent:`, and
 * `broker:` of the same file as a fallback for the local agent) and flags:
 * TLS to the broker (CA, client certificate and key for mTLS, expected
 * server name) and the agent token.
 *
 * monitor.yaml keys:
 * - `agent.tls: {ca, cert, key, server_name}`
 * - `agent.token_file` / `agent.token_env` (or `agent.token`); without any of
 *   them the `broker.token*` keys of the same file are used.
 *
 * @module
 */
import { readSecret, type Secret } from "../common/secrets.ts";
import {
  optionalString,
  readTlsFile,
  secretSources,
  type TlsFile,
  tlsFileResolver,
  tlsMapping,
} from "../common/security_settings.ts";
import type { ClientTlsOptions } from "../rpc/mod.ts";

/** Security-related flags of the agent's command line. */
export interface AgentSecurityFlags {
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsServerName?: string;
  tokenFile?: string;
  tokenEnv?: string;
}

/** Resolved security settings. */
export interface AgentSecurity {
  tls?: ClientTlsOptions;
  /** The TLS files read (for permission lists and messages). */
  tlsFiles: string[];
  token?: Secret;
}

/**
 * Reads the TLS files and the token named by `section` (`agent:`), `broker`
 * (`broker:` of the same monitor.yaml, for the token) and `flags` (flags win;
 * relative paths of the file are relative to `base`, those of flags to the
 * working directory).
 */
export async function readAgentSecurity(
  section: Record<string, unknown>,
  broker: Record<string, unknown> | undefined,
  flags: AgentSecurityFlags,
  base: string,
): Promise<AgentSecurity> {
  const doc = tlsMapping(section, "agent", "{ca, cert, key, server_name}");
  const cwd = Deno.cwd();
  const pick = tlsFileResolver(doc, "agent", base, cwd);
  const ca = pick(flags.tlsCa, "ca");
  const cert = pick(flags.tlsCert, "cert");
  const key = pick(flags.tlsKey, "key");
  const serverName = flags.tlsServerName ?? optionalString(doc, "server_name", "agent.tls");
  const security: AgentSecurity = { tlsFiles: [] };
  if ((cert === undefined) !== (key === undefined)) {
    throw new Error(
      `${
        cert === undefined ? "agent.tls.cert" : "agent.tls.key"
      }: expected both cert and key (PEM files) for mTLS, or neither`,
    );
  }
  if (ca !== undefined || cert !== undefined || serverName !== undefined) {
    const read = async (file: TlsFile) => {
      const text = await readTlsFile(file);
      security.tlsFiles.push(file[0]);
      return text;
    };
    const tls: ClientTlsOptions = {};
    if (ca !== undefined) tls.ca = await read(ca);
    if (cert !== undefined && key !== undefined) {
      tls.cert = await read(cert);
      tls.key = await read(key);
    }
    if (serverName !== undefined) tls.serverName = serverName;
    security.tls = tls;
  }
  if (flags.tokenFile !== undefined || flags.tokenEnv !== undefined) {
    security.token = await readSecret({
      what: "agent.token",
      file: flags.tokenFile,
      env: flags.tokenEnv,
      base: cwd,
    });
  } else {
    const own = secretSources(section, "token", "agent");
    const ownGiven = own.inline ?? own.file ?? own.env;
    security.token = await readSecret(
      ownGiven === undefined && broker
        ? { what: "broker.token", ...secretSources(broker, "token", "broker"), base }
        : { what: "agent.token", ...own, base },
    );
  }
  return security;
}
