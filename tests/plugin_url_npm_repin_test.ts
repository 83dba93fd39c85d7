/**
 * Re-pinning a URL plugin whose `npm:` range now matches a newer release:
 * the plugin's own bytes did not change, so the npm versions already pinned
 * are kept (no tamper error, no silent upgrade); a changed byte of the
 * plugin's own code is still tampering.
 *
 * The versions `deno info` can see are controlled by a registry served on
 * 127.0.0.1 (Deno reads `NPM_CONFIG_REGISTRY`; each `deno info` runs with a
 * fresh DENO_DIR, so nothing is cached between pinnings): it serves the
 * package document of a real ES module package with only some of its
 * releases listed, their `dist` (tarball, sha512) as published on
 * https://registry.npmjs.org, where pins' tarballs must come from.
 */
import assert from "node:assert/strict";
import type { PluginContext } from "../plugins/api.ts";
import {
  loadUrlPlugin,
  pinPlugin,
  PinTamperError,
  type PluginPin,
  readPin,
} from "../services/plugin_loader/mod.ts";
import type { Site } from "./fixtures/url_plugins/site.ts";
import { withSite } from "./fixtures/url_plugins/store.ts";
import type { Store } from "../services/store/types.ts";

const PREFIX = "/monitor";
const PACKAGE = "fast-string-truncated-width";

// Written at run time so that `deno check .` with the frozen lockfile never sees the npm: import.
const ENTRY = `import truncatedWidth from "npm:${PACKAGE}@^3.0.1";
import { label } from "./label.js";

export default function createPlugin() {
  return {
    name: "repin",
    version: "1.0.0",
    initialize() {},
    run: (sample) => ({
      ...sample,
      metrics: { ...sample.metrics, [label]: truncatedWidth("abcd").width },
    }),
    finalize() {},
  };
}
`;
const LABEL = `export const label = "width";\n`;

/** A registry on 127.0.0.1 that lists only `versions` of {@linkcode PACKAGE}. */
async function openRegistry() {
  const response = await fetch(`https://registry.npmjs.org/${PACKAGE}`, {
    signal: AbortSignal.timeout(15_000),
  });
  assert.equal(response.status, 200, `registry document of ${PACKAGE}`);
  const published = await response.json() as {
    versions: Record<string, unknown>;
    time?: Record<string, string>;
  };
  let versions: string[] = [];
  let requests = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    requests++;
    const path = decodeURIComponent(new URL(request.url).pathname);
    if (path !== `/${PACKAGE}`) return new Response("not found", { status: 404 });
    const listed = Object.fromEntries(versions.map((v) => [v, published.versions[v]]));
    const time = Object.fromEntries(
      Object.entries(published.time ?? {}).filter(([k]) => k in listed || !/^\d/.test(k)),
    );
    return Response.json({
      name: PACKAGE,
      "dist-tags": { latest: versions.at(-1) },
      versions: listed,
      time,
    });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/`,
    publish(list: string[]) {
      for (const v of list) assert.ok(published.versions[v], `${PACKAGE}@${v} is published`);
      versions = list;
    },
    requests: () => requests,
    close: () => server.shutdown(),
  };
}

function npmVersion(pin: PluginPin): string | undefined {
  return pin.npm?.find((p) => p.name === PACKAGE)?.version;
}

async function withRegistry(
  fn: (
    site: Site,
    store: Store,
    registry: Awaited<ReturnType<typeof openRegistry>>,
  ) => Promise<void>,
) {
  const registry = await openRegistry();
  const before = Deno.env.get("NPM_CONFIG_REGISTRY");
  Deno.env.set("NPM_CONFIG_REGISTRY", registry.url); // inherited by the `deno info` subprocesses
  try {
    await withSite(async (site, store) => {
      await site.write("/repin@1.0.0/mod.js", ENTRY);
      await site.write("/repin@1.0.0/label.js", LABEL);
      await fn(site, store, registry);
    });
  } finally {
    if (before === undefined) Deno.env.delete("NPM_CONFIG_REGISTRY");
    else Deno.env.set("NPM_CONFIG_REGISTRY", before);
    await registry.close();
  }
}

const context: PluginContext = {
  agentId: "agent-r",
  hostname: "host-r",
  interval: 5,
  log: () => {},
  emitAlert: () => {},
};

Deno.test("re-pinning the same plugin version keeps the npm versions pinned when a newer matching release appears", async () => {
  await withRegistry(async (site, store, registry) => {
    const url = site.url("/repin@1.0.0/mod.js");
    registry.publish(["3.0.1"]);
    const first = await pinPlugin(store, PREFIX, "repin", { url });
    assert.equal(first.action, "created");
    assert.equal(npmVersion(first.pin), "3.0.1");
    assert.ok(registry.requests() > 0, "deno info asked the local registry");

    registry.publish(["3.0.1", "3.0.2"]);
    // Control: the same code pinned under another name now resolves the range to 3.0.2.
    const control = await pinPlugin(store, PREFIX, "repin-control", { url });
    assert.equal(control.action, "created");
    assert.equal(npmVersion(control.pin), "3.0.2");
    assert.notEqual(control.pin.integrity, first.pin.integrity);

    // The same URL and version again: nothing changes, 3.0.1 stays.
    const again = await pinPlugin(store, PREFIX, "repin", { url });
    assert.equal(again.action, "unchanged");
    assert.equal(again.changed, undefined);
    assert.deepEqual(again.pin, first.pin);
    assert.deepEqual(await readPin(store, PREFIX, "repin"), first.pin);

    // New config: updated, still the graph pinned first (modules, npm, digest).
    const updated = await pinPlugin(store, PREFIX, "repin", { url, config: { n: 1 } });
    assert.equal(updated.action, "updated");
    assert.deepEqual(updated.pin.config, { n: 1 });
    assert.equal(npmVersion(updated.pin), "3.0.1");
    assert.deepEqual(updated.pin.npm, first.pin.npm);
    assert.deepEqual(updated.pin.modules, first.pin.modules);
    assert.equal(updated.pin.integrity, first.pin.integrity);
    assert.equal(updated.pin.pinned_at, first.pin.pinned_at);
    assert.deepEqual(await readPin(store, PREFIX, "repin"), updated.pin);
    assert.ok(updated.pin.modules.some((m) => m.url.startsWith(`npm:/${PACKAGE}@3.0.1/`)));
    assert.ok(!updated.pin.modules.some((m) => m.url.startsWith(`npm:/${PACKAGE}@3.0.2/`)));

    // The kept pin still verifies and runs on an agent (empty cache: the 3.0.1 tarball).
    const plugin = await loadUrlPlugin(updated.pin, { cacheDir: await site.tempDir() });
    try {
      await plugin.initialize({}, context);
      assert.deepEqual((await plugin.run({ timestamp: 1, metrics: { cpu: 1 } }))?.metrics, {
        cpu: 1,
        width: 4,
      });
    } finally {
      await plugin.close();
    }
  });
});

Deno.test("a changed byte of the plugin's own code is still tampering when its npm range moved too", async () => {
  await withRegistry(async (site, store, registry) => {
    const url = site.url("/repin@1.0.0/mod.js");
    registry.publish(["3.0.1"]);
    const first = await pinPlugin(store, PREFIX, "repin", { url });
    assert.equal(npmVersion(first.pin), "3.0.1");

    registry.publish(["3.0.1", "3.0.2"]);
    await site.changeOneByte("/repin@1.0.0/label.js", "w", "v");
    const error = await pinPlugin(store, PREFIX, "repin", { url }).catch((e) => e);
    assert.ok(error instanceof PinTamperError, String(error));
    assert.ok(error.changed.includes(site.url("/repin@1.0.0/label.js")), error.message);
    assert.deepEqual(await readPin(store, PREFIX, "repin"), first.pin); // the old pin stays

    // Only --force accepts it, with the plugin's new bytes and the newer release.
    const forced = await pinPlugin(store, PREFIX, "repin", { url }, { force: true });
    assert.equal(forced.action, "forced");
    assert.equal(npmVersion(forced.pin), "3.0.2");
  });
});
