/**
 * Scenario 6: plugin overhead. Samples/s through the agent's plugin pipeline
 * (services/agent/pipeline.ts) with the built-in threshold_alert plugin
 * in-process, versus the same plugin's code served by a local HTTP server,
 * pinned (services/plugin_loader) and loaded by URL into a sandboxed Worker:
 * one sample at a time (`Pipeline.run`, as the agent runs one collection),
 * and in batches of {@linkcode BATCH} (`Pipeline.runBatch`: one Worker
 * message each way per batch), the overhead per sample amortized.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { Pipeline } from "../services/agent/pipeline.ts";
import { createUrlPluginLoader } from "../services/agent/url_plugins.ts";
import { getLogger } from "../services/common/log.ts";
import type { PluginSpec } from "../services/config/agent_config.ts";
import { pinKey, pinPlugin } from "../services/plugin_loader/mod.ts";
import { DEFAULT_STORE_PREFIX } from "../services/store/keys.ts";
import { embeddedStore } from "./backends.ts";
import { type BenchContext, median, type Row, type Scenario } from "./support.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const PREFIX = DEFAULT_STORE_PREFIX;
const THRESHOLDS = { cpu: 80, memory: 90, disk: 95 };

/**
 * Serves the built-in plugin's own source as a URL plugin: `plugin.ts` is
 * plugins/threshold_alert/mod.ts byte for byte (its imports are type-only),
 * `mod.ts` re-exports its factory as the default export URL plugins have.
 */
function servePlugin(): { origin: string; close(): Promise<void> } {
  const files: Record<string, string> = {
    "/threshold_alert@1.0.0/mod.ts":
      `export { createThresholdAlert as default } from "./plugin.ts";\n`,
    "/threshold_alert@1.0.0/plugin.ts": Deno.readTextFileSync(
      join(ROOT, "plugins/threshold_alert/mod.ts"),
    ),
  };
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (request) => {
      const body = files[new URL(request.url).pathname];
      return body === undefined
        ? new Response("not found", { status: 404 })
        : new Response(body, { headers: { "content-type": "application/typescript" } });
    },
  );
  return {
    origin: `http://127.0.0.1:${server.addr.port}`,
    close: () => server.shutdown(),
  };
}

function sample(i: number) {
  // Below every threshold, so no alert fires: the plugin's common path.
  return {
    timestamp: Date.now() / 1000,
    metrics: {
      cpu: 10 + (i % 50),
      memory: 40 + (i % 30),
      "disk read": 1000 * i,
      "disk write": 500 * i,
      "net in": 2000 * i,
      "net out": 100 * i,
      disk: 50,
    },
  };
}

/** Samples per `Pipeline.runBatch` call in the batched rows. */
export const BATCH = 100;

async function batchRate(pipeline: Pipeline, ms: number): Promise<number> {
  let count = 0;
  const started = performance.now();
  while (performance.now() - started < ms) {
    const samples = Array.from({ length: BATCH }, (_, i) => sample(count + i));
    const results = await pipeline.runBatch(samples);
    const dropped = results.find((r) => !r.sample);
    if (dropped) throw new Error(`bench: the pipeline dropped a sample (${dropped.droppedBy})`);
    count += BATCH;
  }
  return count / ((performance.now() - started) / 1000);
}

async function rate(pipeline: Pipeline, ms: number): Promise<number> {
  let count = 0;
  const started = performance.now();
  while (performance.now() - started < ms) {
    const result = await pipeline.run(sample(count));
    if (!result.sample) {
      throw new Error(`bench: the pipeline dropped a sample (${result.droppedBy})`);
    }
    count++;
  }
  return count / ((performance.now() - started) / 1000);
}

async function run(ctx: BenchContext): Promise<Row[]> {
  const reps = ctx.quick ? 2 : 5;
  const runMs = ctx.quick ? 500 : 3000;
  const scenario = "6 plugins";
  const dir = await ctx.tempDir("bench-plugins-");
  const cacheDir = join(dir, "plugin-cache");
  const site = servePlugin();
  const store = await embeddedStore(dir);
  const log = getLogger("bench/pipeline");
  const pipelineFor = (loader?: ReturnType<typeof createUrlPluginLoader>) =>
    new Pipeline({
      agentId: "bench",
      hostname: "bench",
      interval: () => 1,
      emitAlert: () => {},
      log,
      loadUrlPlugin: loader,
    });
  const builtin = pipelineFor();
  let url: Pipeline | undefined;
  const builtinRates: number[] = [];
  const urlRates: number[] = [];
  const ratios: number[] = [];
  const builtinBatchRates: number[] = [];
  const urlBatchRates: number[] = [];
  try {
    const pluginUrl = `${site.origin}/threshold_alert@1.0.0/mod.ts`;
    await pinPlugin(store, PREFIX, "threshold_url", { url: pluginUrl }, {
      cacheDir,
      workDir: join(dir, "work"),
    });
    const pinText = (await store.get(pinKey(PREFIX, "threshold_url")))?.value;
    if (!pinText) throw new Error("bench: the pin of threshold_url was not written");
    const pins = new Map([["threshold_url", pinText]]);
    url = pipelineFor(createUrlPluginLoader({
      pins: () => pins,
      pinPrefix: `${PREFIX}/plugins/`,
      cacheDir,
      timeoutMs: () => 1000,
      log: (name, level, message) => log.log(level, `${name}: ${message}`),
    }));
    const limits = { timeoutMs: 1000, maxFailures: 5 };
    const builtinSpec: PluginSpec = {
      name: "threshold_alert",
      kind: "builtin",
      config: THRESHOLDS,
    };
    const urlSpec: PluginSpec = {
      name: "threshold_url",
      kind: "url",
      url: pluginUrl,
      config: THRESHOLDS,
    };
    await builtin.apply([builtinSpec], limits);
    await url.apply([urlSpec], limits, pins);
    const failed = url.problems();
    if (failed.length) throw new Error(`bench: URL plugin did not load: ${failed.join("; ")}`);
    // Warm-up (JIT on both sides of the Worker boundary).
    await rate(builtin, 200);
    await rate(url, 200);
    await batchRate(builtin, 200);
    await batchRate(url, 200);
    for (let i = 0; i < reps; i++) {
      const b = await rate(builtin, runMs);
      const u = await rate(url, runMs);
      builtinRates.push(b);
      urlRates.push(u);
      ratios.push(u / b);
      builtinBatchRates.push(await batchRate(builtin, runMs));
      urlBatchRates.push(await batchRate(url, runMs));
    }
    ctx.progress(
      `plugins: built-in ${Math.round(median(builtinRates))} samples/s, URL/Worker ${
        Math.round(median(urlRates))
      } samples/s; batches of ${BATCH}: built-in ${
        Math.round(median(builtinBatchRates))
      }, URL/Worker ${Math.round(median(urlBatchRates))} samples/s`,
    );
  } finally {
    await builtin.close();
    await url?.close();
    await store.close();
    await site.close();
  }
  const note = `threshold_alert; Pipeline.run one sample at a time; median of ${reps} × ${
    runMs / 1000
  } s`;
  const perSample = (r: number) => 1e6 / r;
  return [
    {
      scenario,
      measure: "built-in plugin in-process: samples/s",
      value: median(builtinRates),
      unit: "samples/s",
      note,
    },
    {
      scenario,
      measure: "same plugin by URL in a sandboxed Worker: samples/s",
      value: median(urlRates),
      unit: "samples/s",
      note: `pinned from a local HTTP server, verified, run in a Worker without permissions`,
    },
    {
      scenario,
      measure: "ratio URL / built-in",
      value: median(ratios),
      unit: "×",
      note: `about ${
        Math.round(perSample(median(urlRates)) - perSample(median(builtinRates)))
      } µs more per sample`,
    },
    {
      scenario,
      measure: `built-in plugin, batches of ${BATCH}: samples/s`,
      value: median(builtinBatchRates),
      unit: "samples/s",
      note: "Pipeline.runBatch",
    },
    {
      scenario,
      measure: `same plugin by URL, batches of ${BATCH}: samples/s`,
      value: median(urlBatchRates),
      unit: "samples/s",
      note: "one Worker message each way per batch",
    },
    {
      scenario,
      measure: "URL plugin overhead per sample, batched",
      value: perSample(median(urlBatchRates)) - perSample(median(builtinBatchRates)),
      unit: "µs",
      note: `amortized over batches of ${BATCH}; goal <= 10 µs`,
    },
  ];
}

/** Scenario 6. */
export const pluginsScenario: Scenario = { id: "plugins", title: "6 plugins", run };
