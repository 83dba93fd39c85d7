import assert from "node:assert/strict";
import type { AlertEvent, Plugin, Sample } from "../../plugins/api.ts";
import type { PluginSpec } from "../config/agent_config.ts";
import { getLogger } from "../common/log.ts";
import { Pipeline } from "./pipeline.ts";

/** Test plugins (loaded through the URL plugin hook) by name. */
type Behaviour = (
  sample: Sample,
  calls: number,
) => Sample | undefined | Promise<Sample | undefined>;

interface Harness {
  pipeline: Pipeline;
  alerts: AlertEvent[];
  events: string[];
  stateChanges: number;
}

function harness(behaviours: Record<string, Behaviour>): Harness {
  const h: Harness = { alerts: [], events: [], stateChanges: 0, pipeline: undefined! };
  h.pipeline = new Pipeline({
    agentId: "p",
    hostname: "host",
    interval: () => 1,
    emitAlert: (alert) => h.alerts.push(alert),
    log: getLogger("test-pipeline"),
    onStateChange: () => h.stateChanges++,
    loadUrlPlugin: (spec) => {
      const behaviour = behaviours[spec.name];
      if (!behaviour) return Promise.reject(new Error(`no test plugin ${spec.name}`));
      let calls = 0;
      const plugin: Plugin = {
        name: spec.name,
        version: "0.0.1",
        initialize: (config) => {
          h.events.push(`init ${spec.name} ${JSON.stringify(config)}`);
        },
        run: (sample) => behaviour(sample, ++calls),
        finalize: () => {
          h.events.push(`finalize ${spec.name}`);
        },
      };
      return Promise.resolve(plugin);
    },
  });
  return h;
}

const url = (name: string, config: Record<string, unknown> = {}): PluginSpec => ({
  name,
  kind: "url",
  config,
});
const limits = { timeoutMs: 200, maxFailures: 3 };
const sample = (cpu: number): Sample => ({ timestamp: 100, metrics: { cpu } });

Deno.test("pipeline: plugins run in the configured order; sync and async; changes carry on", async () => {
  const h = harness({
    double: (s) => ({ ...s, metrics: { cpu: s.metrics.cpu * 2 } }),
    plus1: async (s) => {
      await Promise.resolve();
      return { ...s, metrics: { cpu: s.metrics.cpu + 1 } };
    },
  });
  try {
    await h.pipeline.apply([url("double"), url("plus1")], limits);
    assert.deepEqual((await h.pipeline.run(sample(5))).sample, sample(11));
    await h.pipeline.apply([url("plus1"), url("double")], limits);
    assert.deepEqual((await h.pipeline.run(sample(5))).sample, sample(12));
  } finally {
    await h.pipeline.close();
  }
});

Deno.test("pipeline: returning nothing drops the sample and names the plugin", async () => {
  const h = harness({ drop: () => undefined, never: () => assert.fail("runs after a drop") });
  try {
    await h.pipeline.apply([url("drop"), url("never")], limits);
    const result = await h.pipeline.run(sample(1));
    assert.equal(result.sample, undefined);
    assert.equal(result.droppedBy, "drop");
    assert.equal(h.pipeline.states()[0].dropped, 1);
  } finally {
    await h.pipeline.close();
  }
});

Deno.test("pipeline: a throwing plugin is counted, the sample continues with its input, then it is disabled", async () => {
  const h = harness({
    mutateThenThrow: (s) => {
      s.metrics.cpu = -1; // the pipeline hands each plugin a copy
      throw new Error("boom");
    },
    plus1: (s) => ({ ...s, metrics: { cpu: s.metrics.cpu + 1 } }),
  });
  try {
    await h.pipeline.apply([url("mutateThenThrow"), url("plus1")], limits);
    for (let i = 1; i <= 3; i++) {
      const result = await h.pipeline.run(sample(10));
      assert.deepEqual(
        result.sample,
        sample(11),
        "the sample goes on as the failing plugin got it",
      );
      const state = h.pipeline.states()[0];
      assert.equal(state.failures, i);
      assert.equal(state.consecutive_failures, i);
      assert.match(state.last_error ?? "", /run\(\) threw: boom/);
      assert.equal(state.state, i < 3 ? "failing" : "disabled");
    }
    assert.deepEqual(h.pipeline.problems(), ["plugin mutateThenThrow disabled: run() threw: boom"]);
    // Disabled: not called any more.
    assert.deepEqual((await h.pipeline.run(sample(1))).sample, sample(2));
    assert.equal(h.pipeline.states()[0].failures, 3);
    // reload gives it another chance.
    assert.deepEqual(await h.pipeline.retryDisabled(), ["mutateThenThrow"]);
    assert.equal(h.pipeline.states()[0].state, "active");
  } finally {
    await h.pipeline.close();
  }
});

Deno.test("pipeline: an async plugin overrunning its budget counts as a failure; success resets the streak", async () => {
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const h = harness({
    slowSometimes: (s, calls) =>
      calls === 2 ? s : new Promise((resolve) => {
        const id = setTimeout(() => {
          timers.delete(id);
          resolve(undefined);
        }, 600);
        timers.add(id);
      }),
  });
  try {
    await h.pipeline.apply([url("slowSometimes")], limits);
    assert.deepEqual((await h.pipeline.run(sample(3))).sample, sample(3));
    let state = h.pipeline.states()[0];
    assert.equal(state.state, "failing");
    assert.match(state.last_error ?? "", /took longer than its budget of 200 ms/);
    assert.deepEqual((await h.pipeline.run(sample(4))).sample, sample(4));
    state = h.pipeline.states()[0];
    assert.equal(state.state, "active");
    assert.equal(state.consecutive_failures, 0);
    assert.equal(state.failures, 1);
  } finally {
    for (const id of timers) clearTimeout(id);
    await h.pipeline.close();
  }
});

Deno.test("pipeline: a blocking synchronous plugin over budget is counted when it returns", async () => {
  const h = harness({
    busy: (s) => {
      const until = performance.now() + 250;
      while (performance.now() < until) { /* blocks the event loop */ }
      return { ...s, metrics: { cpu: 999 } };
    },
  });
  try {
    await h.pipeline.apply([url("busy")], limits);
    assert.deepEqual((await h.pipeline.run(sample(1))).sample, sample(1));
    assert.equal(h.pipeline.states()[0].failures, 1);
  } finally {
    await h.pipeline.close();
  }
});

Deno.test("pipeline: output that is not a sample counts as a failure", async () => {
  const h = harness({
    nan: (s) => ({ ...s, metrics: { cpu: NaN } }),
    list: () => [] as unknown as Sample,
  });
  try {
    await h.pipeline.apply([url("nan"), url("list")], limits);
    assert.deepEqual((await h.pipeline.run(sample(2))).sample, sample(2));
    const [nan, list] = h.pipeline.states();
    assert.match(nan.last_error ?? "", /metric "cpu" = NaN, expected a finite number/);
    assert.match(list.last_error ?? "", /returned a list/);
  } finally {
    await h.pipeline.close();
  }
});

Deno.test("pipeline: config changes finalize removed, initialize new, re-initialize changed settings", async () => {
  const h = harness({ a: (s) => s, b: (s) => s, c: (s) => s });
  try {
    await h.pipeline.apply([url("a", { x: 1 }), url("b")], limits);
    await h.pipeline.apply([url("a", { x: 2 }), url("c")], limits);
    await h.pipeline.apply([url("a", { x: 2 }), url("c")], limits);
    assert.deepEqual(h.events, [
      'init a {"x":1}',
      "init b {}",
      'init a {"x":2}',
      "init c {}",
      "finalize b",
    ]);
    assert.deepEqual(h.pipeline.states().map((s) => s.name), ["a", "c"]);
    await h.pipeline.close();
    assert.deepEqual(h.events.slice(-2), ["finalize a", "finalize c"]);
  } finally {
    await h.pipeline.close();
  }
});

Deno.test("pipeline: a plugin that cannot load is reported as failed; the rest runs", async () => {
  const h = harness({ ok: (s) => ({ ...s, metrics: { cpu: 7 } }) });
  try {
    await h.pipeline.apply([url("missing"), url("ok")], limits);
    const [missing] = h.pipeline.states();
    assert.equal(missing.state, "failed");
    assert.match(missing.last_error ?? "", /could not load: no test plugin missing/);
    assert.deepEqual((await h.pipeline.run(sample(1))).sample, sample(7));
  } finally {
    await h.pipeline.close();
  }
});

Deno.test("pipeline: built-in plugins by spec; alerts reach the agent through the context", async () => {
  const h = harness({});
  try {
    await h.pipeline.apply([
      { name: "threshold_alert", kind: "builtin", config: { cpu: 50, consecutive: 1 } },
      { name: "duplicate_filter", kind: "builtin", config: {} },
    ], limits);
    assert.deepEqual((await h.pipeline.run(sample(60))).sample, sample(60));
    assert.equal((await h.pipeline.run(sample(60))).droppedBy, "duplicate_filter");
    assert.deepEqual(h.alerts, [
      { metric: "cpu", value: 60, threshold: 50, state: "firing", timestamp: 100 },
    ]);
    assert.deepEqual(
      h.pipeline.states().map((s) => [s.name, s.kind, s.version, s.state]),
      [["threshold_alert", "builtin", "1.0.0", "active"], [
        "duplicate_filter",
        "builtin",
        "1.0.0",
        "active",
      ]],
    );
  } finally {
    await h.pipeline.close();
  }
});
