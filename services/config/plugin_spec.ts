/**
 * monitor.yaml's `plugins:` section: validation of each plugin declaration
 * (url, version, permissions, config) with errors naming the key, and the
 * version read from a URL such as `…/spike@1.2.0/mod.ts`.
 *
 * ```yaml
 * plugins:
 *   spike:
 *     url: https://plugins.example.com/spike@1.2.0/mod.ts
 *     permissions: { net: [api.example.com], read: [/var/log/app], env: [SPIKE_TOKEN] }
 *     config: { factor: 3 }
 * ```
 *
 * @module
 */
import { isAbsolute, normalize } from "node:path";
import { ConfigError, type ConfigIssue, describeValue, didYouMean } from "./issues.ts";
import { isPlainObject } from "../common/objects.ts";

/** The permissions a URL plugin may use inside its Worker (default: none). */
export interface PluginPermissions {
  /** Hosts it may connect to: `host` or `host:port` (fetch, WebSocket, Deno.connect). */
  net: string[];
  /** Absolute paths (files or directories) it may read. */
  read: string[];
  /** Environment variable names it may read. */
  env: string[];
}

/** A URL plugin as declared in monitor.yaml `plugins: <name>: {...}`. */
export interface PluginSpec {
  /** Entry module URL (http: or https:), e.g. `https://example.com/spike@1.2.0/mod.ts`. */
  url: string;
  /** Version; when omitted it is read from the URL (`…/spike@1.2.0/mod.ts`). */
  version?: string;
  /** Declared permissions; omitted lists mean none. */
  permissions?: Partial<PluginPermissions>;
  /** Settings passed to the plugin's `initialize` (default `{}`). */
  config?: Record<string, unknown>;
}

/** Plugin names: what may follow `<prefix>/plugins/` and name the plugin in agent configs. */
export const PLUGIN_NAME_PATTERN = /^[A-Za-z0-9._-]{1,128}$/;
/** Versions: `1.2.0`, `v2`, `2024-01-15`, `1.0.0-beta.1`, ... */
export const VERSION_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/;
/** URL schemes a plugin (and each of its modules) may be loaded from. */
export const PLUGIN_URL_SCHEMES: readonly string[] = ["https:", "http:", "file:"];

const SPEC_KEYS = ["url", "version", "permissions", "config"] as const;
const PERMISSION_KEYS = ["net", "read", "env"] as const;
const UNSUPPORTED_PERMISSIONS = ["write", "run", "ffi", "sys", "import", "all"];

const NET_PATTERN =
  /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::(\d{1,5}))?$/;
const ENV_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** True when `name` can name a URL plugin. */
export function isPluginName(name: unknown): name is string {
  return typeof name === "string" && PLUGIN_NAME_PATTERN.test(name) && name !== "." &&
    name !== "..";
}

/** True when `value` is a `host` or `host:port` Deno accepts in `--allow-net`. */
export function isNetPermission(value: unknown): value is string {
  if (typeof value !== "string") return false;
  const match = NET_PATTERN.exec(value);
  return match !== null && (match[1] === undefined || Number(match[1]) <= 65535);
}

/**
 * The version carried by a plugin URL: the last path segment of the form
 * `name@version` (`…/spike@1.2.0/mod.ts` gives `1.2.0`), else a segment
 * `v1.2.0`. Undefined when the URL has none.
 */
export function versionFromUrl(url: string): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return undefined;
  }
  const segments = parsed.pathname.split("/").map((s) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  });
  for (let i = segments.length - 1; i >= 0; i--) {
    const at = /^[^@]*@(v?\d+(?:\.\d+)*(?:[-+][0-9A-Za-z.+-]+)?)$/.exec(segments[i]);
    if (at) return at[1];
  }
  for (let i = segments.length - 1; i >= 0; i--) {
    if (/^v\d+(?:\.\d+)+$/.test(segments[i])) return segments[i];
  }
  return undefined;
}

/** Empty permission lists (the default: nothing). */
export function noPermissions(): PluginPermissions {
  return { net: [], read: [], env: [] };
}

/** Permissions with sorted, de-duplicated lists (the form stored in pins). */
export function normalizePermissions(
  permissions: Partial<PluginPermissions> | undefined,
): PluginPermissions {
  const tidy = (list: string[] | undefined) => [...new Set(list ?? [])].sort();
  return {
    net: tidy(permissions?.net),
    read: tidy(permissions?.read?.map((p) => normalize(p))),
    env: tidy(permissions?.env),
  };
}

/** Checks one declared permission set; pushes issues under `where`. */
export function checkPermissions(
  raw: unknown,
  where: string,
  issues: ConfigIssue[],
): PluginPermissions {
  const result = noPermissions();
  if (raw === undefined || raw === null) return result;
  if (!isPlainObject(raw)) {
    issues.push({
      path: where,
      expected: "a mapping with net, read and env lists",
      found: describeValue(raw),
    });
    return result;
  }
  for (const key of Object.keys(raw)) {
    if ((PERMISSION_KEYS as readonly string[]).includes(key)) continue;
    const unsupported = UNSUPPORTED_PERMISSIONS.includes(key);
    issues.push({
      path: `${where}.${key}`,
      expected: "one of net, read, env (URL plugins may not be granted anything else)",
      found: unsupported ? `a request for ${key} access` : describeValue(key),
      hint: unsupported ? undefined : hintFor(key, PERMISSION_KEYS),
    });
  }
  const list = (
    key: "net" | "read" | "env",
    valid: (v: string) => boolean,
    expected: string,
  ): string[] => {
    const value = raw[key];
    if (value === undefined || value === null) return [];
    const items = typeof value === "string" ? [value] : value;
    if (!Array.isArray(items)) {
      issues.push({
        path: `${where}.${key}`,
        expected: `a list of ${expected}`,
        found: describeValue(value),
      });
      return [];
    }
    const out: string[] = [];
    items.forEach((item, i) => {
      if (typeof item === "string" && valid(item)) out.push(item);
      else {
        issues.push({
          path: `${where}.${key}[${i}]`,
          expected,
          found: describeValue(item),
        });
      }
    });
    return out;
  };
  result.net = list("net", isNetPermission, "a host or host:port, e.g. api.example.com:443");
  result.read = list(
    "read",
    (p) => isAbsolute(p) && !p.includes("\0"),
    "an absolute path, e.g. /var/log/app",
  );
  result.env = list("env", (n) => ENV_PATTERN.test(n), "an environment variable name");
  return normalizePermissions(result);
}

function hintFor(word: string, candidates: readonly string[]): string | undefined {
  const match = didYouMean(word, candidates);
  return match === undefined ? undefined : `did you mean "${match}"?`;
}

/** Checks a plugin URL; returns an issue's `expected` text when it is not acceptable. */
export function checkPluginUrl(url: unknown): string | undefined {
  const expected = "an absolute https:, http: or file: URL of the plugin's entry module";
  if (typeof url !== "string") return expected;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return expected;
  }
  if (!PLUGIN_URL_SCHEMES.includes(parsed.protocol)) return expected;
  if (parsed.username || parsed.password) return "a URL without user name or password";
  return undefined;
}

/**
 * Checks one plugin declaration; pushes issues under `where` (e.g.
 * `plugins.spike`) and returns the spec when it is valid.
 */
export function checkPluginSpec(
  raw: unknown,
  where: string,
  issues: ConfigIssue[],
): PluginSpec | undefined {
  const before = issues.length;
  if (!isPlainObject(raw)) {
    issues.push({
      path: where,
      expected: "a mapping with url, and optionally version, permissions, config",
      found: describeValue(raw),
    });
    return undefined;
  }
  for (const key of Object.keys(raw)) {
    if ((SPEC_KEYS as readonly string[]).includes(key)) continue;
    issues.push({
      path: `${where}.${key}`,
      expected: "one of url, version, permissions, config",
      found: describeValue(key),
      hint: hintFor(key, SPEC_KEYS),
    });
  }
  const urlProblem = checkPluginUrl(raw.url);
  if (urlProblem) {
    issues.push({ path: `${where}.url`, expected: urlProblem, found: describeValue(raw.url) });
  }
  const url = urlProblem ? "" : raw.url as string;
  let version: string | undefined;
  if (raw.version !== undefined && raw.version !== null) {
    const given = typeof raw.version === "number" ? String(raw.version) : raw.version;
    if (typeof given !== "string" || !VERSION_PATTERN.test(given)) {
      issues.push({
        path: `${where}.version`,
        expected: "a version such as 1.2.0",
        found: describeValue(raw.version),
      });
    } else {
      version = given;
      const fromUrl = url ? versionFromUrl(url) : undefined;
      if (fromUrl !== undefined && fromUrl !== given) {
        issues.push({
          path: `${where}.version`,
          expected: `the version in the URL (${fromUrl}) or no version`,
          found: describeValue(raw.version),
        });
      }
    }
  } else if (url && versionFromUrl(url) === undefined) {
    issues.push({
      path: `${where}.version`,
      expected: "a version (give version:, or put it in the URL like …/spike@1.2.0/mod.ts)",
      found: "nothing",
    });
  }
  const permissions = checkPermissions(raw.permissions, `${where}.permissions`, issues);
  let config: Record<string, unknown> = {};
  if (raw.config !== undefined && raw.config !== null) {
    if (!isPlainObject(raw.config)) {
      issues.push({
        path: `${where}.config`,
        expected: "a mapping of plugin settings",
        found: describeValue(raw.config),
      });
    } else config = raw.config;
  }
  if (issues.length > before) return undefined;
  const spec: PluginSpec = { url, permissions, config };
  if (version !== undefined) spec.version = version;
  return spec;
}

/**
 * Checks monitor.yaml's whole `plugins:` mapping (name -> declaration).
 * Returns the valid specs; pushes issues under `where` (default `plugins`).
 */
export function checkPluginsSection(
  raw: unknown,
  issues: ConfigIssue[],
  where = "plugins",
): Map<string, PluginSpec> {
  const specs = new Map<string, PluginSpec>();
  if (raw === undefined || raw === null) return specs;
  if (!isPlainObject(raw)) {
    issues.push({
      path: where,
      expected: "a mapping of plugin name to {url, version, permissions, config}",
      found: describeValue(raw),
    });
    return specs;
  }
  for (const [name, value] of Object.entries(raw)) {
    if (!isPluginName(name)) {
      issues.push({
        path: `${where}.${name}`,
        expected: "a plugin name of letters, digits, '.', '_' or '-'",
        found: describeValue(name),
      });
      continue;
    }
    const spec = checkPluginSpec(value, `${where}.${name}`, issues);
    if (spec) specs.set(name, spec);
  }
  return specs;
}

/** {@linkcode checkPluginSpec} that throws a {@linkcode ConfigError} listing every issue. */
export function parsePluginSpec(raw: unknown, where: string, file?: string): PluginSpec {
  const issues: ConfigIssue[] = [];
  const spec = checkPluginSpec(raw, where, issues);
  if (!spec) throw new ConfigError(issues, file);
  return spec;
}

/** {@linkcode checkPluginsSection} that throws a {@linkcode ConfigError} listing every issue. */
export function parsePluginsSection(raw: unknown, file?: string): Map<string, PluginSpec> {
  const issues: ConfigIssue[] = [];
  const specs = checkPluginsSection(raw, issues);
  if (issues.length > 0) throw new ConfigError(issues, file);
  return specs;
}

/** The version of a valid spec: given, or read from its URL. */
export function specVersion(spec: PluginSpec): string {
  const version = spec.version ?? versionFromUrl(spec.url);
  if (version === undefined) {
    throw new TypeError(`plugin ${spec.url}: no version given and none in the URL`);
  }
  return version;
}
