import assert from "node:assert/strict";
import { join } from "node:path";
import { uplotDistDir, VENDOR_DIR, VENDORED_FILES } from "./vendor.ts";

Deno.test("dashboard: the vendored uPlot files are the pinned npm package's, byte for byte", async () => {
  const dist = await uplotDistDir();
  for (const [from, to] of Object.entries(VENDORED_FILES)) {
    const pinned = await Deno.readFile(join(dist, from));
    const copy = await Deno.readFile(join(VENDOR_DIR, to));
    assert.ok(pinned.length > 0, from);
    assert.deepEqual(copy, pinned, `${to} differs from npm:uplot's ${from}: run deno task vendor`);
  }
});
