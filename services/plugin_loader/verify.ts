/**
 * Getting the verified bytes of a pinned graph (from the content-addressed
 * cache, re-verified, or fetched) and turning them into a runnable copy. No
 * runnable copy exists before every module of the graph matched its pinned
 * hash.
 *
 * @module
 */
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import type { ModuleCache } from "./cache.ts";
import { PluginError, PluginFetchError, PluginIntegrityError } from "./errors.ts";
import { fetchModule, type FetchOptions, ModuleFetchError } from "./fetch.ts";
import { graphIntegrity, integrityHex, sha256Integrity } from "./integrity.ts";
import { dependencyOrder, materializeModule, planLayout, relativeSpecifier } from "./layout.ts";
import { fetchPackageFiles, NpmIntegrityError, parseNpmUrl } from "./npm.ts";
import { MEDIA_TYPE_CONTENT_TYPES } from "./pin_codec.ts";
import { hostSource } from "./worker_host.ts";
import type { PluginPin } from "./types.ts";

/** Options of {@linkcode collectVerified}. */
export interface VerifyOptions extends FetchOptions {
  /** Cache of verified modules (read and re-verified first, filled after fetching). */
  cache?: ModuleCache;
  /** Skip the cache and fetch every module (e.g. to check what is published now). */
  refetch?: boolean;
  /** Receives notes such as a corrupt cache entry. */
  warn?: (message: string) => void;
  /** How many modules are fetched at once (default 4). */
  concurrency?: number;
}

/** Checks that the pin's graph digest matches its module list. */
export async function checkGraphDigest(pin: PluginPin): Promise<void> {
  const digest = await graphIntegrity(pin.modules, pin.npm ?? []);
  if (digest !== pin.integrity) {
    throw new PluginError(
      pin.name,
      `plugin "${pin.name}" (${pin.url}): the pin's module list does not match its graph digest ` +
        `(${pin.integrity}, computed ${digest}); the pin was edited or damaged, re-pin it`,
    );
  }
}

/**
 * The verified bytes of every module of `pin`, by module URL. Throws
 * {@linkcode PluginIntegrityError} or {@linkcode PluginFetchError} naming the
 * plugin, its URL and the module, before returning anything.
 */
export async function collectVerified(
  pin: PluginPin,
  options: VerifyOptions = {},
): Promise<Map<string, Uint8Array>> {
  await checkGraphDigest(pin);
  const result = new Map<string, Uint8Array>();
  // Files of npm packages come from their tarball, checked against the pinned sha512 first.
  const tarballs = new Map<string, Promise<Map<string, Uint8Array>>>();
  const npmFile = async (url: string): Promise<Uint8Array> => {
    const parsed = parseNpmUrl(url);
    const pkg = parsed &&
      pin.npm?.find((p) => p.name === parsed.name && p.version === parsed.version);
    if (!parsed || !pkg) {
      throw new PluginError(pin.name, `plugin "${pin.name}": module ${url} has no pinned package`);
    }
    let files = tarballs.get(pkg.tarball);
    if (!files) {
      files = fetchPackageFiles(pkg, options);
      tarballs.set(pkg.tarball, files);
    }
    try {
      const bytes = (await files).get(parsed.path);
      if (!bytes) throw new ModuleFetchError(url, `not in the tarball ${pkg.tarball}`);
      return bytes;
    } catch (error) {
      if (error instanceof NpmIntegrityError) {
        throw new PluginIntegrityError(
          pin.name,
          pin.url,
          `${url} (tarball ${pkg.tarball})`,
          error.expected,
          error.actual,
        );
      }
      if (error instanceof ModuleFetchError && error.url === pkg.tarball) {
        throw new ModuleFetchError(url, `tarball ${pkg.tarball}: ${error.reason}`, {
          cause: error,
        });
      }
      if (error instanceof ModuleFetchError) throw error;
      throw new ModuleFetchError(url, (error as Error).message, { cause: error });
    }
  };
  const queue = [...pin.modules];
  const worker = async () => {
    for (let module = queue.shift(); module; module = queue.shift()) {
      if (options.cache && !options.refetch) {
        const cached = await options.cache.read(module.integrity);
        if (cached.status === "hit") {
          result.set(module.url, cached.bytes);
          continue;
        }
        if (cached.status === "corrupt") {
          options.warn?.(
            `plugin "${pin.name}": cached copy of ${module.url} was corrupt (${cached.actual}, ` +
              `pinned ${module.integrity}); removed it and fetching the module again`,
          );
        }
      }
      let bytes: Uint8Array;
      try {
        bytes = module.url.startsWith("npm:")
          ? await npmFile(module.url)
          : await fetchModule(module.url, options);
      } catch (error) {
        if (error instanceof PluginError) throw error;
        const reason = error instanceof ModuleFetchError ? error.reason : (error as Error).message;
        throw new PluginFetchError(pin.name, pin.url, module.url, reason, { cause: error });
      }
      const actual = await sha256Integrity(bytes);
      if (actual !== module.integrity) {
        throw new PluginIntegrityError(pin.name, pin.url, module.url, module.integrity, actual);
      }
      await options.cache?.write(module.integrity, bytes);
      result.set(module.url, bytes);
    }
  };
  const concurrency = Math.max(1, Math.min(options.concurrency ?? 4, pin.modules.length));
  await Promise.all(Array.from({ length: concurrency }, worker));
  return result;
}

/**
 * Writes a copy of a verified graph in local files under `root` (one
 * directory per graph digest), every import pointed at the copy of the
 * module it loads. Pinning checks this copy with Deno's module graph.
 * @returns the directory of the copy and the file URL of its entry module
 */
export async function materializeGraph(
  pin: PluginPin,
  verified: ReadonlyMap<string, Uint8Array>,
  root: string,
): Promise<{ dir: string; entry: URL }> {
  const layout = planLayout(pin.modules);
  const dir = join(root, integrityHex(pin.integrity));
  for (const module of pin.modules) {
    const fromPath = layout.get(module.url)!;
    const bytes = materializeModule(
      module,
      verifiedBytes(pin, verified, module.url),
      (url) => relativeSpecifier(fromPath, layout.get(url)!),
    );
    const path = join(dir, ...fromPath.split("/"));
    await Deno.mkdir(dirname(path), { recursive: true });
    await Deno.writeFile(path, bytes);
  }
  return { dir, entry: pathToFileURL(join(dir, ...layout.get(pin.entry)!.split("/"))) };
}

function verifiedBytes(
  pin: PluginPin,
  verified: ReadonlyMap<string, Uint8Array>,
  url: string,
): Uint8Array {
  const bytes = verified.get(url);
  if (!bytes) {
    throw new PluginError(pin.name, `plugin "${pin.name}": module ${url} was not verified`);
  }
  return bytes;
}

/** The in-memory runnable copy of a plugin; see {@linkcode blobGraph}. */
export interface BlobGraph {
  /** blob: URL of the Worker's main module (the host, then the plugin). */
  bootstrap: string;
  /** blob: URL of the plugin's entry module. */
  entry: string;
  /** Releases every blob: URL. */
  revoke(): void;
}

/**
 * Turns a verified graph into blob: URLs, every import pointed at the blob:
 * URL of the module it loads, plus a bootstrap that runs the host of
 * `worker_host.ts`, which imports the plugin. Nothing touches the disk, the
 * lockfile plays no part, and neither the Worker nor the agent needs read
 * permission to load this code.
 */
export function blobGraph(pin: PluginPin, verified: ReadonlyMap<string, Uint8Array>): BlobGraph {
  const urls = new Map<string, string>();
  const revoke = () => {
    for (const url of urls.values()) URL.revokeObjectURL(url);
  };
  try {
    for (const module of dependencyOrder(pin.modules, pin.entry)) {
      const bytes = materializeModule(
        module,
        verifiedBytes(pin, verified, module.url),
        (url) => urls.get(url)!,
      );
      const type = MEDIA_TYPE_CONTENT_TYPES[module.media_type] ?? "text/javascript";
      urls.set(module.url, URL.createObjectURL(new Blob([bytes as BlobPart], { type })));
    }
    const entry = urls.get(pin.entry)!;
    const bootstrap = URL.createObjectURL(
      new Blob([hostSource(entry, `${JSON.stringify(pin.name)} ${pin.version}`)], {
        type: "text/javascript",
      }),
    );
    urls.set("", bootstrap);
    return { bootstrap, entry, revoke };
  } catch (error) {
    revoke();
    if (error instanceof PluginError) throw error;
    throw new PluginError(
      pin.name,
      `plugin "${pin.name}" (${pin.url}): ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
}
