/**
 * The sandbox of URL plugins: each runs in a Worker with exactly the
 * permissions declared for it. Reaching for a file, a host or an environment
 * variable it was not granted stops the plugin with an error naming the
 * permission, and the agent process (this test process) keeps running.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  loadUrlPlugin,
  pinPlugin,
  PluginPermissionError,
  type PluginPermissions,
  type UrlPlugin,
  workerPermissions,
} from "../services/plugin_loader/mod.ts";
import type { PluginContext } from "../plugins/api.ts";
import { openSite, type Site } from "./fixtures/url_plugins/site.ts";
import { openEmbeddedStore } from "./fixtures/url_plugins/store.ts";

const context: PluginContext = {
  agentId: "agent-s",
  hostname: "host-s",
  interval: 5,
  log: () => {},
  emitAlert: () => {},
};

interface Sandbox {
  site: Site;
  /** A second server nobody is granted. */
  other: Deno.HttpServer<Deno.NetAddr>;
  otherPort: number;
  grantedFile: string;
  secretFile: string;
  /** Loads the snoop plugin with `permissions`, initialized with `config`. */
  snoop(
    permissions: Partial<PluginPermissions>,
    config: Record<string, unknown>,
  ): Promise<UrlPlugin>;
}

async function withSandbox(fn: (s: Sandbox) => Promise<void>) {
  const site = await openSite();
  const store = await openEmbeddedStore(await site.tempDir());
  const other = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response("other"),
  );
  const plugins: UrlPlugin[] = [];
  Deno.env.set("PLUGIN_URL_TEST_GRANTED", "granted-value");
  Deno.env.set("PLUGIN_URL_TEST_SECRET", "secret-value");
  try {
    const files = await site.tempDir();
    const grantedFile = join(files, "granted.txt");
    const secretFile = join(files, "secret.txt");
    await Deno.writeTextFile(grantedFile, "12345");
    await Deno.writeTextFile(secretFile, "top secret");
    let n = 0;
    await fn({
      site,
      other,
      otherPort: other.addr.port,
      grantedFile,
      secretFile,
      async snoop(permissions, config) {
        const name = `snoop-${++n}`;
        const { pin } = await pinPlugin(store, "/monitor", name, {
          url: site.url("/snoop@1.0.0/mod.ts"),
          permissions,
        });
        const plugin = await loadUrlPlugin(pin, { cacheDir: await site.tempDir() });
        plugins.push(plugin);
        await plugin.initialize(config, context);
        return plugin;
      },
    });
  } finally {
    for (const plugin of plugins) await plugin.close();
    Deno.env.delete("PLUGIN_URL_TEST_GRANTED");
    Deno.env.delete("PLUGIN_URL_TEST_SECRET");
    await other.shutdown();
    await store.close();
    await site.cleanup();
  }
}

const SAMPLE = { timestamp: 1, metrics: { cpu: 1 } };

async function expectStopped(
  plugin: UrlPlugin,
  permission: string,
  target: string,
  operation = "run",
) {
  const error = await plugin.run(SAMPLE).then(
    () => assert.fail(`expected ${permission} access to ${target} to be refused`),
    (e) => e,
  );
  assert.ok(error instanceof PluginPermissionError, String(error));
  assert.equal(error.permission, permission);
  assert.equal(error.target, target);
  assert.match(error.message, new RegExp(`plugin "${plugin.name}" was stopped`));
  assert.ok(
    error.message.includes(`${permission} access to "${target}", which it was not granted`),
    error.message,
  );
  assert.ok(error.message.includes(`${operation}()`), error.message);
  // Stopped: later calls fail with the same error, without reaching the plugin.
  assert.equal(plugin.status().state, "stopped");
  await assert.rejects(plugin.run(SAMPLE), (e: Error) => e.message === error.message);
  return error as PluginPermissionError;
}

Deno.test("a plugin reads only the files it was granted", async () => {
  await withSandbox(async (s) => {
    const granted = await s.snoop({ read: [s.grantedFile] }, {
      action: "read",
      path: s.grantedFile,
    });
    assert.deepEqual((await granted.run(SAMPLE))?.metrics, { cpu: 1, reached: 5 });

    const denied = await s.snoop({ read: [s.grantedFile] }, { action: "read", path: s.secretFile });
    const error = await expectStopped(denied, "read", s.secretFile);
    assert.match(
      error.message,
      new RegExp(`declared read: ${s.grantedFile.replace(/[.]/g, "\\.")}`),
    );
    // The agent goes on, and so do its other plugins.
    assert.deepEqual((await granted.run(SAMPLE))?.metrics, { cpu: 1, reached: 5 });
  });
});

Deno.test("a plugin connects only to the hosts it was granted (fetch and Deno.connect)", async () => {
  await withSandbox(async (s) => {
    const fetchGranted = await s.snoop({ net: [s.site.host] }, {
      action: "fetch",
      url: s.site.url("/shared/util.js"),
    });
    assert.ok(((await fetchGranted.run(SAMPLE))?.metrics.reached ?? 0) > 0);

    const otherHost = `127.0.0.1:${s.otherPort}`;
    const fetchDenied = await s.snoop({ net: [s.site.host] }, {
      action: "fetch",
      url: `http://${otherHost}/`,
    });
    await expectStopped(fetchDenied, "net", otherHost);

    const port = Number(s.site.host.split(":")[1]);
    const connectGranted = await s.snoop({ net: [s.site.host] }, { action: "connect", port });
    assert.equal((await connectGranted.run(SAMPLE))?.metrics.reached, 1);
    const connectDenied = await s.snoop({}, { action: "connect", port });
    const error = await expectStopped(connectDenied, "net", s.site.host);
    assert.match(error.message, /declared net: none/);
  });
});

Deno.test("a plugin reads only the environment variables it was granted", async () => {
  await withSandbox(async (s) => {
    const granted = await s.snoop({ env: ["PLUGIN_URL_TEST_GRANTED"] }, {
      action: "env",
      name: "PLUGIN_URL_TEST_GRANTED",
    });
    assert.equal((await granted.run(SAMPLE))?.metrics.reached, "granted-value".length);
    const denied = await s.snoop({ env: ["PLUGIN_URL_TEST_GRANTED"] }, {
      action: "env",
      name: "PLUGIN_URL_TEST_SECRET",
    });
    await expectStopped(denied, "env", "PLUGIN_URL_TEST_SECRET");
  });
});

Deno.test("a violation in initialize() or in a background task stops the plugin too", async () => {
  await withSandbox(async (s) => {
    const { site } = s;
    const store = await openEmbeddedStore(await site.tempDir());
    try {
      const { pin } = await pinPlugin(store, "/monitor", "early", {
        url: site.url("/snoop@1.0.0/mod.ts"),
      });
      const plugin = await loadUrlPlugin(pin, { cacheDir: await site.tempDir() });
      try {
        const error = await plugin.initialize(
          { action: "read", path: s.secretFile, when: "initialize" },
          context,
        ).then(() => assert.fail("expected a refusal"), (e) => e);
        assert.ok(error instanceof PluginPermissionError, String(error));
        assert.match(error.message, /initialize\(\) needed read access/);
        assert.equal(plugin.status().state, "stopped");
      } finally {
        await plugin.close();
      }
    } finally {
      await store.close();
    }

    const background = await s.snoop({}, {
      action: "env",
      name: "PLUGIN_URL_TEST_SECRET",
      when: "background",
    });
    // The call itself succeeds; the violation happens after it returned.
    assert.deepEqual(await background.run(SAMPLE), SAMPLE);
    const deadline = Date.now() + 10_000;
    while (background.status().state !== "stopped") {
      if (Date.now() > deadline) assert.fail("the background violation was not reported");
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(background.status().faults, 1);
    assert.match(
      background.status().error ?? "",
      /was stopped: a background task needed env access to "PLUGIN_URL_TEST_SECRET"/,
    );
    await assert.rejects(background.run(SAMPLE), PluginPermissionError);
  });
});

Deno.test("the Worker gets exactly the declared permissions and nothing else", () => {
  assert.deepEqual(
    workerPermissions({ net: ["api.example.com:443"], read: ["/var/log/app"], env: ["TOKEN"] }),
    {
      net: ["api.example.com:443"],
      read: ["/var/log/app"],
      env: ["TOKEN"],
      write: false,
      run: false,
      ffi: false,
      sys: false,
      import: false,
    },
  );
  assert.deepEqual(workerPermissions({ net: [], read: [], env: [] }), {
    net: false,
    read: false,
    env: false,
    write: false,
    run: false,
    ffi: false,
    sys: false,
    import: false,
  });
});
