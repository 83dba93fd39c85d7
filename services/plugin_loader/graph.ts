/**
 * Resolving a plugin's module graph with Deno's own parser: `deno info
 * --json` runs as a subprocess (the pinning process needs `--allow-run=deno`;
 * the agent never does). It lists every static import, re-export and
 * literal dynamic import, transitively, with redirects.
 *
 * The subprocess runs with `--no-config --no-lock` (the project's import map
 * and lockfile play no part) and a throw-away `DENO_DIR`, so every module is
 * downloaded afresh.
 *
 * @module
 */
import { dirname, join, relative, sep } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { contentTypeProblem, fetchContentType } from "./content_type.ts";
import { ModuleFetchError } from "./fetch.ts";
import {
  fetchPackageFiles,
  npmModuleUrl,
  packageEntry,
  parseNpmUrl,
  registryPackage,
  splitBareSpecifier,
} from "./npm.ts";
import { MEDIA_TYPE_EXTENSIONS } from "./pin_codec.ts";
import { PLUGIN_URL_SCHEMES } from "../config/plugin_spec.ts";
import type { PinnedNpmPackage } from "./types.ts";
import { isPlainObject } from "../common/objects.ts";

/** Default time budget of one `deno info` run. */
export const DEFAULT_RESOLVE_TIMEOUT_MS = 120_000;

/** One module of a resolved graph. */
export interface GraphModule {
  /** Final URL (after redirects). */
  url: string;
  mediaType: string;
  /** Byte size Deno saw. */
  size: number;
  /** Code dependencies: specifier as written -> final URL (or `node:` builtin). */
  dependencies: { specifier: string; url: string }[];
  /** The bytes, for files of npm packages (taken from their checked tarball). */
  bytes?: Uint8Array;
}

/** A resolved graph: the entry module (final URL) and every module reachable by code imports. */
export interface Graph {
  entry: string;
  modules: GraphModule[];
  /** npm packages the modules come from (`npm:/…` module URLs), sorted by name and version. */
  npm: PinnedNpmPackage[];
}

/** Options of {@linkcode resolveGraph}. */
export interface ResolveOptions {
  /** Scratch directory for the subprocess's DENO_DIR (removed afterwards). */
  workDir: string;
  /** Time budget (default {@linkcode DEFAULT_RESOLVE_TIMEOUT_MS}). */
  timeoutMs?: number;
  /** Do not fetch remote modules (used to check a local copy). */
  noRemote?: boolean;
}

/** The graph could not be resolved or uses something a URL plugin may not. */
export class GraphError extends Error {
  /** @param message what went wrong, naming the module */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "GraphError";
  }
}

/** Deno could not load one module of the graph (`detail` is its message). */
class ModuleLoadError extends GraphError {
  constructor(readonly url: string, readonly where: string, readonly detail: string) {
    super(`${where}: ${detail}`);
  }
}

/**
 * A remote module Deno could not parse: when the server's Content-Type is the
 * cause, the error says so and what to serve (the parser's message would
 * point at valid TypeScript).
 */
async function explainLoadError(error: ModuleLoadError): Promise<GraphError> {
  const scheme = new URL(error.url).protocol;
  if ((scheme !== "http:" && scheme !== "https:") || !/SyntaxError/.test(error.detail)) {
    return error;
  }
  const why = contentTypeProblem(error.url, await fetchContentType(error.url));
  if (why === undefined) return error;
  const first = error.detail.split("\n")[0];
  return new GraphError(`${error.where}: ${why} (Deno: ${first})`, { cause: error });
}

interface InfoDependency {
  specifier?: unknown;
  code?: { specifier?: unknown; error?: unknown };
  npmPackage?: unknown;
}

interface InfoModule {
  kind?: unknown;
  specifier?: unknown;
  mediaType?: unknown;
  size?: unknown;
  error?: unknown;
  dependencies?: InfoDependency[];
}

interface InfoNpmPackage {
  name?: unknown;
  version?: unknown;
  dependencies?: unknown;
}

interface InfoOutput {
  roots: string[];
  modules: InfoModule[];
  redirects: Record<string, string>;
  npmPackages: Record<string, InfoNpmPackage>;
}

/** Runs `deno info --json` on `root`; returns its parsed output. */
async function denoInfo(
  root: string,
  options: ResolveOptions,
  allowImport: readonly string[] = [],
): Promise<InfoOutput> {
  const scratch = join(options.workDir, `deno-info-${crypto.randomUUID()}`);
  await Deno.mkdir(scratch, { recursive: true });
  const timeoutMs = options.timeoutMs ?? DEFAULT_RESOLVE_TIMEOUT_MS;
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    const args = ["info", "--json", "--no-config", "--no-lock"];
    if (options.noRemote) args.push("--no-remote");
    if (allowImport.length > 0) args.push(`--allow-import=${allowImport.join(",")}`);
    args.push(root);
    let output: Deno.CommandOutput;
    try {
      output = await new Deno.Command("deno", {
        args,
        cwd: scratch,
        env: { DENO_DIR: join(scratch, "deno_dir"), NO_COLOR: "1" },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        signal,
      }).output();
    } catch (error) {
      throw new GraphError(`cannot run "deno info": ${(error as Error).message}`, { cause: error });
    }
    if (signal.aborted) {
      throw new GraphError(`"deno info" did not finish within ${timeoutMs} ms`);
    }
    const stderr = new TextDecoder().decode(output.stderr).split("\n")
      .filter((line) => line.trim() !== "" && !/^\s*Download /.test(line));
    if (!output.success) {
      throw new GraphError(
        `"deno info" failed (exit ${output.code}): ${stderr.slice(-5).join(" / ") || "no message"}`,
      );
    }
    let doc: unknown;
    try {
      doc = JSON.parse(new TextDecoder().decode(output.stdout));
    } catch (error) {
      throw new GraphError(`"deno info" printed something that is not JSON`, { cause: error });
    }
    if (
      !isPlainObject(doc) || !Array.isArray(doc.roots) || !Array.isArray(doc.modules) ||
      !isPlainObject(doc.redirects ?? {})
    ) {
      throw new GraphError(`"deno info" printed JSON of an unexpected shape`);
    }
    return {
      roots: doc.roots as string[],
      modules: doc.modules as InfoModule[],
      redirects: (doc.redirects ?? {}) as Record<string, string>,
      npmPackages: (isPlainObject(doc.npmPackages) ? doc.npmPackages : {}) as Record<
        string,
        InfoNpmPackage
      >,
    };
  } finally {
    await Deno.remove(scratch, { recursive: true }).catch(() => {});
  }
}

function followRedirects(url: string, redirects: Record<string, string>): string {
  let current = url;
  for (let i = 0; i < 20 && redirects[current] !== undefined; i++) current = redirects[current];
  return current;
}

/**
 * Resolves the graph of code reachable from `root`. Type-only imports are
 * left out (they never run). `npm:` imports are resolved by Deno to exact
 * versions; each package's tarball is downloaded from the registry, checked
 * against its `sha512`, and the files the plugin loads become modules
 * (`npm:/<name>@<version>/<path>`, with their bytes). Throws
 * {@linkcode GraphError} for a module that cannot be loaded, a
 * `data:` dependency, a CommonJS package, or an unsupported media type.
 */
export async function resolveGraph(root: string, options: ResolveOptions): Promise<Graph> {
  // `deno info` imports only from hosts it is allowed to (by default a few public CDNs).
  // Start with the entry's host and add the host of each code module it turns out to need:
  // type-only imports from other hosts are never fetched.
  const allowed: string[] = [];
  const rootUrl = new URL(root);
  if (rootUrl.protocol !== "file:") allowed.push(importHost(rootUrl));
  for (let round = 0; round < 20; round++) {
    try {
      const info = await denoInfo(root, options, allowed);
      const { graph, npmRoots } = graphFrom(root, info);
      if (npmRoots.size === 0) return graph;
      return await withNpm(graph, npmRoots, info.npmPackages, options);
    } catch (error) {
      if (error instanceof ModuleLoadError) throw await explainLoadError(error);
      if (!(error instanceof ImportHostNeeded) || allowed.includes(error.host)) {
        throw error instanceof ImportHostNeeded ? new GraphError(error.message) : error;
      }
      allowed.push(error.host);
    }
  }
  throw new GraphError(`the graph of ${root} spans more than 20 hosts`);
}

/** `host:port` as `--allow-import` takes it. */
function importHost(url: URL): string {
  return `${url.hostname}:${url.port || (url.protocol === "https:" ? "443" : "80")}`;
}

/** A code module is on a host `deno info` was not yet allowed to import from. */
class ImportHostNeeded extends Error {
  constructor(readonly host: string, message: string) {
    super(message);
  }
}

function graphFrom(
  root: string,
  info: InfoOutput,
): { graph: Graph; npmRoots: Map<string, string> } {
  /** Deno's resolution of each npm import -> where it is imported (for messages). */
  const npmRoots = new Map<string, string>();
  const byUrl = new Map<string, InfoModule>();
  for (const module of info.modules) {
    if (isPlainObject(module) && typeof module.specifier === "string") {
      byUrl.set(module.specifier, module);
    }
  }
  const entry = followRedirects(info.roots[0] ?? root, info.redirects);
  const modules: GraphModule[] = [];
  const seen = new Set<string>([entry]);
  const queue: { url: string; from?: string }[] = [{ url: entry }];
  while (queue.length > 0) {
    const { url, from } = queue.shift()!;
    const where = from ? `module ${url} (imported by ${from})` : `module ${url}`;
    const module = byUrl.get(url);
    if (!module) throw new GraphError(`${where}: missing from Deno's module graph`);
    if (typeof module.error === "string") {
      const denied = /Requires import access to "([^"]+)"/.exec(module.error);
      if (denied) throw new ImportHostNeeded(denied[1], `${where}: ${module.error}`);
      throw new ModuleLoadError(url, where, module.error);
    }
    const scheme = new URL(url).protocol;
    if (!PLUGIN_URL_SCHEMES.includes(scheme)) {
      throw new GraphError(`${where}: only http:, https: and file: modules can be pinned`);
    }
    if (module.kind !== "esm" && module.kind !== "asserted") {
      throw new GraphError(`${where}: unsupported module kind ${JSON.stringify(module.kind)}`);
    }
    const mediaType = String(module.mediaType);
    if (!(mediaType in MEDIA_TYPE_EXTENSIONS)) {
      throw new GraphError(
        `${where}: unsupported media type ${mediaType} (expected ${
          Object.keys(MEDIA_TYPE_EXTENSIONS).join(", ")
        })`,
      );
    }
    const dependencies: GraphModule["dependencies"] = [];
    for (const dependency of module.dependencies ?? []) {
      if (!isPlainObject(dependency.code) || typeof dependency.specifier !== "string") continue;
      const specifier = dependency.specifier;
      if (typeof dependency.code.error === "string") {
        const denied = /Requires import access to "([^"]+)"/.exec(dependency.code.error);
        if (denied) {
          throw new ImportHostNeeded(denied[1], `module ${url}: ${dependency.code.error}`);
        }
        const imported = typeof dependency.code.specifier === "string"
          ? dependency.code.specifier
          : url;
        throw new ModuleLoadError(
          imported,
          `module ${url}: import ${JSON.stringify(specifier)}`,
          dependency.code.error,
        );
      }
      if (typeof dependency.code.specifier !== "string") continue;
      const target = followRedirects(dependency.code.specifier, info.redirects);
      if (dependency.npmPackage !== undefined || specifier.startsWith("npm:")) {
        if (!target.startsWith("npm:/")) {
          throw new GraphError(
            `module ${url}: import ${JSON.stringify(specifier)}: Deno did not resolve it to an ` +
              `exact npm package version (got ${target})`,
          );
        }
        dependencies.push({ specifier, url: target });
        if (!npmRoots.has(target)) {
          npmRoots.set(target, `module ${url}: import ${JSON.stringify(specifier)}`);
        }
        continue;
      }
      if (target.startsWith("node:")) {
        dependencies.push({ specifier, url: target });
        continue;
      }
      dependencies.push({ specifier, url: target });
      if (!seen.has(target)) {
        seen.add(target);
        queue.push({ url: target, from: url });
      }
    }
    modules.push({
      url,
      mediaType,
      size: typeof module.size === "number" ? module.size : -1,
      dependencies,
    });
  }
  modules.sort(compareUrl);
  return { graph: { entry, modules, npm: [] }, npmRoots };
}

function compareUrl(a: { url: string }, b: { url: string }): number {
  return a.url < b.url ? -1 : a.url > b.url ? 1 : 0;
}

/** A package of the npm graph, unpacked in the scratch directory. */
interface UnpackedPackage {
  pin: PinnedNpmPackage;
  /** Dependency name -> `name@version` key of the package it resolves to. */
  dependencies: Map<string, string>;
  files: Map<string, Uint8Array>;
  manifest: Record<string, unknown>;
  /** Directory of the unpacked copy. */
  dir: string;
}

/**
 * Adds the files of npm packages the graph loads: `npmRoots` are Deno's
 * resolutions of the plugin's `npm:` imports (`npm:/<name>@<version>[/<subpath>]`).
 */
async function withNpm(
  graph: Graph,
  npmRoots: ReadonlyMap<string, string>,
  infoPackages: Record<string, InfoNpmPackage>,
  options: ResolveOptions,
): Promise<Graph> {
  const scratch = join(options.workDir, `npm-${crypto.randomUUID()}`);
  try {
    const packages = new Map<string, UnpackedPackage>();
    const keyOf = new Map<string, string>(); // deno info package id -> name@version
    for (const [id, raw] of Object.entries(infoPackages)) {
      if (typeof raw.name !== "string" || typeof raw.version !== "string") {
        throw new GraphError(`"deno info" listed npm package ${id} without name and version`);
      }
      keyOf.set(id, `${raw.name}@${raw.version}`);
    }
    for (const [id, raw] of Object.entries(infoPackages)) {
      const name = raw.name as string;
      const version = raw.version as string;
      const key = keyOf.get(id)!;
      if (packages.has(key)) continue;
      let pin: PinnedNpmPackage;
      let files: Map<string, Uint8Array>;
      try {
        pin = await registryPackage(name, version, { timeoutMs: options.timeoutMs });
        files = await fetchPackageFiles(pin, { timeoutMs: options.timeoutMs });
      } catch (error) {
        const reason = error instanceof ModuleFetchError ? error.message : (error as Error).message;
        throw new GraphError(`npm package ${key}: ${reason}`, { cause: error });
      }
      const manifestBytes = files.get("package.json");
      let manifest: Record<string, unknown>;
      try {
        manifest = JSON.parse(new TextDecoder().decode(manifestBytes));
      } catch {
        throw new GraphError(`npm package ${key}: its tarball has no readable package.json`);
      }
      const dependencies = new Map<string, string>();
      for (const dep of Array.isArray(raw.dependencies) ? raw.dependencies : []) {
        const depKey = keyOf.get(String(dep));
        if (depKey) dependencies.set(depKey.slice(0, depKey.lastIndexOf("@")), depKey);
      }
      const dir = join(scratch, ...key.split("/"));
      for (const [path, bytes] of files) {
        const file = join(dir, ...path.split("/"));
        await Deno.mkdir(dirname(file), { recursive: true });
        await Deno.writeFile(file, bytes);
      }
      packages.set(key, { pin, dependencies, files, manifest, dir });
    }
    const modules = new Map<string, GraphModule>();
    const entryUrl = (key: string, subpath: string, from: string): string => {
      const pkg = packages.get(key);
      if (!pkg) throw new GraphError(`${from}: npm package ${key} is not in Deno's npm graph`);
      let path: string;
      try {
        path = packageEntry(pkg.manifest, subpath, pkg.files, `npm package ${key}`);
      } catch (error) {
        throw new GraphError(`${from}: ${(error as Error).message}`);
      }
      if (pkg.manifest.type !== "module" && !path.endsWith(".mjs")) {
        throw new GraphError(
          `${from}: npm package ${key} is CommonJS (its package.json has no "type": "module"); ` +
            `only ES module packages can be pinned`,
        );
      }
      return npmModuleUrl(pkg.pin.name, pkg.pin.version, path);
    };
    const pending: string[] = [];
    const rootUrls = new Map<string, string>();
    for (const [root, where] of npmRoots) {
      const parsed = parseNpmUrl(root);
      if (!parsed) throw new GraphError(`cannot read the npm resolution ${root}`);
      const url = entryUrl(
        `${parsed.name}@${parsed.version}`,
        parsed.path ? `./${parsed.path}` : ".",
        `${where} (${root})`,
      );
      rootUrls.set(root, url);
      pending.push(url);
    }
    const fileUrlOf = (url: string): string => {
      const parsed = parseNpmUrl(url)!;
      const pkg = packages.get(`${parsed.name}@${parsed.version}`)!;
      return pathToFileURL(join(pkg.dir, ...parsed.path.split("/"))).href;
    };
    const npmUrlOf = (fileUrl: string): string | undefined => {
      if (!fileUrl.startsWith("file:")) return undefined;
      const rel = relative(scratch, fileURLToPath(fileUrl)).split(sep);
      const count = rel[0]?.startsWith("@") ? 2 : 1;
      const pkg = packages.get(rel.slice(0, count).join("/"));
      if (!pkg || rel.length <= count || rel[0] === "..") return undefined;
      return npmModuleUrl(pkg.pin.name, pkg.pin.version, rel.slice(count).join("/"));
    };
    while (pending.length > 0) {
      const start = pending.shift()!;
      if (modules.has(start)) continue;
      const info = await denoInfo(fileUrlOf(start), { ...options, noRemote: true });
      for (const module of info.modules) {
        if (typeof module.specifier !== "string") continue;
        const url = npmUrlOf(module.specifier);
        if (!url) throw new GraphError(`npm module ${start} loads ${module.specifier}`);
        if (modules.has(url)) continue;
        const parsed = parseNpmUrl(url)!;
        const key = `${parsed.name}@${parsed.version}`;
        const pkg = packages.get(key)!;
        if (typeof module.error === "string") {
          throw new GraphError(`npm module ${url}: ${module.error.split(scratch).join("")}`);
        }
        const mediaType = String(module.mediaType);
        if (
          (module.kind !== "esm" && module.kind !== "asserted") ||
          !(mediaType in MEDIA_TYPE_EXTENSIONS) ||
          (mediaType === "JavaScript" && pkg.manifest.type !== "module")
        ) {
          throw new GraphError(
            `npm module ${url}: not an ES module (${mediaType}); only ES module packages can be ` +
              `pinned`,
          );
        }
        const dependencies: GraphModule["dependencies"] = [];
        for (const dependency of module.dependencies ?? []) {
          if (!isPlainObject(dependency.code) || typeof dependency.specifier !== "string") continue;
          const specifier = dependency.specifier;
          const code = dependency.code;
          if (typeof code.specifier === "string" && code.specifier.startsWith("node:")) {
            dependencies.push({ specifier, url: code.specifier });
          } else if (typeof code.specifier === "string" && npmUrlOf(code.specifier)) {
            dependencies.push({ specifier, url: npmUrlOf(code.specifier)! });
          } else if (/^[@a-z0-9]/i.test(specifier) && !specifier.includes(":")) {
            const { name, subpath } = splitBareSpecifier(specifier);
            const depKey = name === parsed.name ? key : pkg.dependencies.get(name);
            if (!depKey) {
              throw new GraphError(
                `npm module ${url}: import ${JSON.stringify(specifier)}: ${name} is not a ` +
                  `dependency of ${key} (Node built-ins must be imported as "node:${name}")`,
              );
            }
            const target = entryUrl(depKey, subpath, `npm module ${url}`);
            dependencies.push({ specifier, url: target });
            pending.push(target);
          } else {
            throw new GraphError(
              `npm module ${url}: import ${JSON.stringify(specifier)} cannot be pinned` +
                (typeof code.error === "string" ? ` (${code.error})` : ""),
            );
          }
        }
        const bytes = pkg.files.get(parsed.path);
        if (!bytes) throw new GraphError(`npm module ${url} is not in its package's tarball`);
        modules.set(url, { url, mediaType, size: bytes.length, dependencies, bytes });
      }
    }
    const used = new Set([...modules.keys()].map((u) => {
      const p = parseNpmUrl(u)!;
      return `${p.name}@${p.version}`;
    }));
    return {
      entry: graph.entry,
      modules: [
        ...graph.modules.map((m) => ({
          ...m,
          dependencies: m.dependencies.map((d) => ({ ...d, url: rootUrls.get(d.url) ?? d.url })),
        })),
        ...modules.values(),
      ].sort(compareUrl),
      npm: [...packages.entries()].filter(([key]) => used.has(key)).map(([, p]) => p.pin)
        .sort((a, b) =>
          compareUrl({ url: `${a.name}@${a.version}` }, { url: `${b.name}@${b.version}` })
        ),
    };
  } finally {
    await Deno.remove(scratch, { recursive: true }).catch(() => {});
  }
}

/**
 * Checks that the local copy written under `dir` (entry file `entryFile`)
 * loads exactly the expected graph with no remote module: `expected` maps each
 * local relative path to its module's code dependency paths.
 */
export async function checkLocalGraph(
  dir: string,
  entryFile: URL,
  expected: ReadonlyMap<string, ReadonlySet<string>>,
  options: ResolveOptions,
): Promise<void> {
  const info = await denoInfo(entryFile.href, { ...options, noRemote: true });
  const byUrl = new Map<string, InfoModule>();
  for (const module of info.modules) {
    if (isPlainObject(module) && typeof module.specifier === "string") {
      byUrl.set(module.specifier, module);
    }
  }
  const toLocal = (url: string): string | undefined => {
    if (!url.startsWith("file:")) return undefined;
    const rel = relative(dir, fileURLToPath(url));
    if (rel.startsWith("..") || rel === "") return undefined;
    return rel.split(sep).join("/");
  };
  const seen = new Set<string>();
  const queue = [entryFile.href];
  while (queue.length > 0) {
    const url = queue.shift()!;
    const path = toLocal(url);
    if (path === undefined || !expected.has(path)) {
      throw new GraphError(`the local copy loads ${url}, which is not a pinned module`);
    }
    if (seen.has(path)) continue;
    seen.add(path);
    const module = byUrl.get(url);
    if (!module || typeof module.error === "string") {
      throw new GraphError(
        `the local copy of ${path} does not load: ${module?.error ?? "missing"}`,
      );
    }
    const targets = new Set<string>();
    for (const dependency of module.dependencies ?? []) {
      if (!isPlainObject(dependency.code) || typeof dependency.code.specifier !== "string") {
        continue;
      }
      const target = dependency.code.specifier;
      if (target.startsWith("node:")) continue;
      const targetPath = toLocal(target);
      if (targetPath === undefined) {
        throw new GraphError(
          `an import of ${JSON.stringify(dependency.specifier)} in ${path} still points at ` +
            `${target}; write it as a plain string literal after from/import`,
        );
      }
      targets.add(targetPath);
      queue.push(target);
    }
    const want = expected.get(path)!;
    const same = targets.size === want.size && [...want].every((t) => targets.has(t));
    if (!same) {
      throw new GraphError(
        `the local copy of ${path} imports [${[...targets].sort().join(", ")}] instead of ` +
          `[${[...want].sort().join(", ")}]`,
      );
    }
  }
  if (seen.size !== expected.size) {
    const missing = [...expected.keys()].filter((p) => !seen.has(p));
    throw new GraphError(`the local copy does not reach ${missing.join(", ")}`);
  }
}
