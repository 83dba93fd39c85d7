/**
 * URL plugins take many samples in one Worker message (runBatch): the same
 * results, failure counting, disabling and sandbox stops as one sample at a
 * time through Pipeline.run.
 */
import assert from "node:assert/strict";
import { Pipeline, type PipelineResult, type PluginState } from "../services/agent/pipeline.ts";
import { createUrlPluginLoader } from "../services/agent/url_plugins.ts";
import { getLogger } from "../services/common/log.ts";
import type { PluginSpec } from "../services/config/agent_config.ts";
import {
  loadUrlPlugin,
  pinKey,
  pinPlugin,
  PluginRuntimeError,
  PluginTimeoutError,
} from "../services/plugin_loader/mod.ts";
import type { PluginContext, Sample } from "../plugins/api.ts";
import { withSite } from "./fixtures/url_plugins/store.ts";

const context: PluginContext = {
  agentId: "agent-b",
  hostname: "host-b",
  interval: 1,
  log: () => {},
  emitAlert: () => {},
};

const sample = (i: number, extra: Record<string, number> = {}): Sample => ({
  timestamp: 1000 + i,
  metrics: { cpu: i, ...extra },
});

Deno.test("URL plugin runBatch: outcomes in order, as run() one at a time; stops at a throw; timeouts", async () => {
  await withSite(async (site, store) => {
    const { pin } = await pinPlugin(store, "/monitor", "batchy", {
      url: site.url("/batchy@1.0.0/mod.ts"),
    });
    const cacheDir = await site.tempDir();
    const one = await loadUrlPlugin(pin, { cacheDir, timeoutMs: 300 });
    const many = await loadUrlPlugin(pin, { cacheDir, timeoutMs: 300 });
    try {
      await one.initialize({}, context);
      await many.initialize({}, context);
      const samples = [sample(0), sample(1, { drop: 1 }), sample(2, { bad: 1 }), sample(3)];
      const sequential: Array<{ v?: Sample | null; e?: Error }> = [];
      for (const s of samples) {
        sequential.push(await one.run(s).then((v) => ({ v }), (e) => ({ e })));
      }
      const batched = await many.runBatch(samples);
      assert.equal(batched.length, 4);
      assert.deepEqual(batched[0], { ok: true, sample: sequential[0].v });
      assert.deepEqual(batched[0], {
        ok: true,
        sample: { ...sample(0), metrics: { cpu: 0, seen: 1 } },
      });
      assert.deepEqual(batched[1], { ok: true, sample: null });
      assert.ok(!batched[2].ok && batched[2].error instanceof PluginRuntimeError);
      assert.equal(
        (batched[2] as { error: Error }).error.message,
        sequential[2].e?.message,
      );
      assert.deepEqual(batched[3], { ok: true, sample: sequential[3].v });

      // A throw ends the batch there: the rest were not run (the plugin's counter says so).
      const stopped = await many.runBatch([sample(4), sample(5, { throw: 1 }), sample(6)]);
      assert.equal(stopped.length, 2);
      assert.deepEqual(stopped[0], {
        ok: true,
        sample: { ...sample(4), metrics: { cpu: 4, seen: 5 } },
      });
      assert.ok(!stopped[1].ok);
      assert.match(String((stopped[1] as { error: Error }).error), /thrown on purpose at 6/);
      assert.deepEqual(await many.runBatch([sample(7)]), [
        { ok: true, sample: { ...sample(7), metrics: { cpu: 7, seen: 7 } } },
      ]);

      // Over the run() budget (300 ms): that sample is a timeout, the others are answered
      // (the batch's own budget is 300 ms per sample: 1.2 s here).
      const slow = await many.runBatch([
        sample(8, { slow: 400 }),
        sample(9),
        sample(10),
        sample(11),
      ]);
      assert.ok(!slow[0].ok && slow[0].timeout && slow[0].error instanceof PluginTimeoutError);
      assert.deepEqual(slow.slice(1).map((o) => o.ok), [true, true, true]);
      assert.equal(many.status().state, "ready");
      assert.deepEqual(await many.runBatch([]), []);
    } finally {
      await one.close();
      await many.close();
    }
  });
});

Deno.test("pipeline runBatch with a URL plugin: same samples, counts and states as run() one at a time; a sandbox violation disables it at once", async () => {
  await withSite(async (site, store) => {
    const secret = `${await site.tempDir()}/secret.txt`;
    await Deno.writeTextFile(secret, "no");
    await pinPlugin(store, "/monitor", "batchy", { url: site.url("/batchy@1.0.0/mod.ts") });
    const pinText = (await store.get(pinKey("/monitor", "batchy")))!.value;
    const pins = new Map([["batchy", pinText]]);
    const cacheDir = await site.tempDir();
    const log = getLogger("test/batch");
    const pipeline = () =>
      new Pipeline({
        agentId: "agent-b",
        hostname: "host-b",
        interval: () => 1,
        emitAlert: () => {},
        log,
        loadUrlPlugin: createUrlPluginLoader({
          pins: () => pins,
          pinPrefix: "/monitor/plugins/",
          cacheDir,
          timeoutMs: () => 1000,
          log: () => {},
        }),
      });
    const spec: PluginSpec = {
      name: "batchy",
      kind: "url",
      url: site.url("/batchy@1.0.0/mod.ts"),
      config: { path: secret },
    };
    const limits = { timeoutMs: 1000, maxFailures: 2 };
    const a = pipeline();
    const b = pipeline();
    try {
      await a.apply([spec], limits, pins);
      await b.apply([spec], limits, pins);
      // Two failures in a row disable it (maxFailures 2): samples 5.. pass it unchanged.
      const samples = [
        sample(0),
        sample(1, { throw: 1 }),
        sample(2, { drop: 1 }),
        sample(3, { bad: 1 }),
        sample(4, { throw: 1 }),
        sample(5),
        sample(6),
      ];
      const sequential: PipelineResult[] = [];
      for (const s of samples) sequential.push(await a.run(s));
      const batched = await b.runBatch(samples);
      assert.deepEqual(batched, sequential);
      const counts = (p: Pipeline) =>
        p.states().map(({ state, runs, failures, dropped, consecutive_failures }: PluginState) => ({
          state,
          runs,
          failures,
          dropped,
          consecutive_failures,
        }));
      assert.deepEqual(counts(b), counts(a));
      assert.equal(b.states()[0].state, "disabled");
      assert.deepEqual(batched[5], { sample: sample(5) }, "passes a disabled plugin unchanged");

      // Another chance, then a read it was not granted: disabled at once, the rest unchanged.
      await a.retryDisabled();
      await b.retryDisabled();
      const violation = [sample(10), sample(11, { read: 1 }), sample(12)];
      const seq2: PipelineResult[] = [];
      for (const s of violation) seq2.push(await a.run(s));
      const bat2 = await b.runBatch(violation);
      assert.deepEqual(bat2, seq2);
      assert.deepEqual(counts(b), counts(a));
      assert.equal(b.states()[0].state, "disabled");
      assert.match(String(b.states()[0].last_error), /read access/);
      assert.deepEqual(bat2[2], { sample: sample(12) });
    } finally {
      await a.close();
      await b.close();
    }
  });
});

Deno.test("pipeline runBatch with built-in plugins equals run() one at a time", async () => {
  const make = () =>
    new Pipeline({
      agentId: "agent-b",
      hostname: "host-b",
      interval: () => 1,
      emitAlert: () => {},
      log: getLogger("test/batch"),
    });
  const specs: PluginSpec[] = [
    { name: "duplicate_filter", kind: "builtin", config: {} },
    { name: "threshold_alert", kind: "builtin", config: { cpu: 50 } },
  ];
  const a = make();
  const b = make();
  try {
    await a.apply(specs, { timeoutMs: 1000, maxFailures: 3 });
    await b.apply(specs, { timeoutMs: 1000, maxFailures: 3 });
    const samples = [0, 0, 1, 1, 1, 60, 60, 70, 2].map((cpu, i) => ({
      timestamp: 2000 + i,
      metrics: { cpu, memory: 10 },
    }));
    const sequential: PipelineResult[] = [];
    for (const s of samples) sequential.push(await a.run(s));
    assert.deepEqual(await b.runBatch(samples), sequential);
    assert.deepEqual(b.states(), a.states());
  } finally {
    await a.close();
    await b.close();
  }
});
