/**
 * Permission lists of a process, their rendering as `deno run` flags and
 * the merging of several builders' flags, shared by the per-service permission builders
 * (services/{bus,store,broker,analysis,agent}/permissions.ts), and the
 * environment variables @grpc/grpc-js reads (under services/rpc and under
 * etcd3), which several of those builders grant.
 *
 * @module
 */

/** What a process needs from Deno's permission system, one list per permission. */
export interface PermissionLists {
  /** `--allow-read` paths. */
  read: string[];
  /** `--allow-write` paths. */
  write: string[];
  /** `--allow-net` hosts (`host:port`). */
  net: string[];
  /** `--allow-env` variable names. */
  env: string[];
  /** `--allow-sys` names. */
  sys?: string[];
  /** `--allow-run` programs. */
  run?: string[];
}

/** Environment variables @grpc/grpc-js reads when it is loaded and when it listens. */
export const GRPC_ENV_VARS: readonly string[] = Object.freeze([
  "GRPC_NODE_VERBOSITY",
  "GRPC_VERBOSITY",
  "GRPC_NODE_TRACE",
  "GRPC_TRACE",
  "GRPC_SSL_CIPHER_SUITES",
  "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
  "GRPC_NODE_USE_ALTERNATIVE_RESOLVER",
  "GRPC_NODE_DEBUG_SEND_ERROR_DETAILS",
  "GRPC_EXPERIMENTAL_ENABLE_OUTLIER_DETECTION",
]);

/** Environment variables commander reads when it prints help or an error (color or not). */
export const COMMANDER_ENV_VARS: readonly string[] = Object.freeze([
  "NO_COLOR",
  "FORCE_COLOR",
  "CLICOLOR_FORCE",
]);

/** Environment variables npm:yaml reads when it parses (only with --config). */
export const YAML_ENV_VARS: readonly string[] = Object.freeze(["LOG_TOKENS", "LOG_STREAM"]);

/** Proxy variables grpc-js reads when it opens a client channel. */
export const GRPC_CLIENT_PROXY_ENV_VARS: readonly string[] = Object.freeze([
  "grpc_proxy",
  "https_proxy",
  "http_proxy",
  "no_grpc_proxy",
  "no_proxy",
]);

/**
 * Permission lists as `deno run` flags, in the order read, write, net, env,
 * sys, run: one `--allow-<name>=a,b` flag per non-empty list, repeated
 * entries given once; an empty or missing list gives no flag, and a list
 * holding `*` gives `--allow-<name>` without a list (all of that kind).
 */
export function permissionFlags(p: PermissionLists): string[] {
  const flags: string[] = [];
  const lists: Array<[string, string[] | undefined]> = [
    ["read", p.read],
    ["write", p.write],
    ["net", p.net],
    ["env", p.env],
    ["sys", p.sys],
    ["run", p.run],
  ];
  for (const [name, list] of lists) {
    if (!list?.length) continue;
    flags.push(
      list.includes("*") ? `--allow-${name}` : `--allow-${name}=${[...new Set(list)].join(",")}`,
    );
  }
  return flags;
}

/**
 * Merges `deno run` flags given by several permission builders into one flag
 * per permission (`--allow-read=a` and `--allow-read=b` become
 * `--allow-read=a,b`, each entry once); other flags are kept once, first.
 *
 * @example
 * ```ts
 * import { mergePermissionFlags } from "./permissions.ts";
 *
 * mergePermissionFlags(["--no-prompt", "--allow-read=/a"], ["--allow-read=/a,/b"]);
 * // ["--no-prompt", "--allow-read=/a,/b"]
 * ```
 */
export function mergePermissionFlags(...groups: string[][]): string[] {
  const lists = new Map<string, Set<string>>();
  const others = new Set<string>();
  for (const flag of groups.flat()) {
    const match = /^(--allow-[a-z]+)=(.*)$/.exec(flag);
    if (!match) {
      others.add(flag);
      continue;
    }
    const set = lists.get(match[1]) ?? new Set<string>();
    for (const item of match[2].split(",")) if (item !== "") set.add(item);
    lists.set(match[1], set);
  }
  return [...others, ...[...lists].map(([name, set]) => `${name}=${[...set].join(",")}`)];
}
