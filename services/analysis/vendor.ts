/**
 * The dashboard's chart library, uPlot, comes from the npm package pinned in
 * deno.json (`npm:uplot`); its browser files are copied into
 * `services/analysis/web/vendor/` so that the dashboard is served entirely
 * from the repository (no CDN, no npm cache needed where it runs).
 * `deno task vendor` copies them again after the pin changes; a test checks
 * that the copies are the pinned package's files, byte for byte.
 *
 * @module
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { DASHBOARD_WEB_DIR } from "./permissions.ts";

/** Files copied: package file (relative to its `dist/`) -> file in the vendor folder. */
export const VENDORED_FILES: Readonly<Record<string, string>> = Object.freeze({
  "uPlot.iife.min.js": "uPlot.iife.min.js",
  "uPlot.min.css": "uPlot.min.css",
  "../LICENSE": "uPlot.LICENSE",
});

/** The vendor folder. */
export const VENDOR_DIR: string = join(DASHBOARD_WEB_DIR, "vendor");

/** The `dist/` folder of the pinned uplot package in Deno's npm cache (loading it first). */
export async function uplotDistDir(): Promise<string> {
  // Loading the package makes Deno fetch it into its cache when missing.
  await import("uplot");
  return dirname(fileURLToPath(import.meta.resolve("uplot")));
}

if (import.meta.main) {
  const dist = await uplotDistDir();
  for (const [from, to] of Object.entries(VENDORED_FILES)) {
    await Deno.copyFile(join(dist, from), join(VENDOR_DIR, to));
    console.log(`copied ${join(dist, from)} -> ${join(VENDOR_DIR, to)}`);
  }
}
