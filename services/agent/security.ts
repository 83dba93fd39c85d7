/**
 * Transport security of the agent: reads the TLS files and the token that
 * the resolved configuration (`agent:` of monitor.yaml with the `--tls-*`
 * and `--token-*` flags, checked by services/config) names. The rules
 * (cert and key together) and the fallback to the `broker.token*` keys of
 * the same file are the resolver's; this module only reads files.
 *
 * monitor.yaml keys:
 * - `agent.tls: {ca, cert, key, server_name}`
 * - `agent.token_file` / `agent.token_env` (or `agent.token`); without any of
 *   them the `broker.token*` keys of the same file are used.
 *
 * @module
 */
import { readSecret, type Secret } from "../common/secrets.ts";
import { configTlsReader } from "../config/security_settings.ts";
import { type ServiceSettings, settingName } from "../config/service_settings.ts";
import type { ClientTlsOptions } from "../rpc/agent_mod.ts";

/** Resolved security settings. */
export interface AgentSecurity {
  tls?: ClientTlsOptions;
  /** The TLS files read (for permission lists and messages). */
  tlsFiles: string[];
  token?: Secret;
}

const TOKEN_KEYS = ["token", "token_file", "token_env"] as const;

/**
 * Reads the TLS files and the token the resolved configuration of the agent
 * names (relative paths are relative to monitor.yaml's folder; flags were
 * made absolute). Messages name the flag or key that named a file; a token
 * inherited from `broker:` is named `broker.token`.
 */
export async function readAgentSecurity(settings: ServiceSettings): Promise<AgentSecurity> {
  const { config } = settings;
  const agent = config.agent;
  const security: AgentSecurity = { tlsFiles: [] };
  const read = configTlsReader(settings, "agent", security.tlsFiles);
  if (agent.tls) {
    const { ca, cert, key, server_name } = agent.tls;
    const tls: ClientTlsOptions = {};
    if (ca !== undefined) tls.ca = await read("ca", ca);
    if (cert !== undefined && key !== undefined) {
      tls.cert = await read("cert", cert);
      tls.key = await read("key", key);
    }
    if (server_name !== undefined) tls.serverName = server_name;
    security.tls = tls;
  }
  const given = (value: unknown) => value !== undefined && value !== null;
  const own = TOKEN_KEYS.some((key) =>
    given(settings.section[key]) || settingName(settings, `agent.${key}`) !== `agent.${key}`
  );
  security.token = await readSecret({
    what: own ? "agent.token" : "broker.token",
    inline: agent.token,
    file: agent.token_file,
    env: agent.token_env,
    base: config.source.dir,
  });
  return security;
}
