/**
 * The product's store keys (see ARCHITECTURE.md, "Store keys"), built in one
 * place so that nobody hand-builds them.
 *
 * @module
 */

/** Default key prefix of the product. */
export const DEFAULT_STORE_PREFIX = "/monitor";

/** Keys and prefixes under one product prefix; see {@linkcode storeKeys}. */
export interface StoreKeys {
  /** The normalized prefix, e.g. `/monitor` (no trailing slash). */
  readonly root: string;
  /** Prefix of every agent configuration: `<root>/config/`. */
  readonly configPrefix: string;
  /** Prefix of every heartbeat: `<root>/heartbeat/`. */
  readonly heartbeatPrefix: string;
  /** Prefix of every plugin pin: `<root>/plugins/`. */
  readonly pluginPrefix: string;
  /** Prefix of every agent session (which broker holds its stream): `<root>/sessions/`. */
  readonly sessionPrefix: string;
  /** Prefix of every live broker: `<root>/brokers/`. */
  readonly brokerPrefix: string;
  /** `<root>/config/<agent-id>` (`config("default")` for agents without their own). */
  config(agentId: string): string;
  /** `<root>/heartbeat/<agent-id>`. */
  heartbeat(agentId: string): string;
  /** `<root>/plugins/<plugin-name>`. */
  plugin(name: string): string;
  /** `<root>/sessions/<agent-id>`: the broker holding the agent's stream, on that broker's lease. */
  session(agentId: string): string;
  /** `<root>/brokers/<broker-id>`: a live broker, on its lease. */
  broker(brokerId: string): string;
  /** The agent id (or plugin name) of a key under one of the prefixes, or undefined. */
  nameOf(key: string, prefix: string): string | undefined;
}

function checkName(what: string, name: unknown): string {
  if (typeof name !== "string" || name.length === 0 || name.includes("/")) {
    throw new TypeError(
      `store key: ${what} must be a non-empty string without '/', got ${
        JSON.stringify(name) ?? String(name)
      }`,
    );
  }
  return name;
}

/**
 * The keys under `prefix` (default `/monitor`; a trailing `/` is ignored).
 * Throws a TypeError for a prefix that is not a string or lacks a leading `/`.
 */
export function storeKeys(prefix: string = DEFAULT_STORE_PREFIX): StoreKeys {
  if (typeof prefix !== "string" || !prefix.startsWith("/")) {
    throw new TypeError(
      `store.prefix: expected a key prefix starting with '/', e.g. "/monitor", got ${
        JSON.stringify(prefix) ?? String(prefix)
      }`,
    );
  }
  const root = prefix.replace(/\/+$/, "");
  const configPrefix = `${root}/config/`;
  const heartbeatPrefix = `${root}/heartbeat/`;
  const pluginPrefix = `${root}/plugins/`;
  const sessionPrefix = `${root}/sessions/`;
  const brokerPrefix = `${root}/brokers/`;
  return Object.freeze({
    root,
    configPrefix,
    heartbeatPrefix,
    pluginPrefix,
    sessionPrefix,
    brokerPrefix,
    config: (agentId: string) => configPrefix + checkName("agent id", agentId),
    heartbeat: (agentId: string) => heartbeatPrefix + checkName("agent id", agentId),
    plugin: (name: string) => pluginPrefix + checkName("plugin name", name),
    session: (agentId: string) => sessionPrefix + checkName("agent id", agentId),
    broker: (brokerId: string) => brokerPrefix + checkName("broker id", brokerId),
    nameOf: (key: string, under: string) => {
      if (!key.startsWith(under)) return undefined;
      const rest = key.slice(under.length);
      return rest.length > 0 && !rest.includes("/") ? rest : undefined;
    },
  });
}
