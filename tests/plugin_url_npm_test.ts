/**
 * URL plugins with `npm:` dependencies: pinning records every npm package of
 * the graph at its resolved exact version with the registry's sha512
 * integrity (packages fetched from https://registry.npmjs.org), and the files
 * the plugin loads from them as pinned modules; the agent verifies them
 * before any plugin code runs and the Worker runs them from blob: URLs with
 * only the declared permissions.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import type { PluginContext } from "../plugins/api.ts";
import {
  agentPluginPermissions,
  decodePin,
  encodePin,
  loadUrlPlugin,
  NPM_REGISTRY_HOST,
  pinPlugin,
  PluginError,
  PluginIntegrityError,
  PluginPermissionError,
  type PluginPin,
  readPin,
  type UrlPlugin,
} from "../services/plugin_loader/mod.ts";
import { graphIntegrity, integrityHex } from "../services/plugin_loader/integrity.ts";
import type { Site } from "./fixtures/url_plugins/site.ts";
import { childSetup, runAgentChild } from "./fixtures/url_plugins/run_child.ts";
import { withSite } from "./fixtures/url_plugins/store.ts";
import type { Store } from "../services/store/types.ts";

const PREFIX = "/monitor";
const SAMPLE = { timestamp: 1, metrics: { cpu: 1 } };
const context: PluginContext = {
  agentId: "agent-n",
  hostname: "host-n",
  interval: 5,
  log: () => {},
  emitAlert: () => {},
};

// The plugins are written at run time (not kept as fixture files) so that `deno check .` with
// the project's frozen lockfile never sees their npm: imports.

/** A plugin with an npm dependency (an ES module package that depends on another one), which
 * also reaches for a file, a host or an environment variable named in its settings. */
const NPMWIDTH = `import stringWidth from "npm:fast-string-width@^3.0.0";

export default function createPlugin() {
  let settings = {};
  const reach = async () => {
    switch (settings.action) {
      case "read":
        return (await Deno.readTextFile(String(settings.path))).length;
      case "fetch":
        return (await (await fetch(String(settings.url))).text()).length;
      case "env":
        return (Deno.env.get(String(settings.name)) ?? "").length;
      default:
        return 0;
    }
  };
  return {
    name: "npmwidth",
    version: "1.0.0",
    initialize(config) {
      settings = config;
    },
    async run(sample) {
      const width = stringWidth(String(settings.text ?? "abc"));
      return { ...sample, metrics: { ...sample.metrics, width, reached: await reach() } };
    },
    finalize() {},
  };
}
`;

/** Proves whether plugin code ran: reports to the test server at top level, after its npm
 * dependency was evaluated. */
const NPMMARKER = (origin: string) =>
  `import stringWidth from "npm:fast-string-width@^3.0.0";

const response = await fetch("${origin}/ran/npmmarker");
await response.body?.cancel();

export default function createPlugin() {
  return {
    name: "npmmarker",
    version: "1.0.0",
    initialize() {},
    run: (sample) => ({ ...sample, metrics: { ...sample.metrics, width: stringWidth("ab") } }),
    finalize() {},
  };
}
`;

async function pinNpm(site: Site, store: Store, name: string, path: string, extra = {}) {
  await site.write("/npmwidth@1.0.0/mod.js", NPMWIDTH);
  await site.write("/npmmarker@1.0.0/mod.js", NPMMARKER(site.origin));
  return (await pinPlugin(store, PREFIX, name, { url: site.url(path), ...extra })).pin;
}

async function registryDist(name: string, version: string) {
  const response = await fetch(`https://registry.npmjs.org/${name}/${version}`, {
    signal: AbortSignal.timeout(15_000),
  });
  assert.equal(response.status, 200, `registry metadata of ${name}@${version}`);
  const doc = await response.json();
  return doc.dist as { tarball: string; integrity: string };
}

async function sha512Of(url: string): Promise<string> {
  const response = await fetch(url, { signal: AbortSignal.timeout(15_000) });
  const bytes = new Uint8Array(await response.arrayBuffer());
  return `sha512-${createHash("sha512").update(bytes).digest("base64")}`;
}

async function loaded(pin: PluginPin, cacheDir: string, config = {}): Promise<UrlPlugin> {
  const plugin = await loadUrlPlugin(pin, { cacheDir });
  await plugin.initialize(config, context);
  return plugin;
}

/** The pin with one npm package's sha512 replaced, its graph digest recomputed. */
async function withNpmIntegrity(pin: PluginPin, index: number, integrity: string) {
  const npm = pin.npm!.map((p, i) => i === index ? { ...p, integrity } : p);
  return { ...pin, npm, integrity: await graphIntegrity(pin.modules, npm) };
}

Deno.test("pinning records each npm package at its exact version with the registry's sha512", async () => {
  await withSite(async (site, store) => {
    const pin = await pinNpm(site, store, "npmwidth", "/npmwidth@1.0.0/mod.js");
    assert.deepEqual(pin.npm!.map((p) => p.name), [
      "fast-string-truncated-width",
      "fast-string-width",
    ]);
    for (const pkg of pin.npm!) {
      assert.match(pkg.version, /^\d+\.\d+\.\d+$/);
      const dist = await registryDist(pkg.name, pkg.version);
      assert.equal(pkg.tarball, dist.tarball);
      assert.equal(pkg.integrity, dist.integrity);
      assert.equal(pkg.integrity, await sha512Of(pkg.tarball));
    }
    const width = pin.npm!.find((p) => p.name === "fast-string-width")!;
    assert.match(width.version, /^3\./); // the range ^3.0.0, resolved
    // The plugin's import points at the package's entry file, pinned like any module.
    const entry = pin.modules.find((m) => m.url === pin.entry)!;
    assert.deepEqual(entry.dependencies, [{
      specifier: "npm:fast-string-width@^3.0.0",
      url: `npm:/fast-string-width@${width.version}/dist/index.js`,
    }]);
    const files = pin.modules.filter((m) => m.url.startsWith("npm:/"));
    assert.ok(files.length >= 2, JSON.stringify(files.map((m) => m.url)));
    for (const file of files) assert.match(file.integrity, /^sha256-/);
    // The stored pin reads back the same, and the agent needs the registry for the tarballs.
    assert.deepEqual(await readPin(store, PREFIX, "npmwidth"), pin);
    assert.deepEqual(decodePin(encodePin(pin), "k"), pin);
    assert.ok(agentPluginPermissions([pin], "/state").net.includes(NPM_REGISTRY_HOST));

    // It runs; the verified files are cached and a second load needs no download.
    const cacheDir = await site.tempDir();
    const plugin = await loaded(pin, cacheDir, { text: "日本語 x" });
    try {
      assert.deepEqual((await plugin.run(SAMPLE))?.metrics, { cpu: 1, width: 8, reached: 0 });
    } finally {
      await plugin.close();
    }
    for (const file of files) {
      await Deno.stat(join(cacheDir, "sha256", integrityHex(file.integrity)));
    }
    const offline = await loadUrlPlugin(
      { ...pin, npm: pin.npm!.map((p) => ({ ...p, tarball: `${p.tarball}.missing` })) },
      { cacheDir },
    ).catch((e) => e);
    // (the tarball URLs are part of the digest: an edited pin is refused even with a full cache)
    assert.ok(offline instanceof PluginError, String(offline));
    assert.match(offline.message, /does not match its graph digest/);
  });
});

Deno.test("a pin whose npm integrity was altered is refused before any plugin code runs", async () => {
  await withSite(async (site, store) => {
    const pin = await pinNpm(site, store, "npmmarker", "/npmmarker@1.0.0/mod.js", {
      permissions: { net: [site.host] },
    });
    // Control: the intact pin runs and its code reports at top level.
    const control = await loaded(pin, await site.tempDir());
    try {
      assert.equal(site.hits("/ran/npmmarker"), 1);
      assert.deepEqual((await control.run(SAMPLE))?.metrics, { cpu: 1, width: 2 });
    } finally {
      await control.close();
    }
    const index = pin.npm!.findIndex((p) => p.name === "fast-string-width");
    const other = pin.npm![1 - index].integrity;

    // The sha512 edited alone: the graph digest no longer matches.
    const edited = {
      ...pin,
      npm: pin.npm!.map((p, i) => i === index ? { ...p, integrity: other } : p),
    };
    const digestError = await loadUrlPlugin(edited, { cacheDir: await site.tempDir() })
      .catch((e) => e);
    assert.ok(digestError instanceof PluginError, String(digestError));
    assert.match(digestError.message, /does not match its graph digest/);

    // Edited with a matching digest: the downloaded tarball does not match it.
    const forged = await withNpmIntegrity(pin, index, other);
    const cacheDir = await site.tempDir();
    const error = await loadUrlPlugin(forged, { cacheDir }).then(
      async (p) => {
        await p.close();
        assert.fail("an altered npm integrity must be refused");
      },
      (e) => e,
    );
    assert.ok(error instanceof PluginIntegrityError, String(error));
    assert.equal(error.plugin, "npmmarker");
    assert.equal(error.expected, other);
    assert.equal(error.actual, pin.npm![index].integrity);
    assert.ok(error.message.includes(pin.npm![index].tarball), error.message);
    assert.match(error.message, /the plugin was not run/);
    assert.equal(site.hits("/ran/npmmarker"), 1); // nothing ran
    // Nothing of the refused package was cached.
    for (const module of pin.modules) {
      if (!module.url.startsWith(`npm:/fast-string-width@`)) continue;
      await assert.rejects(
        Deno.stat(join(cacheDir, "sha256", integrityHex(module.integrity))),
        Deno.errors.NotFound,
      );
    }

    // A file's own hash edited (digest recomputed): the tarball matches, the file does not.
    const fileIndex = pin.modules.findIndex((m) => m.url.startsWith("npm:/fast-string-width@"));
    const modules = pin.modules.map((m, i) =>
      i === fileIndex ? { ...m, integrity: pin.modules[0].integrity } : m
    );
    const forgedFile = {
      ...pin,
      modules,
      integrity: await graphIntegrity(modules, pin.npm!),
    };
    const fileError = await loadUrlPlugin(forgedFile, { cacheDir: await site.tempDir() })
      .catch((e) => e);
    assert.ok(fileError instanceof PluginIntegrityError, String(fileError));
    assert.equal(fileError.module, pin.modules[fileIndex].url);
    assert.equal(site.hits("/ran/npmmarker"), 1);
  });
});

Deno.test("a plugin with npm dependencies still reads only the files, env and hosts it was granted", async () => {
  await withSite(async (site, store) => {
    const files = await site.tempDir();
    const granted = join(files, "granted.txt");
    const secret = join(files, "secret.txt");
    await Deno.writeTextFile(granted, "12345");
    await Deno.writeTextFile(secret, "top secret");
    Deno.env.set("PLUGIN_URL_NPM_SECRET", "secret-value");
    const plugins: UrlPlugin[] = [];
    let n = 0;
    const load = async (permissions: Record<string, string[]>, config: Record<string, string>) => {
      const pin = await pinNpm(site, store, `npmwidth-${++n}`, "/npmwidth@1.0.0/mod.js", {
        permissions,
      });
      const plugin = await loaded(pin, await site.tempDir(), config);
      plugins.push(plugin);
      return plugin;
    };
    const expectStopped = async (plugin: UrlPlugin, permission: string, target: string) => {
      const error = await plugin.run(SAMPLE).catch((e) => e);
      assert.ok(error instanceof PluginPermissionError, String(error));
      assert.equal(error.permission, permission);
      assert.equal(error.target, target);
      assert.equal(plugin.status().state, "stopped");
    };
    try {
      const reads = await load({ read: [granted] }, { action: "read", path: granted });
      assert.equal((await reads.run(SAMPLE))?.metrics.reached, 5);
      await expectStopped(
        await load({ read: [granted] }, { action: "read", path: secret }),
        "read",
        secret,
      );
      await expectStopped(
        await load({}, { action: "env", name: "PLUGIN_URL_NPM_SECRET" }),
        "env",
        "PLUGIN_URL_NPM_SECRET",
      );
      // The registry the packages came from is not reachable from the Worker either.
      await expectStopped(
        await load({ net: [site.host] }, {
          action: "fetch",
          url: "https://registry.npmjs.org/fast-string-width",
        }),
        "net",
        "registry.npmjs.org:443",
      );
      const fetches = await load({ net: [site.host] }, {
        action: "fetch",
        url: site.url("/shared/util.js"),
      });
      assert.ok(((await fetches.run(SAMPLE))?.metrics.reached ?? 0) > 0);
      assert.equal((await reads.run(SAMPLE))?.metrics.width, 3); // the others keep running
    } finally {
      for (const plugin of plugins) await plugin.close();
      Deno.env.delete("PLUGIN_URL_NPM_SECRET");
    }
  });
});

Deno.test("an agent process with only the computed permissions and the project's frozen lockfile runs a plugin with npm packages", async () => {
  await withSite(async (site, store) => {
    const pin = await pinNpm(site, store, "npmwidth", "/npmwidth@1.0.0/mod.js", {
      config: { text: "日本語 x" },
    });
    const setup = await childSetup(site, pin);
    const { needs } = setup;
    assert.deepEqual(needs.net, [site.host, NPM_REGISTRY_HOST].sort());
    // Run from the repository root: deno.json applies, with its frozen deno.lock that knows
    // nothing of the plugin's packages. No read access to any npm cache, no --allow-env.
    const root = new URL("..", import.meta.url);
    assert.equal(JSON.parse(await Deno.readTextFile(new URL("deno.json", root))).lock.frozen, true);
    const { code, stdout, stderr } = await runAgentChild(setup, { cwd: root });
    assert.equal(code, 0, `${stdout}\n${stderr}`);
    assert.deepEqual(JSON.parse(stdout.split("\n").at(-1)!), {
      ok: { timestamp: 1, metrics: { cpu: 2, width: 8, reached: 0 } },
      alive: true,
    }, stderr);
  });
});
