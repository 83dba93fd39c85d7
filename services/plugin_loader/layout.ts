/**
 * Pointing every import of a pinned graph at the verified copies.
 *
 * The agent runs a plugin from blob: URLs made of the verified bytes, with
 * every code import (static, re-export, literal dynamic) rewritten to the
 * blob: URL of the module it loads. When pinning, the same rewriting is
 * applied to a copy in local files, where each module URL maps to a path
 * that mirrors it (`https://h:8443/a/spike@1.2.0/mod.ts` ->
 * `https/h_8443/a/spike@1.2.0/mod.ts`), and Deno's own module graph of that
 * copy must be exactly the pinned graph with nothing remote: the rewriting
 * is deterministic, so that check covers the blob: copy too.
 *
 * @module
 */
import { type ImportSpecifier, parse as parseModule } from "es-module-lexer/js";
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
    : scheme === "npm"
    ? "registry"
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

/**
 * A relative specifier from the local copy at `fromPath` to the one at
 * `toPath` (used for the file copy checked when pinning).
 */
export function relativeSpecifier(fromPath: string, toPath: string): string {
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
 * Every code import of `module` with its replacement: specifier as written ->
 * `replacementFor(url of the pinned module it loads)`. `node:` builtins stay.
 */
export function planRewrites(
  module: PinnedModule,
  replacementFor: (url: string) => string,
): Map<string, string> {
  const rewrites = new Map<string, string>();
  for (const dependency of module.dependencies) {
    if (dependency.url.startsWith("node:")) continue;
    rewrites.set(dependency.specifier, replacementFor(dependency.url));
  }
  return rewrites;
}

/**
 * The modules of a graph in an order where every module comes after the
 * modules it imports. Throws a TypeError naming a cycle (cycles cannot be
 * expressed with blob: URLs).
 */
export function dependencyOrder(modules: readonly PinnedModule[], entry: string): PinnedModule[] {
  const byUrl = new Map(modules.map((m) => [m.url, m]));
  const order: PinnedModule[] = [];
  const state = new Map<string, "visiting" | "done">();
  const visit = (url: string, path: string[]) => {
    const seen = state.get(url);
    if (seen === "done") return;
    if (seen === "visiting") {
      const cycle = [...path.slice(path.indexOf(url)), url];
      throw new TypeError(`circular imports are not supported: ${cycle.join(" -> ")}`);
    }
    const module = byUrl.get(url);
    if (!module) throw new TypeError(`module ${url} is not pinned`);
    state.set(url, "visiting");
    for (const dependency of module.dependencies) {
      if (!dependency.url.startsWith("node:")) visit(dependency.url, [...path, url]);
    }
    state.set(url, "done");
    order.push(module);
  };
  visit(entry, []);
  for (const module of modules) visit(module.url, []);
  return order;
}

// es-module-lexer finds the imports the way an engine does: strings, comments, template
// literals and regular expressions are skipped; TypeScript's own syntax is passed over.
// Its JavaScript build: the agent runs V8 in lite mode, which has no WebAssembly.

/**
 * Replaces every import of the specifiers in `rewrites` (`import ... from
 * "x"`, `export ... from "x"`, `import "x"`, `import("x")` with a string
 * literal) in `source`. Text that only looks like an import (inside a string,
 * a comment, a template) is left alone. Returns the new text and, per
 * specifier, how many places were rewritten.
 *
 * @example
 * ```ts
 * import { applyRewrites } from "./layout.ts";
 *
 * const source = 'import { a } from "./a.ts"; // from "./a.ts"\nconst s = "import(\'./a.ts\')";';
 * const { text, counts } = applyRewrites(source, new Map([["./a.ts", "blob:1"]]));
 * // text: 'import { a } from "blob:1"; // from "./a.ts"\nconst s = "import(\'./a.ts\')";'
 * // counts: Map { "./a.ts" => 1 }
 * ```
 */
export function applyRewrites(
  source: string,
  rewrites: ReadonlyMap<string, string>,
): { text: string; counts: Map<string, number> } {
  const counts = new Map<string, number>([...rewrites.keys()].map((s) => [s, 0]));
  const edits: { start: number; end: number; text: string }[] = [];
  let imports: readonly ImportSpecifier[];
  try {
    [imports] = parseModule(source);
  } catch (error) {
    throw new TypeError(`cannot read the imports: ${(error as Error).message}`);
  }
  for (const found of imports) {
    if (found.n === undefined || !rewrites.has(found.n)) continue;
    let start = found.s;
    let end = found.e;
    if (found.d >= 0) {
      // import("x"): the range is the argument with its quotes; only a plain literal counts.
      const literal = source.slice(start, end);
      const quote = literal[0];
      if (!`"'`.includes(quote) || literal[literal.length - 1] !== quote) continue;
      start++;
      end--;
    }
    // The specifier as written (an escape sequence would differ from its value).
    if (source.slice(start, end) !== found.n) continue;
    edits.push({ start, end, text: rewrites.get(found.n)! });
    counts.set(found.n, counts.get(found.n)! + 1);
  }
  edits.sort((a, b) => a.start - b.start);
  let text = "";
  let at = 0;
  for (const edit of edits) {
    text += source.slice(at, edit.start) + edit.text;
    at = edit.end;
  }
  text += source.slice(at);
  return { text, counts };
}

/**
 * The bytes of `module` with every code import pointed at
 * `replacementFor(target URL)`: its verified bytes when it imports nothing,
 * else the rewritten UTF-8 text. Throws when an import cannot be found in
 * the source.
 */
export function materializeModule(
  module: PinnedModule,
  bytes: Uint8Array,
  replacementFor: (url: string) => string,
): Uint8Array {
  const rewrites = planRewrites(module, replacementFor);
  if (rewrites.size === 0) return bytes;
  let source: string;
  try {
    source = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new TypeError(`module ${module.url} is not valid UTF-8 text`);
  }
  let rewritten: { text: string; counts: Map<string, number> };
  try {
    rewritten = applyRewrites(source, rewrites);
  } catch (error) {
    throw new TypeError(`module ${module.url}: ${(error as Error).message}`);
  }
  const { text, counts } = rewritten;
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
