/**
 * npm packages of URL plugins, pinned byte for byte.
 *
 * A plugin may import `npm:<name>@<version or range>`. Deno's npm resolver is
 * never used at run time (in the agent it would go through the agent's own
 * frozen lockfile and npm cache, whose files Deno does not re-verify): when
 * pinning, each package of the graph is recorded at its resolved exact
 * version with the registry's `sha512` integrity, its tarball is downloaded
 * and checked against it, and every file the plugin loads from it becomes a
 * pinned module with the URL `npm:/<name>@<version>/<path>`. The agent gets
 * those files from its verified cache or from the tarball (checked against
 * the pinned `sha512` before it is unpacked, then every file against its
 * `sha256`) and runs them from blob: URLs like the plugin's own modules.
 * Only ES module packages are supported (`"type": "module"` or `.mjs`).
 *
 * @module
 */
import { fetchModule, type FetchOptions } from "./fetch.ts";
import { sha512Integrity } from "./integrity.ts";
import type { PinnedNpmPackage } from "./types.ts";

/** SHA-512 as `sha512-<base64>` (the registry's `dist.integrity` form), from integrity.ts. */
export { sha512Integrity };

/** The registry every npm package of a plugin is pinned from (and its tarball fetched from). */
export const NPM_REGISTRY = "https://registry.npmjs.org/";

/** `--allow-net` host of {@linkcode NPM_REGISTRY}. */
export const NPM_REGISTRY_HOST = "registry.npmjs.org:443";

/** Largest accepted package tarball. */
export const MAX_TARBALL_BYTES = 32 * 1024 * 1024;

/** Largest accepted unpacked package. */
const MAX_UNPACKED_BYTES = 64 * 1024 * 1024;

const SHA512_PATTERN = /^sha512-[A-Za-z0-9+/]{86}==$/;
const NAME_PATTERN = /^(?:@[a-z0-9][a-z0-9._~-]*\/)?[a-z0-9][a-z0-9._~-]*$/;
const VERSION_PATTERN = /^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]+)?$/;

/** True when `value` is an npm package name. */
export function isNpmName(value: unknown): value is string {
  return typeof value === "string" && value.length <= 214 && NAME_PATTERN.test(value);
}

/** True when `value` is an exact semver version. */
export function isNpmVersion(value: unknown): value is string {
  return typeof value === "string" && VERSION_PATTERN.test(value);
}

/** True when `value` is a well-formed `sha512-<base64>` string. */
export function isSha512Integrity(value: unknown): value is string {
  return typeof value === "string" && SHA512_PATTERN.test(value);
}

/** URL of the pinned module for `path` inside package `name@version`. */
export function npmModuleUrl(name: string, version: string, path: string): string {
  return `npm:/${name}@${version}/${path}`;
}

/** `npm:/<name>@<version>[/<path>]` split up; undefined for anything else. */
export function parseNpmUrl(
  url: string,
): { name: string; version: string; path: string } | undefined {
  if (!url.startsWith("npm:/")) return undefined;
  const parts = url.slice("npm:/".length).split("/");
  const scoped = parts[0]?.startsWith("@");
  const head = scoped ? `${parts[0]}/${parts[1] ?? ""}` : parts[0];
  const at = head.lastIndexOf("@");
  if (at <= 0) return undefined;
  const name = head.slice(0, at);
  const version = head.slice(at + 1);
  if (!isNpmName(name) || version === "") return undefined;
  return { name, version, path: parts.slice(scoped ? 2 : 1).join("/") };
}

/** The integrity check of a downloaded tarball failed. */
export class NpmIntegrityError extends Error {
  /**
   * @param tarball the tarball URL
   * @param expected the pinned `sha512-…`
   * @param actual what the downloaded bytes hash to
   */
  constructor(readonly tarball: string, readonly expected: string, readonly actual: string) {
    super(`tarball ${tarball} has integrity ${actual}, expected ${expected}`);
    this.name = "NpmIntegrityError";
  }
}

/** The registry's record of `name@version`: its tarball URL and `sha512` integrity. */
export async function registryPackage(
  name: string,
  version: string,
  options: FetchOptions = {},
): Promise<PinnedNpmPackage> {
  const url = `${NPM_REGISTRY}${name.replace("/", "%2f")}/${encodeURIComponent(version)}`;
  const bytes = await fetchModule(url, { ...options, maxBytes: 4 * 1024 * 1024 });
  let doc: { dist?: { tarball?: unknown; integrity?: unknown } };
  try {
    doc = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new Error(`registry metadata ${url} is not JSON`);
  }
  const tarball = doc.dist?.tarball;
  const integrity = doc.dist?.integrity;
  if (typeof tarball !== "string" || !tarball.startsWith(NPM_REGISTRY)) {
    throw new Error(`registry metadata ${url}: dist.tarball is not a ${NPM_REGISTRY} URL`);
  }
  if (!isSha512Integrity(integrity)) {
    throw new Error(`registry metadata ${url}: dist.integrity is not a sha512-<base64> hash`);
  }
  return { name, version, tarball, integrity };
}

/**
 * Downloads the tarball of `pkg`, checks it against the pinned `sha512`
 * ({@linkcode NpmIntegrityError} otherwise, before anything is unpacked) and
 * returns its files by path inside the package (`dist/index.js`).
 */
export async function fetchPackageFiles(
  pkg: PinnedNpmPackage,
  options: FetchOptions = {},
): Promise<Map<string, Uint8Array>> {
  const bytes = await fetchModule(pkg.tarball, { ...options, maxBytes: MAX_TARBALL_BYTES });
  const actual = await sha512Integrity(bytes);
  if (actual !== pkg.integrity) throw new NpmIntegrityError(pkg.tarball, pkg.integrity, actual);
  return await untarGz(bytes, pkg.tarball);
}

/** The regular files of a `.tgz`, by path with the top directory (`package/`) removed. */
export async function untarGz(bytes: Uint8Array, where: string): Promise<Map<string, Uint8Array>> {
  let data: Uint8Array;
  try {
    const stream = new Blob([bytes as BlobPart]).stream().pipeThrough(
      new DecompressionStream("gzip"),
    );
    data = new Uint8Array(await new Response(stream).arrayBuffer());
  } catch (error) {
    throw new Error(`${where}: not a gzip archive (${(error as Error).message})`);
  }
  if (data.length > MAX_UNPACKED_BYTES) {
    throw new Error(`${where}: unpacks to more than ${MAX_UNPACKED_BYTES} bytes`);
  }
  const decoder = new TextDecoder();
  const files = new Map<string, Uint8Array>();
  let longName: string | undefined;
  for (let offset = 0; offset + 512 <= data.length;) {
    const header = data.subarray(offset, offset + 512);
    if (header.every((b) => b === 0)) break;
    const field = (start: number, length: number) =>
      decoder.decode(header.subarray(start, start + length)).replace(/\0[\s\S]*$/, "");
    const size = parseInt(field(124, 12).trim() || "0", 8);
    if (!Number.isSafeInteger(size) || size < 0) throw new Error(`${where}: bad tar header`);
    const body = data.subarray(offset + 512, offset + 512 + size);
    offset += 512 + Math.ceil(size / 512) * 512;
    const type = String.fromCharCode(header[156]);
    if (type === "x") {
      const path = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(decoder.decode(body));
      longName = path ? path[1] : longName;
      continue;
    }
    if (type === "L") {
      longName = decoder.decode(body).replace(/\0[\s\S]*$/, "");
      continue;
    }
    const prefix = field(345, 155);
    const name = longName ?? (prefix ? `${prefix}/${field(0, 100)}` : field(0, 100));
    longName = undefined;
    if (type !== "0" && type !== "\0" && type !== "7") continue;
    const segments = name.split("/").filter((s) => s !== "" && s !== ".").slice(1);
    if (segments.length === 0 || segments.some((s) => s === ".." || s.includes("\\"))) {
      throw new Error(`${where}: unsafe path ${JSON.stringify(name)} in the archive`);
    }
    files.set(segments.join("/"), body.slice());
  }
  return files;
}

const CONDITIONS = new Set(["deno", "node", "import", "default"]);

function pickTarget(target: unknown): string | undefined {
  if (typeof target === "string") return target;
  if (Array.isArray(target)) {
    for (const item of target) {
      const picked = pickTarget(item);
      if (picked !== undefined) return picked;
    }
    return undefined;
  }
  if (typeof target === "object" && target !== null) {
    for (const [key, value] of Object.entries(target)) {
      if (CONDITIONS.has(key)) {
        const picked = pickTarget(value);
        if (picked !== undefined) return picked;
      }
    }
  }
  return undefined;
}

/**
 * The file (path inside the package) that `subpath` (`.` or `./x`) of a
 * package loads, from its package.json `exports` (conditions `deno`, `node`,
 * `import`, `default`; `*` patterns), else `main`/`module`/`index.js` for
 * `.`, else the subpath itself. Throws naming the package.
 */
export function packageEntry(
  manifest: Record<string, unknown>,
  subpath: string,
  files: ReadonlyMap<string, Uint8Array>,
  where: string,
): string {
  const exports = manifest.exports;
  let target: string | undefined;
  if (exports !== undefined && exports !== null) {
    const map = typeof exports === "object" && !Array.isArray(exports) &&
        Object.keys(exports).some((k) => k.startsWith("."))
      ? exports as Record<string, unknown>
      : { ".": exports };
    if (subpath in map) target = pickTarget(map[subpath]);
    else {
      for (const [key, value] of Object.entries(map)) {
        const star = key.indexOf("*");
        if (star < 0) continue;
        const [before, after] = [key.slice(0, star), key.slice(star + 1)];
        if (subpath.startsWith(before) && subpath.endsWith(after)) {
          const picked = pickTarget(value);
          const middle = subpath.slice(before.length, subpath.length - after.length);
          if (picked !== undefined) target = picked.replaceAll("*", middle);
          break;
        }
      }
    }
    if (target === undefined) {
      throw new Error(`${where}: package.json "exports" has no ES module entry for "${subpath}"`);
    }
  } else if (subpath === ".") {
    const main = [manifest.module, manifest.main].find((v) => typeof v === "string") as
      | string
      | undefined;
    target = main ?? "./index.js";
  } else {
    target = subpath;
  }
  const path = target.replace(/^\.\//, "").replace(/^\//, "");
  for (const candidate of [path, `${path}.js`, `${path}/index.js`]) {
    if (files.has(candidate)) return candidate;
  }
  throw new Error(`${where}: "${subpath}" points at ${target}, which is not in the package`);
}

/** Splits a bare specifier `@s/name/sub` into its package name and subpath (`./sub` or `.`). */
export function splitBareSpecifier(specifier: string): { name: string; subpath: string } {
  const parts = specifier.split("/");
  const count = specifier.startsWith("@") ? 2 : 1;
  const rest = parts.slice(count).join("/");
  return { name: parts.slice(0, count).join("/"), subpath: rest ? `./${rest}` : "." };
}
