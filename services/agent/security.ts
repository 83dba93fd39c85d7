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
import { isAbsolute, resolve } from "node:path";
import { errorMessage } from "../common/log.ts";
import { readSecret, type Secret } from "../common/secrets.ts";
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

function optionalString(doc: Record<string, unknown>, key: string, path: string) {
  const value = doc[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string" || value === "") {
    throw new Error(`${path}.${key}: expected a non-empty string, found ${JSON.stringify(value)}`);
  }
  return value;
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
  const tlsRaw = section.tls;
  if (
    tlsRaw !== undefined && tlsRaw !== null && (typeof tlsRaw !== "object" || Array.isArray(tlsRaw))
  ) {
    throw new Error(
      `agent.tls: expected a mapping {ca, cert, key, server_name}, found ${JSON.stringify(tlsRaw)}`,
    );
  }
  const doc = (tlsRaw ?? {}) as Record<string, unknown>;
  const cwd = Deno.cwd();
  const pick = (flag: string | undefined, key: string): [string, string] | undefined => {
    if (flag !== undefined) return [isAbsolute(flag) ? flag : resolve(cwd, flag), `--tls-${key}`];
    const value = optionalString(doc, key, "agent.tls");
    return value === undefined
      ? undefined
      : [isAbsolute(value) ? value : resolve(base, value), `agent.tls.${key}`];
  };
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
    const read = async ([file, what]: [string, string]) => {
      try {
        const text = await Deno.readTextFile(file);
        security.tlsFiles.push(file);
        return text;
      } catch (error) {
        throw new Error(`${what}: cannot read ${file}: ${errorMessage(error)}`, { cause: error });
      }
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
    const sources = (doc: Record<string, unknown>, path: string) => ({
      inline: optionalString(doc, "token", path),
      file: optionalString(doc, "token_file", path),
      env: optionalString(doc, "token_env", path),
    });
    const own = sources(section, "agent");
    const ownGiven = own.inline ?? own.file ?? own.env;
    security.token = await readSecret(
      ownGiven === undefined && broker
        ? { what: "broker.token", ...sources(broker, "broker"), base }
        : { what: "agent.token", ...own, base },
    );
  }
  return security;
}
