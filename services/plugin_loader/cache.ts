/**
 * The content-addressed module cache in the state directory:
 * `<cacheDir>/sha256/<hex>` holds the exact bytes whose SHA-256 is `<hex>`.
 * Every read re-verifies the bytes; a corrupt entry is removed and reported
 * as missing.
 *
 * @module
 */
import { join } from "node:path";
import { integrityHex, sha256Integrity } from "./integrity.ts";

/** What {@linkcode ModuleCache.read} found. */
export type CacheRead =
  | { status: "hit"; bytes: Uint8Array }
  | { status: "miss" }
  | { status: "corrupt"; actual: string };

/** A content-addressed store of verified module bytes. */
export class ModuleCache {
  /** @param dir the cache directory, e.g. `<state_dir>/plugin-cache` */
  constructor(readonly dir: string) {}

  /** Path of the entry for `integrity`. */
  pathOf(integrity: string): string {
    return join(this.dir, "sha256", integrityHex(integrity));
  }

  /** Reads and re-verifies an entry; a corrupt entry is deleted. */
  async read(integrity: string): Promise<CacheRead> {
    const path = this.pathOf(integrity);
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(path);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return { status: "miss" };
      throw error;
    }
    const actual = await sha256Integrity(bytes);
    if (actual === integrity) return { status: "hit", bytes };
    await Deno.remove(path).catch(() => {});
    return { status: "corrupt", actual };
  }

  /** Stores verified bytes (written to a temporary file, then renamed into place). */
  async write(integrity: string, bytes: Uint8Array): Promise<void> {
    const path = this.pathOf(integrity);
    const dir = join(this.dir, "sha256");
    await Deno.mkdir(dir, { recursive: true });
    const temp = `${path}.${crypto.randomUUID()}.tmp`;
    try {
      await Deno.writeFile(temp, bytes);
      await Deno.rename(temp, path);
    } catch (error) {
      await Deno.remove(temp).catch(() => {});
      throw error;
    }
  }
}
