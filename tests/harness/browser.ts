/**
 * Headless Chromium (Debian's `chromium`) driven by playwright-core, for
 * tests of web pages. Test support, not product code.
 *
 * @module
 */
import type { Browser } from "playwright-core";
import { requireComponents } from "./provision.ts";

/** The flags every test browser starts with. */
export const CHROMIUM_ARGS: readonly string[] = Object.freeze([
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
]);

/**
 * Launches headless Chromium; fails (naming the install command) when it
 * is missing. playwright-core probes for WSL when it is loaded by reading
 * /proc files Deno only grants with --allow-all; `__IS_WSL_TEST__` makes
 * that probe lazy (it is never needed on Linux with a given executable).
 */
export async function launchChromium(): Promise<Browser> {
  const { chromium: executablePath } = requireComponents(["chromium"]);
  Deno.env.set("__IS_WSL_TEST__", "1");
  const { chromium } = await import("playwright-core");
  return await chromium.launch({ executablePath, args: [...CHROMIUM_ARGS] });
}
