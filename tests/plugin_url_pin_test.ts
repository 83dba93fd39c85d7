/**
 * Pinning URL plugins served by a real HTTP server on 127.0.0.1: the whole
 * graph is recorded with a sha256 per module, tampering with a pinned
 * version is refused, a forced re-pin and a new version make new pins.
 */
import assert from "node:assert/strict";
import {
  deletePin,
  listPins,
  PinError,
  type PinEvent,
  pinPlugin,
  PinTamperError,
  readPin,
  watchPins,
} from "../services/plugin_loader/mod.ts";
import { ConfigError } from "../services/config/issues.ts";
import { openSite } from "./fixtures/url_plugins/site.ts";
import { withEtcd } from "./harness/etcd.ts";
import { openStore } from "../services/store/mod.ts";
import { withSite } from "./fixtures/url_plugins/store.ts";

const PREFIX = "/monitor";

Deno.test("pin records every module of the graph with its sha256, version from the URL", async () => {
  await withSite(async (site, store) => {
    const cacheDir = await site.tempDir();
    const before = Date.now() / 1000;
    const outcome = await pinPlugin(store, PREFIX, "scale", {
      url: site.url("/scale@1.0.0/mod.ts"),
      permissions: { net: ["api.example.com:443"], env: ["SCALE_TOKEN"] },
      config: { factor: 2 },
    }, { cacheDir });
    const after = Date.now() / 1000;
    assert.equal(outcome.action, "created");
    const pin = outcome.pin;
    assert.equal(pin.name, "scale");
    assert.equal(pin.version, "1.0.0");
    assert.equal(pin.url, site.url("/scale@1.0.0/mod.ts"));
    assert.ok(pin.pinned_at >= before && pin.pinned_at <= after);
    assert.deepEqual(pin.permissions, {
      net: ["api.example.com:443"],
      read: [],
      env: ["SCALE_TOKEN"],
    });
    assert.deepEqual(pin.config, { factor: 2 });
    // Code modules only: the type-only import of plugins/api.ts never runs and is not pinned.
    const files = [
      "/scale@1.0.0/lib/scale.ts",
      "/scale@1.0.0/meta.json",
      "/scale@1.0.0/mod.ts",
      "/shared/util.js",
    ];
    assert.deepEqual(pin.modules.map((m) => m.url), files.map((f) => site.url(f)));
    for (const file of files) {
      const module = pin.modules.find((m) => m.url === site.url(file))!;
      assert.equal(module.integrity, await site.sri(file), file);
    }
    const entry = pin.modules.find((m) => m.url === pin.entry)!;
    assert.deepEqual(entry.dependencies.map((d) => d.specifier).sort(), [
      "../shared/util.js",
      "./lib/scale.ts",
      "./meta.json",
    ]);
    // Stored through the Store port at <prefix>/plugins/<name>, and readable back.
    const stored = await store.get("/monitor/plugins/scale");
    assert.ok(stored);
    assert.deepEqual(JSON.parse(stored.value), pin);
    assert.deepEqual(await readPin(store, PREFIX, "scale"), pin);
  });
});

Deno.test("re-pinning unchanged bytes writes nothing; new settings update the pin", async () => {
  await withSite(async (site, store) => {
    const spec = { url: site.url("/scale@1.0.0/mod.ts"), config: { factor: 2 } };
    const first = await pinPlugin(store, PREFIX, "scale", spec);
    const revision = (await store.get("/monitor/plugins/scale"))!.modRevision;
    const again = await pinPlugin(store, PREFIX, "scale", spec);
    assert.equal(again.action, "unchanged");
    assert.equal((await store.get("/monitor/plugins/scale"))!.modRevision, revision);
    const updated = await pinPlugin(store, PREFIX, "scale", { ...spec, config: { factor: 5 } });
    assert.equal(updated.action, "updated");
    assert.equal(updated.pin.integrity, first.pin.integrity);
    assert.equal(updated.pin.pinned_at, first.pin.pinned_at);
    assert.deepEqual((await readPin(store, PREFIX, "scale"))!.config, { factor: 5 });
  });
});

Deno.test("a changed byte in a pinned version is refused as tampering; a forced re-pin is allowed", async () => {
  await withSite(async (site, store) => {
    const spec = { url: site.url("/scale@1.0.0/mod.ts") };
    const first = await pinPlugin(store, PREFIX, "scale", spec);
    const storedBefore = (await store.get("/monitor/plugins/scale"))!;
    await site.changeOneByte("/scale@1.0.0/lib/scale.ts", "*", "+");

    const error = await pinPlugin(store, PREFIX, "scale", spec).then(
      () => assert.fail("re-pinning changed bytes must be refused"),
      (e) => e,
    );
    assert.ok(error instanceof PinTamperError, String(error));
    assert.match(error.message, /plugin "scale"/);
    assert.match(error.message, /version 1\.0\.0/);
    assert.match(error.message, /scale@1\.0\.0\/lib\/scale\.ts/);
    assert.deepEqual(error.changed, [site.url("/scale@1.0.0/lib/scale.ts")]);
    const storedAfter = (await store.get("/monitor/plugins/scale"))!;
    assert.equal(storedAfter.modRevision, storedBefore.modRevision);
    assert.equal(storedAfter.value, storedBefore.value);

    const forced = await pinPlugin(store, PREFIX, "scale", spec, { force: true });
    assert.equal(forced.action, "forced");
    assert.deepEqual(forced.changed, [site.url("/scale@1.0.0/lib/scale.ts")]);
    assert.notEqual(forced.pin.integrity, first.pin.integrity);
    const lib = forced.pin.modules.find((m) => m.url.endsWith("/lib/scale.ts"))!;
    assert.equal(lib.integrity, await site.sri("/scale@1.0.0/lib/scale.ts"));
    // The forced bytes are now the reference: pinning them again changes nothing.
    assert.equal((await pinPlugin(store, PREFIX, "scale", spec)).action, "unchanged");
  });
});

Deno.test("a new version makes a new pin; the earlier version stays protected", async () => {
  await withSite(async (site, store) => {
    const v1 = await pinPlugin(store, PREFIX, "scale", { url: site.url("/scale@1.0.0/mod.ts") });
    const v2 = await pinPlugin(store, PREFIX, "scale", { url: site.url("/scale@1.1.0/mod.ts") });
    assert.equal(v2.action, "new-version");
    assert.equal(v2.pin.version, "1.1.0");
    assert.equal(v2.previous?.version, "1.0.0");
    assert.deepEqual(v2.pin.history.map((h) => [h.version, h.integrity]), [
      ["1.0.0", v1.pin.integrity],
    ]);
    assert.equal((await readPin(store, PREFIX, "scale"))!.version, "1.1.0");

    // Going back to 1.0.0 after its bytes changed is still tampering.
    await site.changeOneByte("/shared/util.js", "[", "<");
    const error = await pinPlugin(store, PREFIX, "scale", { url: site.url("/scale@1.0.0/mod.ts") })
      .then(() => assert.fail("expected a refusal"), (e) => e);
    assert.ok(error instanceof PinTamperError, String(error));
    assert.match(error.message, /version 1\.0\.0/);
    assert.equal((await readPin(store, PREFIX, "scale"))!.version, "1.1.0");
  });
});

Deno.test("an explicit version must agree with the URL; one without a version in the URL is accepted", async () => {
  await withSite(async (site, store) => {
    await site.write("/plain/mod.js", "export default () => ({ run: (s) => s });\n");
    const outcome = await pinPlugin(store, PREFIX, "plain", {
      url: site.url("/plain/mod.js"),
      version: "2.0.0",
    });
    assert.equal(outcome.pin.version, "2.0.0");
    await assert.rejects(
      pinPlugin(store, PREFIX, "scale", { url: site.url("/scale@1.0.0/mod.ts"), version: "1.0.1" }),
      (e: Error) =>
        e instanceof ConfigError &&
        /plugins\.scale\.version: expected the version in the URL \(1\.0\.0\)/.test(e.message),
    );
    await assert.rejects(
      pinPlugin(store, PREFIX, "plain", { url: site.url("/plain/mod.js") }),
      (e: Error) =>
        e instanceof ConfigError && /plugins\.plain\.version: expected a version/.test(e.message),
    );
  });
});

Deno.test("CommonJS npm: dependencies and missing modules are refused with the module named", async () => {
  await withSite(async (site, store) => {
    await site.write(
      "/npmdep@1.0.0/mod.js",
      'import leftPad from "npm:left-pad@1.3.0";\nexport default () => ({ run: (s) => s, pad: leftPad });\n',
    );
    const npm = await pinPlugin(store, PREFIX, "npmdep", { url: site.url("/npmdep@1.0.0/mod.js") })
      .then(() => assert.fail("a CommonJS npm: package must be refused"), (e) => e);
    assert.ok(npm instanceof PinError, String(npm));
    assert.match(npm.message, /plugin "npmdep"/);
    assert.match(npm.message, /npm:left-pad@1\.3\.0/);
    assert.match(npm.message, /npm package left-pad@1\.3\.0 is CommonJS/);

    await site.write(
      "/broken@1.0.0/mod.js",
      'import { x } from "./missing.js";\nexport default () => ({ run: (s) => s, x });\n',
    );
    const missing = await pinPlugin(store, PREFIX, "broken", {
      url: site.url("/broken@1.0.0/mod.js"),
    })
      .then(() => assert.fail("a missing module must be refused"), (e) => e);
    assert.ok(missing instanceof PinError, String(missing));
    assert.ok(missing.message.includes(site.url("/broken@1.0.0/missing.js")), missing.message);
    assert.equal(await store.get("/monitor/plugins/npmdep"), undefined);
    assert.equal(await store.get("/monitor/plugins/broken"), undefined);
  });
});

Deno.test("circular imports are refused when pinning, naming the cycle", async () => {
  await withSite(async (site, store) => {
    await site.write(
      "/loop@1.0.0/mod.js",
      'import { b } from "./b.js";\nexport const a = 1;\nexport default () => ({ run: (s) => s, b });\n',
    );
    await site.write(
      "/loop@1.0.0/b.js",
      'import { a } from "./mod.js";\nexport const b = () => a;\n',
    );
    await assert.rejects(
      pinPlugin(store, PREFIX, "loop", { url: site.url("/loop@1.0.0/mod.js") }),
      (e: Error) =>
        e instanceof PinError &&
        e.message.includes(
          `circular imports are not supported: ${site.url("/loop@1.0.0/mod.js")} -> ` +
            `${site.url("/loop@1.0.0/b.js")} -> ${site.url("/loop@1.0.0/mod.js")}`,
        ),
    );
  });
});

Deno.test("bad declarations name the key and what was expected", async () => {
  await withSite(async (site, store) => {
    const url = site.url("/scale@1.0.0/mod.ts");
    const cases: [unknown, RegExp][] = [
      [
        { url, permissions: { write: ["/tmp"] } },
        /plugins\.scale\.permissions\.write: expected one of net, read, env/,
      ],
      [
        { url, permissions: { net: ["http://x"] } },
        /plugins\.scale\.permissions\.net\[0\]: expected a host or host:port/,
      ],
      [
        { url, permissions: { read: ["relative/path"] } },
        /plugins\.scale\.permissions\.read\[0\]: expected an absolute path/,
      ],
      [
        { url, permissions: { env: ["A-B"] } },
        /permissions\.env\[0\]: expected an environment variable name/,
      ],
      [{ url, permisions: {} }, /plugins\.scale\.permisions: .*did you mean "permissions"/],
      [
        { url: "ftp://example.com/x@1.0.0/mod.ts" },
        /plugins\.scale\.url: expected an absolute https:, http: or file: URL/,
      ],
      [{ url, config: [1] }, /plugins\.scale\.config: expected a mapping/],
    ];
    for (const [spec, pattern] of cases) {
      await assert.rejects(
        // deno-lint-ignore no-explicit-any
        pinPlugin(store, PREFIX, "scale", spec as any),
        (e: Error) => e instanceof ConfigError && pattern.test(e.message),
        JSON.stringify(spec),
      );
    }
    await assert.rejects(
      pinPlugin(store, PREFIX, "no/slash", { url }),
      /plugin name "no\/slash": expected letters/,
    );
    assert.deepEqual((await store.list("/monitor/")).items, []);
  });
});

Deno.test("listPins and watchPins see pins, new versions and removals; invalid pins are reported", async () => {
  await withSite(async (site, store) => {
    await pinPlugin(store, PREFIX, "scale", { url: site.url("/scale@1.0.0/mod.ts") });
    await store.put("/monitor/plugins/junk", "{not json");
    const events: PinEvent[] = [];
    let wake = () => {};
    const watcher = await watchPins(store, PREFIX, (event) => {
      events.push(event);
      wake();
    });
    const waitFor = async (count: number) => {
      const deadline = Date.now() + 10_000;
      while (events.length < count) {
        if (Date.now() > deadline) {
          assert.fail(`expected ${count} pin events, saw ${events.length}`);
        }
        let timer: ReturnType<typeof setTimeout> | undefined;
        await new Promise<void>((resolve) => {
          wake = resolve;
          timer = setTimeout(resolve, 100);
        });
        clearTimeout(timer);
      }
    };
    try {
      await waitFor(2);
      assert.deepEqual(events.map((e) => [e.type, e.name]).sort(), [["invalid", "junk"], [
        "put",
        "scale",
      ]]);
      const invalid = events.find((e) => e.type === "invalid");
      assert.match(
        invalid?.type === "invalid" ? invalid.error.message : "",
        /\/monitor\/plugins\/junk/,
      );
      await pinPlugin(store, PREFIX, "scale", { url: site.url("/scale@1.1.0/mod.ts") });
      await waitFor(3);
      const put = events[2];
      assert.equal(put.type, "put");
      assert.equal(put.type === "put" ? put.pin.version : "", "1.1.0");
      assert.equal(await deletePin(store, PREFIX, "scale"), true);
      await waitFor(4);
      assert.deepEqual([events[3].type, events[3].name], ["delete", "scale"]);
    } finally {
      await watcher.close();
    }
    const listed = await listPins(store, PREFIX);
    assert.deepEqual(listed.pins, []);
    assert.deepEqual(listed.invalid.map((i) => i.key), ["/monitor/plugins/junk"]);
  });
});

Deno.test("pins on a real etcd: readable with etcdctl, tampering refused there too", async () => {
  await withEtcd(async (etcd) => {
    const site = await openSite();
    const store = await openStore({
      backend: "etcd",
      endpoints: [etcd.endpoint],
      prefix: PREFIX,
      path: "",
    });
    try {
      const spec = { url: site.url("/scale@1.0.0/mod.ts"), config: { factor: 2 } };
      const { pin } = await pinPlugin(store, PREFIX, "scale", spec);
      const text = await etcd.etcdctl("get", "/monitor/plugins/scale", "--print-value-only");
      assert.deepEqual(JSON.parse(text), pin);
      await site.changeOneByte("/scale@1.0.0/meta.json", "1", "2");
      await assert.rejects(pinPlugin(store, PREFIX, "scale", spec), PinTamperError);
      assert.deepEqual(
        JSON.parse(await etcd.etcdctl("get", "/monitor/plugins/scale", "--print-value-only")),
        pin,
      );
      assert.equal(
        (await pinPlugin(store, PREFIX, "scale", spec, { force: true })).action,
        "forced",
      );
    } finally {
      await store.close();
      await site.cleanup();
    }
  });
});
