/**
 * Where the verified modules of a pinned graph are written so that Deno can
 * load them from local files, and the rewriting of import specifiers that
 * would not resolve to the verified copies.
 *
 * Each module URL maps to a relative path that mirrors it
 * (`https://h:8443/a/spike@1.2.0/mod.ts` -> `https/h_8443/a/spike@1.2.0/mod.ts`)
 * so that relative imports (`./dep.ts`) resolve naturally. Specifiers that
 * would not (absolute URLs, `/root/relative.ts`, redirected modules, files
 * whose extension does not match their media type) are rewritten to the
 * relative path of the verified copy. The rewriting is deterministic: it is
 * checked once against Deno's own module graph when pinning.
 *
 * @module
 */
import { fileURLToPath, pathToFileURL } from "node:url";
import { MEDIA_TYPE_EXTENSIONS } from "./pin_codec.ts";
import type { PinnedModule } from "./types.ts";

/** A virtual root used to reason about file URL resolution (never touched on disk). */
const VIRTUAL_ROOT = "/__plugin_graph__/";

function fnv1a(text: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash.toString(16).padStart(8, "0");
}

function safeSegment(text: string): string {
  return text.replace(/[^A-Za-z0-9._-]/g, "_");
}

/**
 * The relative path (with `/` separators) of a module's local copy.
 * Throws a TypeError for URLs whose path cannot be mirrored safely.
 */
export function localPathOf(url: string, mediaType: string): string {
  const parsed = new URL(url);
  const scheme = parsed.protocol.replace(/:$/, "");
  const host = scheme === "file"
    ? "local"
    : safeSegment(parsed.port ? `${parsed.hostname}_${parsed.port}` : parsed.hostname);
  const raw = parsed.pathname.split("/").slice(1);
  if (raw.length === 0 || raw[raw.length - 1] === "") raw[raw.length - 1] = "index";
  const segments = raw.map((segment) => {
    let decoded: string;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      throw new TypeError(`module ${url}: its path has an invalid %-escape`);
    }
    if (
      decoded === "" || decoded === "." || decoded === ".." || /[/\\\0]/.test(decoded) ||
      decoded.length > 200
    ) {
      throw new TypeError(
        `module ${url}: path segment ${JSON.stringify(segment)} cannot be stored`,
      );
    }
    return decoded;
  });
  let last = segments[segments.length - 1];
  if (parsed.search) last += `.q${fnv1a(parsed.search)}`;
  const extension = MEDIA_TYPE_EXTENSIONS[mediaType];
  if (extension === undefined) {
    throw new TypeError(`module ${url}: unsupported media type ${mediaType}`);
  }
  if (!last.endsWith(extension)) last += extension;
  segments[segments.length - 1] = last;
  return [scheme, host, ...segments].join("/");
}

/** Module URL -> local relative path for a whole graph; throws when two modules collide. */
export function planLayout(modules: readonly PinnedModule[]): Map<string, string> {
  const layout = new Map<string, string>();
  const owners = new Map<string, string>();
  for (const module of modules) {
    const path = localPathOf(module.url, module.media_type);
    const other = owners.get(path);
    if (other !== undefined && other !== module.url) {
      throw new TypeError(`modules ${other} and ${module.url} would share the local file ${path}`);
    }
    owners.set(path, module.url);
    layout.set(module.url, path);
  }
  return layout;
}

function virtualUrl(relPath: string): URL {
  return pathToFileURL(VIRTUAL_ROOT + relPath);
}

/** True when `specifier`, written in the module at `fromPath`, already loads `toPath`. */
function resolvesNaturally(specifier: string, fromPath: string, toPath: string): boolean {
  let resolved: URL;
  try {
    resolved = new URL(specifier, virtualUrl(fromPath));
  } catch {
    return false;
  }
  if (resolved.protocol !== "file:" || resolved.search || resolved.hash) return false;
  try {
    return fileURLToPath(resolved) === VIRTUAL_ROOT + toPath;
  } catch {
    return false;
  }
}

/** A relative specifier from the module at `fromPath` to the file at `toPath`. */
function relativeSpecifier(fromPath: string, toPath: string): string {
  const from = virtualUrl(fromPath).pathname.split("/");
  const to = virtualUrl(toPath).pathname.split("/");
  from.pop();
  let common = 0;
  while (common < from.length && common < to.length - 1 && from[common] === to[common]) common++;
  const up = from.length - common;
  const rest = to.slice(common).join("/");
  const specifier = (up === 0 ? "./" : "../".repeat(up)) + rest;
  const quoted = specifier.replace(/'/g, "%27").replace(/"/g, "%22").replace(/`/g, "%60");
  if (!resolvesNaturally(quoted, fromPath, toPath)) {
    throw new TypeError(`cannot express a relative import from ${fromPath} to ${toPath}`);
  }
  return quoted;
}

/**
 * The specifiers of `module` that must be rewritten, with their replacement:
 * specifier as written -> relative specifier of the verified local copy.
 */
export function planRewrites(
  module: PinnedModule,
  layout: ReadonlyMap<string, string>,
): Map<string, string> {
  const rewrites = new Map<string, string>();
  const fromPath = layout.get(module.url);
  if (fromPath === undefined) throw new TypeError(`module ${module.url} is not in the layout`);
  for (const dependency of module.dependencies) {
    if (dependency.url.startsWith("node:")) continue;
    const toPath = layout.get(dependency.url);
    if (toPath === undefined) {
      throw new TypeError(`module ${module.url}: dependency ${dependency.url} is not pinned`);
    }
    if (resolvesNaturally(dependency.specifier, fromPath, toPath)) continue;
    rewrites.set(dependency.specifier, relativeSpecifier(fromPath, toPath));
  }
  return rewrites;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * Replaces every import of the specifiers in `rewrites` (`from "x"`,
 * `import "x"`, `import("x")`, either quote) in `source`. Returns the new text
 * and, per specifier, how many places were rewritten.
 */
export function applyRewrites(
  source: string,
  rewrites: ReadonlyMap<string, string>,
): { text: string; counts: Map<string, number> } {
  const counts = new Map<string, number>();
  const edits: { start: number; end: number; text: string }[] = [];
  for (const [specifier, replacement] of rewrites) {
    const pattern = new RegExp(
      `(?<![\\w$.])(?:from|import)\\s*\\(?\\s*(["'])${escapeRegExp(specifier)}\\1`,
      "g",
    );
    let count = 0;
    for (const match of source.matchAll(pattern)) {
      const quoteAt = match.index! + match[0].length - specifier.length - 2;
      edits.push({ start: quoteAt + 1, end: quoteAt + 1 + specifier.length, text: replacement });
      count++;
    }
    counts.set(specifier, count);
  }
  edits.sort((a, b) => a.start - b.start);
  let text = "";
  let at = 0;
  for (const edit of edits) {
    if (edit.start < at) continue;
    text += source.slice(at, edit.start) + edit.text;
    at = edit.end;
  }
  text += source.slice(at);
  return { text, counts };
}

/**
 * The bytes to write for `module`: its verified bytes, or, when some of its
 * specifiers must be rewritten, the rewritten UTF-8 text. Throws when a
 * specifier to rewrite is not found in the source.
 */
export function materializeModule(
  module: PinnedModule,
  bytes: Uint8Array,
  layout: ReadonlyMap<string, string>,
): Uint8Array {
  const rewrites = planRewrites(module, layout);
  if (rewrites.size === 0) return bytes;
  let source: string;
  try {
    source = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new TypeError(`module ${module.url} is not valid UTF-8 text`);
  }
  const { text, counts } = applyRewrites(source, rewrites);
  for (const [specifier, count] of counts) {
    if (count === 0) {
      throw new TypeError(
        `module ${module.url}: cannot find the import of ${JSON.stringify(specifier)} to point ` +
          `it at the verified copy (write it as a plain string after from/import)`,
      );
    }
  }
  return new TextEncoder().encode(text);
}
