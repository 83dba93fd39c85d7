/**
 * Getting the verified bytes of a pinned graph (from the content-addressed
 * cache, re-verified, or fetched) and writing the runnable local copy. No
 * byte of a plugin is written where it could run before every module of its
 * graph has matched its pinned hash.
 *
 * @module
 */
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import type { ModuleCache } from "./cache.ts";
import { PluginError, PluginFetchError, PluginIntegrityError } from "./errors.ts";
import { fetchModule, type FetchOptions, ModuleFetchError } from "./fetch.ts";
import { graphIntegrity, integrityHex, sha256Integrity } from "./integrity.ts";
import { materializeModule, planLayout } from "./layout.ts";
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
  const digest = await graphIntegrity(pin.modules);
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
        bytes = await fetchModule(module.url, options);
      } catch (error) {
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
 * Writes the runnable copy of a verified graph under `runRoot` (one
 * directory per graph digest; files are written to a temporary name and
 * renamed, so concurrent writers of the same graph do not clash).
 * @returns the directory of the copy, the file URL of its entry module, and
 *   the file URL of the Worker bootstrap (see `worker_host.ts`)
 */
export async function materializeGraph(
  pin: PluginPin,
  verified: ReadonlyMap<string, Uint8Array>,
  runRoot: string,
): Promise<{ dir: string; entry: URL; bootstrap: URL }> {
  const layout = planLayout(pin.modules);
  const dir = join(runRoot, integrityHex(pin.integrity));
  const files: { path: string; bytes: Uint8Array }[] = [];
  for (const module of pin.modules) {
    const bytes = verified.get(module.url);
    if (!bytes) throw new TypeError(`module ${module.url} was not verified`);
    let out: Uint8Array;
    try {
      out = materializeModule(module, bytes, layout);
    } catch (error) {
      throw new PluginError(
        pin.name,
        `plugin "${pin.name}" (${pin.url}): ${(error as Error).message}`,
        { cause: error },
      );
    }
    files.push({ path: join(dir, ...layout.get(module.url)!.split("/")), bytes: out });
  }
  const entryPath = layout.get(pin.entry)!;
  const hostUrl = new URL("./worker_host.ts", import.meta.url).href;
  const bootstrap = join(
    dir,
    `__host_${integrityHex(await sha256Integrity(hostUrl)).slice(0, 16)}__.ts`,
  );
  files.push({
    path: bootstrap,
    bytes: new TextEncoder().encode(
      `// Generated by the plugin loader: starts the host, then the verified plugin.\n` +
        `import { startHost } from ${JSON.stringify(hostUrl)};\n` +
        `startHost(() => import(${JSON.stringify(`./${entryPath}`)}));\n`,
    ),
  });
  for (const file of files) {
    await Deno.mkdir(dirname(file.path), { recursive: true });
    const temp = `${file.path}.${crypto.randomUUID()}.tmp`;
    try {
      await Deno.writeFile(temp, file.bytes);
      await Deno.rename(temp, file.path);
    } catch (error) {
      await Deno.remove(temp).catch(() => {});
      throw error;
    }
  }
  return {
    dir,
    entry: pathToFileURL(join(dir, ...entryPath.split("/"))),
    bootstrap: pathToFileURL(bootstrap),
  };
}
