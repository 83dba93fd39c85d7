/**
 * Reading and writing pins (the JSON at `<prefix>/plugins/<name>`). A pin read
 * from the store is checked field by field; a bad one gives an error naming
 * the key and the field.
 *
 * @module
 */
import { ConfigError, type ConfigIssue, describeValue } from "../config/issues.ts";
import { isSha256Integrity } from "./integrity.ts";
import { isNpmName, isNpmVersion, isSha512Integrity, NPM_REGISTRY, parseNpmUrl } from "./npm.ts";
import {
  checkPermissions,
  isPluginName,
  PLUGIN_URL_SCHEMES,
  VERSION_PATTERN,
} from "../config/plugin_spec.ts";
import {
  PIN_FORMAT,
  type PinHistoryEntry,
  type PinnedDependency,
  type PinnedModule,
  type PinnedNpmPackage,
  type PluginPin,
} from "./types.ts";
import { isPlainObject } from "../common/objects.ts";

/** Media types a pinned module may have, with the file extension Deno needs to load it. */
export const MEDIA_TYPE_EXTENSIONS: Readonly<Record<string, string>> = Object.freeze({
  TypeScript: ".ts",
  JavaScript: ".js",
  Mjs: ".mjs",
  Mts: ".mts",
  Json: ".json",
});

/** Content type of the blob: URL of a module, by media type. */
export const MEDIA_TYPE_CONTENT_TYPES: Readonly<Record<string, string>> = Object.freeze({
  TypeScript: "application/typescript",
  JavaScript: "text/javascript",
  Mjs: "text/javascript",
  Mts: "application/typescript",
  Json: "application/json",
});

/** How many earlier pins a pin remembers. */
export const PIN_HISTORY_LIMIT = 20;

function isModuleUrl(value: unknown): value is string {
  if (typeof value !== "string") return false;
  try {
    return PLUGIN_URL_SCHEMES.includes(new URL(value).protocol);
  } catch {
    return false;
  }
}

/** Serializes a pin for the store. */
export function encodePin(pin: PluginPin): string {
  return JSON.stringify(pin);
}

/**
 * Parses and checks a pin read from the store.
 * @param text the stored JSON
 * @param where the key it came from, named in errors
 */
export function decodePin(text: string, where: string): PluginPin {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (error) {
    throw new ConfigError([{
      path: "",
      expected: "a JSON plugin pin",
      found: `text that is not JSON (${(error as Error).message})`,
    }], where);
  }
  const issues: ConfigIssue[] = [];
  const pin = checkPin(doc, issues);
  if (!pin) throw new ConfigError(issues, where);
  return pin;
}

function checkPin(doc: unknown, issues: ConfigIssue[]): PluginPin | undefined {
  if (!isPlainObject(doc)) {
    issues.push({ path: "", expected: "a JSON object (plugin pin)", found: describeValue(doc) });
    return undefined;
  }
  const need = (ok: boolean, path: string, expected: string) => {
    if (!ok) issues.push({ path, expected, found: describeValue(doc[path]) });
  };
  need(doc.format === PIN_FORMAT, "format", `pin format ${PIN_FORMAT}`);
  need(isPluginName(doc.name), "name", "a plugin name");
  need(isModuleUrl(doc.url), "url", "the plugin's entry URL");
  need(isModuleUrl(doc.entry), "entry", "the entry module URL after redirects");
  need(
    typeof doc.version === "string" && VERSION_PATTERN.test(doc.version),
    "version",
    "a version",
  );
  need(isSha256Integrity(doc.integrity), "integrity", "a sha256-<base64> graph digest");
  need(
    typeof doc.pinned_at === "number" && Number.isFinite(doc.pinned_at),
    "pinned_at",
    "Unix seconds",
  );
  need(isPlainObject(doc.config), "config", "a mapping of plugin settings");
  const permissions = checkPermissions(doc.permissions, "permissions", issues);
  const modules: PinnedModule[] = [];
  if (!Array.isArray(doc.modules) || doc.modules.length === 0) {
    issues.push({
      path: "modules",
      expected: "a non-empty list of pinned modules",
      found: describeValue(doc.modules),
    });
  } else {
    doc.modules.forEach((raw, i) => {
      const module = checkModule(raw, `modules[${i}]`, issues);
      if (module) modules.push(module);
    });
  }
  const npm: PinnedNpmPackage[] = [];
  if (doc.npm !== undefined) {
    if (!Array.isArray(doc.npm)) {
      issues.push({
        path: "npm",
        expected: "a list of npm packages",
        found: describeValue(doc.npm),
      });
    } else {
      doc.npm.forEach((raw, i) => {
        if (
          isPlainObject(raw) && isNpmName(raw.name) && isNpmVersion(raw.version) &&
          typeof raw.tarball === "string" && raw.tarball.startsWith(NPM_REGISTRY) &&
          isSha512Integrity(raw.integrity)
        ) {
          npm.push({
            name: raw.name,
            version: raw.version,
            tarball: raw.tarball,
            integrity: raw.integrity,
          });
        } else {
          issues.push({
            path: `npm[${i}]`,
            expected: `{name, version, tarball (${NPM_REGISTRY}…), integrity (sha512-<base64>)}`,
            found: describeValue(raw),
          });
        }
      });
    }
  }
  const packageKeys = new Set(npm.map((p) => `${p.name}@${p.version}`));
  modules.forEach((m, i) => {
    const parsed = parseNpmUrl(m.url);
    if (
      m.url.startsWith("npm:") && (!parsed || !packageKeys.has(`${parsed.name}@${parsed.version}`))
    ) {
      issues.push({
        path: `modules[${i}].url`,
        expected: "a file of one of the pin's npm packages",
        found: describeValue(m.url),
      });
    }
  });
  const urls = new Set(modules.map((m) => m.url));
  if (urls.size !== modules.length) {
    issues.push({ path: "modules", expected: "each module URL once", found: "duplicates" });
  }
  modules.forEach((m, i) =>
    m.dependencies.forEach((d, j) => {
      if (!urls.has(d.url) && !d.url.startsWith("node:")) {
        issues.push({
          path: `modules[${i}].dependencies[${j}].url`,
          expected: "the URL of a module of this pin or a node: builtin",
          found: describeValue(d.url),
        });
      }
    })
  );
  if (typeof doc.entry === "string" && modules.length > 0 && !urls.has(doc.entry)) {
    issues.push({
      path: "entry",
      expected: "one of the pinned modules",
      found: describeValue(doc.entry),
    });
  }
  const history: PinHistoryEntry[] = [];
  if (doc.history !== undefined) {
    if (!Array.isArray(doc.history)) {
      issues.push({
        path: "history",
        expected: "a list of earlier pins",
        found: describeValue(doc.history),
      });
    } else {
      doc.history.forEach((raw, i) => {
        if (
          isPlainObject(raw) && typeof raw.url === "string" && typeof raw.version === "string" &&
          isSha256Integrity(raw.integrity) && typeof raw.pinned_at === "number"
        ) {
          history.push({
            url: raw.url,
            version: raw.version,
            integrity: raw.integrity,
            pinned_at: raw.pinned_at,
          });
        } else {
          issues.push({
            path: `history[${i}]`,
            expected: "{url, version, integrity, pinned_at}",
            found: describeValue(raw),
          });
        }
      });
    }
  }
  if (issues.length > 0) return undefined;
  return {
    format: PIN_FORMAT,
    name: doc.name as string,
    url: doc.url as string,
    entry: doc.entry as string,
    version: doc.version as string,
    integrity: doc.integrity as string,
    pinned_at: doc.pinned_at as number,
    permissions,
    config: doc.config as Record<string, unknown>,
    modules,
    ...(npm.length > 0 ? { npm } : {}),
    history,
  };
}

function checkModule(raw: unknown, where: string, issues: ConfigIssue[]): PinnedModule | undefined {
  if (!isPlainObject(raw)) {
    issues.push({ path: where, expected: "a pinned module", found: describeValue(raw) });
    return undefined;
  }
  const before = issues.length;
  const need = (ok: boolean, key: string, expected: string) => {
    if (!ok) issues.push({ path: `${where}.${key}`, expected, found: describeValue(raw[key]) });
  };
  need(
    isModuleUrl(raw.url) || (typeof raw.url === "string" && raw.url.startsWith("npm:/")),
    "url",
    "an http:, https: or file: module URL, or npm:/<name>@<version>/<path>",
  );
  need(isSha256Integrity(raw.integrity), "integrity", "a sha256-<base64> hash");
  need(
    typeof raw.size === "number" && Number.isSafeInteger(raw.size) && raw.size >= 0,
    "size",
    "a byte count",
  );
  need(
    typeof raw.media_type === "string" && raw.media_type in MEDIA_TYPE_EXTENSIONS,
    "media_type",
    `one of ${Object.keys(MEDIA_TYPE_EXTENSIONS).join(", ")}`,
  );
  const dependencies: PinnedDependency[] = [];
  if (!Array.isArray(raw.dependencies)) {
    need(false, "dependencies", "a list of {specifier, url}");
  } else {
    raw.dependencies.forEach((d, i) => {
      if (
        isPlainObject(d) && typeof d.specifier === "string" && d.specifier !== "" &&
        typeof d.url === "string"
      ) {
        dependencies.push({ specifier: d.specifier, url: d.url });
      } else {
        issues.push({
          path: `${where}.dependencies[${i}]`,
          expected: "{specifier, url}",
          found: describeValue(d),
        });
      }
    });
  }
  if (issues.length > before) return undefined;
  return {
    url: raw.url as string,
    integrity: raw.integrity as string,
    size: raw.size as number,
    media_type: raw.media_type as string,
    dependencies,
  };
}
