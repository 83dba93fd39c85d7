/**
 * Loading pinned URL plugins from a real HTTP server on 127.0.0.1: every
 * module is verified before any of its code runs, verified copies are cached
 * (and re-verified on use), the plugin runs in a Worker behind the Plugin
 * API, and calls have a time budget.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { AlertEvent, PluginContext, PluginLogLevel } from "../plugins/api.ts";
import {
  loadUrlPlugin,
  pinPlugin,
  PluginError,
  PluginFetchError,
  PluginIntegrityError,
  type PluginPin,
  PluginRuntimeError,
  PluginTimeoutError,
  type UrlPlugin,
} from "../services/plugin_loader/mod.ts";
import { integrityHex } from "../services/plugin_loader/integrity.ts";
import type { Site } from "./fixtures/url_plugins/site.ts";
import { withSite } from "./fixtures/url_plugins/store.ts";
import type { Store } from "../services/store/types.ts";

const PREFIX = "/monitor";

interface Recorder {
  context: PluginContext;
  logs: [PluginLogLevel, string][];
  alerts: AlertEvent[];
}

function recorder(interval = 5): Recorder & { setInterval(seconds: number): void } {
  const logs: [PluginLogLevel, string][] = [];
  const alerts: AlertEvent[] = [];
  let current = interval;
  return {
    logs,
    alerts,
    setInterval: (seconds) => current = seconds,
    context: {
      agentId: "agent-7",
      hostname: "host-7",
      get interval() {
        return current;
      },
      log: (level, message) => logs.push([level, message]),
      emitAlert: (alert) => alerts.push(alert),
    },
  };
}

async function pin(site: Site, store: Store, name: string, path: string, extra = {}) {
  return (await pinPlugin(store, PREFIX, name, { url: site.url(path), ...extra })).pin;
}

async function withPlugin<T>(
  pinned: PluginPin,
  cacheDir: string,
  fn: (plugin: UrlPlugin) => Promise<T>,
  options: { timeoutMs?: number; log?: (level: PluginLogLevel, message: string) => void } = {},
): Promise<T> {
  const plugin = await loadUrlPlugin(pinned, { cacheDir, ...options });
  try {
    return await fn(plugin);
  } finally {
    await plugin.close();
  }
}

Deno.test("a plugin with dependencies loads and runs behind the Plugin API", async () => {
  await withSite(async (site, store) => {
    const pinned = await pin(site, store, "scale", "/scale@1.0.0/mod.ts");
    const cacheDir = await site.tempDir();
    const rec = recorder();
    await withPlugin(pinned, cacheDir, async (plugin) => {
      assert.equal(plugin.name, "scale");
      assert.equal(plugin.version, "1.0.0");
      assert.deepEqual(plugin.reported, { name: "scale", version: "1.0.0" });
      await plugin.initialize({ factor: 3, alert_above: 50 }, rec.context);
      assert.deepEqual(rec.logs, [["info", "[scale] factor 3 on agent-7@host-7"]]);

      const out = await plugin.run({ timestamp: 100, metrics: { cpu: 60, memory: 10 } });
      assert.deepEqual(out, { timestamp: 100, metrics: { cpu: 180, memory: 30, interval: 5 } });
      assert.deepEqual(rec.alerts, [
        { metric: "cpu", value: 60, threshold: 50, state: "firing", timestamp: 100 },
      ]);
      assert.equal(await plugin.run({ timestamp: 101, metrics: { drop: 1 } }), null);
      rec.setInterval(10);
      const later = await plugin.run({ timestamp: 102, metrics: { cpu: 1 } });
      assert.equal(later?.metrics.interval, 10);

      await plugin.finalize();
      assert.deepEqual(rec.logs.at(-1), ["info", "[scale] finalized"]);
      assert.equal(plugin.status().state, "ready");
    });
    // Every module was cached under its sha256.
    for (const module of pinned.modules) {
      const path = join(cacheDir, "sha256", integrityHex(module.integrity));
      assert.deepEqual(
        await Deno.readFile(path),
        await Deno.readFile(join(site.dir, new URL(module.url).pathname)),
      );
    }
  });
});

Deno.test("a single changed byte in a dependency is refused before any plugin code runs", async () => {
  await withSite(async (site, store) => {
    const pinned = await pin(site, store, "marker", "/marker@1.0.0/mod.ts", {
      permissions: { net: [site.host] },
    });
    // Control: the intact plugin runs, and its dependency reports at top level.
    await withPlugin(pinned, await site.tempDir(), async (plugin) => {
      assert.equal(site.hits("/ran/marker-dep"), 1);
      const out = await plugin.run({ timestamp: 1, metrics: {} });
      assert.deepEqual(out?.metrics, { marker: 1 });
    });

    await site.changeOneByte("/marker@1.0.0/dep.ts", "1", "2");
    const cacheDir = await site.tempDir();
    const error = await loadUrlPlugin(pinned, { cacheDir }).then(
      async (p) => {
        await p.close();
        assert.fail("a tampered dependency must be refused");
      },
      (e) => e,
    );
    assert.ok(error instanceof PluginIntegrityError, String(error));
    assert.equal(error.plugin, "marker");
    assert.equal(error.module, site.url("/marker@1.0.0/dep.ts"));
    assert.match(error.message, /plugin "marker"/);
    assert.ok(error.message.includes(site.url("/marker@1.0.0/mod.ts")), error.message);
    assert.ok(error.message.includes(site.url("/marker@1.0.0/dep.ts")), error.message);
    assert.match(error.message, /the plugin was not run/);
    // No code ran: the dependency's top-level report never arrived; the tampered bytes
    // were not even cached.
    assert.equal(site.hits("/ran/marker-dep"), 1);
    const tampered = await site.sri("/marker@1.0.0/dep.ts");
    assert.equal(await exists(join(cacheDir, "sha256", integrityHex(tampered))), false);
  });
});

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

Deno.test("verified copies come from the cache, re-verified: a corrupt copy is fetched again, never run", async () => {
  await withSite(async (site, store) => {
    const pinned = await pin(site, store, "marker", "/marker@1.0.0/mod.ts", {
      permissions: { net: [site.host] },
    });
    const cacheDir = await site.tempDir();
    const depUrl = site.url("/marker@1.0.0/dep.ts");
    const dep = pinned.modules.find((m) => m.url === depUrl)!;
    const cached = join(cacheDir, "sha256", integrityHex(dep.integrity));

    const fetched = site.hits("/marker@1.0.0/dep.ts"); // by pinning
    await withPlugin(pinned, cacheDir, async () => {});
    assert.equal(site.hits("/marker@1.0.0/dep.ts"), fetched + 1);
    // Second load: everything from the cache.
    await withPlugin(pinned, cacheDir, async () => {});
    assert.equal(site.hits("/marker@1.0.0/dep.ts"), fetched + 1);
    assert.equal(site.hits("/ran/marker-dep"), 2);

    // A corrupt cached copy is noticed, removed and fetched again.
    const bytes = await Deno.readFile(cached);
    bytes[bytes.indexOf("1".charCodeAt(0))] = "2".charCodeAt(0);
    await Deno.writeFile(cached, bytes);
    const notes: string[] = [];
    await withPlugin(pinned, cacheDir, async (plugin) => {
      assert.deepEqual((await plugin.run({ timestamp: 1, metrics: {} }))?.metrics, { marker: 1 });
    }, { log: (_level, message) => notes.push(message) });
    assert.equal(site.hits("/marker@1.0.0/dep.ts"), fetched + 2);
    assert.equal(notes.length, 1);
    assert.match(notes[0], /cached copy of .*dep\.ts was corrupt/);
    assert.equal(await sha256(await Deno.readFile(cached)), dep.integrity);

    // Corrupt cache and a tampered server: an error, and the corrupt bytes never run.
    await Deno.writeFile(cached, bytes);
    await site.changeOneByte("/marker@1.0.0/dep.ts", "1", "3");
    const ranBefore = site.hits("/ran/marker-dep");
    await assert.rejects(
      loadUrlPlugin(pinned, { cacheDir }),
      (e: Error) => e instanceof PluginIntegrityError && e.message.includes(depUrl),
    );
    assert.equal(site.hits("/ran/marker-dep"), ranBefore);
    assert.equal(await exists(cached), false);
  });
});

async function sha256(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as BufferSource));
  return `sha256-${btoa(String.fromCharCode(...digest))}`;
}

Deno.test("a fetch failure names the plugin, its URL and the module", async () => {
  await withSite(async (site, store) => {
    const pinned = await pin(site, store, "scale", "/scale@1.0.0/mod.ts");
    await Deno.remove(join(site.dir, "shared/util.js"));
    const error = await loadUrlPlugin(pinned, { cacheDir: await site.tempDir() }).then(
      () => assert.fail("expected a fetch failure"),
      (e) => e,
    );
    assert.ok(error instanceof PluginFetchError, String(error));
    assert.match(error.message, /plugin "scale"/);
    assert.ok(error.message.includes(site.url("/shared/util.js")), error.message);
    assert.match(error.message, /HTTP 404/);
  });
});

Deno.test("every import form is pointed at the verified copies: root-relative, absolute, other host, redirected, dynamic", async () => {
  await withSite(async (site, store) => {
    await site.write("/lib/a.js", "export const a = 1;\n");
    await site.write("/lib/b.ts", "export const b: number = 2;\n");
    await site.write("/lib/lazy.js", "export const lazy = 4;\n");
    // A module on another host (the graph spans two servers).
    const elsewhere = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      () =>
        new Response("export const far = 16;\n", {
          headers: { "content-type": "text/javascript" },
        }),
    );
    const far = `http://127.0.0.1:${elsewhere.addr.port}/far.js`;
    await site.write(
      "/reloc@1.0.0/mod.js",
      [
        `import { a } from "/lib/a.js";`,
        `import { a as again } from '/lib/a.js';`,
        `export { a as reexported } from "/lib/a.js";`,
        `import { b } from "${site.origin}/lib/b.ts";`,
        `import { b as viaRedirect } from "${site.origin}/redirect/lib/b.ts";`,
        `import { far } from "${far}";`,
        `const lazy = () => import("/lib/lazy.js");`,
        `export default function createPlugin() {`,
        `  return {`,
        `    name: "reloc", version: "1.0.0", initialize() {}, finalize() {},`,
        `    async run(sample) {`,
        `      const { lazy: l } = await lazy();`,
        `      return { ...sample, metrics: { sum: a + again + b + viaRedirect + l + far } };`,
        `    },`,
        `  };`,
        `}`,
        ``,
      ].join("\n"),
    );
    try {
      const pinned = await pin(site, store, "reloc", "/reloc@1.0.0/mod.js");
      assert.deepEqual(
        pinned.modules.map((m) => m.url).sort(),
        [
          far,
          site.url("/lib/a.js"),
          site.url("/lib/b.ts"),
          site.url("/lib/lazy.js"),
          site.url("/reloc@1.0.0/mod.js"),
        ].sort(),
      );
      await withPlugin(pinned, await site.tempDir(), async (plugin) => {
        const out = await plugin.run({ timestamp: 1, metrics: {} });
        assert.deepEqual(out?.metrics, { sum: 1 + 1 + 2 + 2 + 4 + 16 });
      });
    } finally {
      await elsewhere.shutdown();
    }
  });
});

Deno.test("a plugin on a file: URL (shared file system) is pinned and loaded the same way", async () => {
  await withSite(async (site, store) => {
    const url = new URL(`file://${site.dir}/scale@1.0.0/mod.ts`).href;
    const pinned = (await pinPlugin(store, PREFIX, "local", { url })).pin;
    assert.equal(pinned.version, "1.0.0");
    assert.equal(pinned.modules.length, 4);
    assert.ok(pinned.modules.every((m) => m.url.startsWith("file:///")));
    await withPlugin(pinned, await site.tempDir(), async (plugin) => {
      await plugin.initialize({ factor: 2 }, recorder().context);
      assert.deepEqual(await plugin.run({ timestamp: 1, metrics: { cpu: 3 } }), {
        timestamp: 1,
        metrics: { cpu: 6, interval: 5 },
      });
    });
    await site.changeOneByte("/shared/util.js", "[", "{");
    await assert.rejects(
      loadUrlPlugin(pinned, { cacheDir: await site.tempDir() }),
      (e: Error) => e instanceof PluginIntegrityError && e.message.includes("shared/util.js"),
    );
  });
});

Deno.test("a pin whose module list was edited is refused", async () => {
  await withSite(async (site, store) => {
    const pinned = await pin(site, store, "scale", "/scale@1.0.0/mod.ts");
    const edited: PluginPin = structuredClone(pinned);
    edited.modules[0].integrity = pinned.modules[1].integrity;
    await assert.rejects(
      loadUrlPlugin(edited, { cacheDir: await site.tempDir() }),
      (e: Error) => e instanceof PluginError && /does not match its graph digest/.test(e.message),
    );
  });
});

Deno.test("a run() over its time budget fails; the worker is restarted for the next call", async () => {
  await withSite(async (site, store) => {
    const pinned = await pin(site, store, "slow", "/slow@1.0.0/mod.ts");
    const notes: string[] = [];
    await withPlugin(pinned, await site.tempDir(), async (plugin) => {
      await plugin.initialize({}, recorder().context);
      assert.deepEqual((await plugin.run({ timestamp: 1, metrics: {} }))?.metrics, { calls: 1 });
      for (const stuck of [{ spin: 1 }, { hang: 1 }] as Record<string, number>[]) {
        const error = await plugin.run({ timestamp: 2, metrics: stuck }).then(
          () => assert.fail("expected a timeout"),
          (e) => e,
        );
        assert.ok(error instanceof PluginTimeoutError, String(error));
        assert.equal(error.operation, "run");
        assert.match(error.message, /plugin "slow": run\(\) did not answer within 300 ms/);
        assert.equal(plugin.status().state, "restarting");
        // A fresh worker (its state starts over) answers the next call.
        assert.deepEqual((await plugin.run({ timestamp: 3, metrics: {} }))?.metrics, { calls: 1 });
      }
      assert.equal(plugin.status().restarts, 2);
      assert.equal(plugin.status().state, "ready");
      // Calls made while the worker restarts wait for one restart and run in order.
      await assert.rejects(plugin.run({ timestamp: 4, metrics: { spin: 1 } }), PluginTimeoutError);
      const both = await Promise.all([
        plugin.run({ timestamp: 5, metrics: {} }),
        plugin.run({ timestamp: 6, metrics: {} }),
      ]);
      assert.deepEqual(both.map((s) => s?.metrics.calls), [1, 2]);
      assert.equal(plugin.status().restarts, 3);
    }, { timeoutMs: 300, log: (_l, m) => notes.push(m) });
    assert.equal(notes.filter((n) => /did not answer/.test(n)).length, 3);
  });
});

Deno.test("a throwing log or emitAlert callback of the agent does not disturb it", async () => {
  await withSite(async (site, store) => {
    const pinned = await pin(site, store, "scale", "/scale@1.0.0/mod.ts");
    const notes: string[] = [];
    const context: PluginContext = {
      agentId: "a",
      hostname: "h",
      interval: 5,
      log: () => {
        throw new Error("log sink is broken");
      },
      emitAlert: () => {
        throw new Error("alert sink is broken");
      },
    };
    await withPlugin(pinned, await site.tempDir(), async (plugin) => {
      await plugin.initialize({ factor: 2, alert_above: 1 }, context);
      const out = await plugin.run({ timestamp: 1, metrics: { cpu: 5 } });
      assert.deepEqual(out?.metrics, { cpu: 10, interval: 5 });
      assert.equal(plugin.status().state, "ready");
    }, { log: (_level, message) => notes.push(message) });
    assert.ok(notes.some((n) => /handling its log message failed: log sink is broken/.test(n)));
    assert.ok(notes.some((n) => /handling its alert message failed: alert sink is broken/.test(n)));
  });
});

Deno.test("a plugin that throws or returns garbage fails that call only", async () => {
  await withSite(async (site, store) => {
    await site.write(
      "/moody@1.0.0/mod.js",
      [
        `export default function createPlugin() {`,
        `  return {`,
        `    name: "moody", version: "1.0.0", initialize() {}, finalize() {},`,
        `    run(sample) {`,
        `      if (sample.metrics.mode === 1) throw new RangeError("mode 1 is not supported");`,
        `      if (sample.metrics.mode === 2) return { timestamp: "soon", metrics: {} };`,
        `      if (sample.metrics.mode === 3) return { timestamp: 1, metrics: { cpu: "high" } };`,
        `      return sample;`,
        `    },`,
        `  };`,
        `}`,
        ``,
      ].join("\n"),
    );
    await site.write("/nodefault@1.0.0/mod.js", "export const x = 1;\n");
    const moody = await pin(site, store, "moody", "/moody@1.0.0/mod.js");
    await withPlugin(moody, await site.tempDir(), async (plugin) => {
      const cases: [number, RegExp][] = [
        [1, /plugin "moody": run\(\) failed: RangeError: mode 1 is not supported/],
        [2, /returned an invalid sample: timestamp: expected Unix seconds/],
        [3, /returned an invalid sample: metrics\."cpu": expected a finite number/],
      ];
      for (const [mode, pattern] of cases) {
        await assert.rejects(
          plugin.run({ timestamp: 1, metrics: { mode } }),
          (e: Error) => e instanceof PluginRuntimeError && pattern.test(e.message),
        );
      }
      assert.deepEqual(await plugin.run({ timestamp: 1, metrics: { mode: 0 } }), {
        timestamp: 1,
        metrics: { mode: 0 },
      });
      assert.equal(plugin.status().state, "ready");
    });
    const nodefault = await pin(site, store, "nodefault", "/nodefault@1.0.0/mod.js");
    await assert.rejects(
      loadUrlPlugin(nodefault, { cacheDir: await site.tempDir() }),
      /plugin "nodefault": load\(\) failed: TypeError: the module has no default export/,
    );
  });
});
