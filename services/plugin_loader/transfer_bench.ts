/**
 * How a sample should cross into a plugin's Worker: as a pre-serialized JSON
 * string (what the loader does) or as an object (structured clone). Each
 * bench is a full round trip of a ~2 KB sample through a Worker that reads
 * it and sends it back the same way.
 *
 * Run: `deno bench --unstable-worker-options services/plugin_loader/transfer_bench.ts`
 *
 * @module
 */

function sample(): { timestamp: number; metrics: Record<string, number> } {
  const metrics: Record<string, number> = {};
  for (let i = 0; i < 80; i++) metrics[`metric ${i}`] = Math.random() * 1000;
  return { timestamp: Date.now() / 1000, metrics };
}

const SAMPLE = sample();
/** Size of the sample as JSON, printed once. */
export const SAMPLE_BYTES = JSON.stringify(SAMPLE).length;

const ECHO = `self.onmessage = (event) => {
  if (typeof event.data === "string") {
    const value = JSON.parse(event.data);
    self.postMessage(JSON.stringify(value));
  } else {
    self.postMessage(event.data);
  }
};`;

const url = URL.createObjectURL(new Blob([ECHO], { type: "text/javascript" }));
const worker = new Worker(url, { type: "module", deno: { permissions: "none" } });

function roundTrip(message: unknown): Promise<unknown> {
  return new Promise((resolve) => {
    worker.onmessage = (event) => resolve(event.data);
    worker.postMessage(message);
  });
}

Deno.bench({
  name: `structured clone of a ${SAMPLE_BYTES}-byte sample (round trip)`,
  group: "sample into a Worker",
  async fn() {
    const back = await roundTrip(SAMPLE) as typeof SAMPLE;
    if (back.timestamp !== SAMPLE.timestamp) throw new Error("bad echo");
  },
});

Deno.bench({
  name: `pre-serialized JSON string of a ${SAMPLE_BYTES}-byte sample (round trip)`,
  group: "sample into a Worker",
  baseline: true,
  async fn() {
    const back = JSON.parse(await roundTrip(JSON.stringify(SAMPLE)) as string);
    if (back.timestamp !== SAMPLE.timestamp) throw new Error("bad echo");
  },
});

const sinkUrl = URL.createObjectURL(
  new Blob(["self.onmessage = () => {};"], { type: "text/javascript" }),
);
const sink = new Worker(sinkUrl, { type: "module", deno: { permissions: "none" } });

Deno.bench({
  name: "postMessage(object): cost on the sending thread",
  group: "sending side only",
  fn() {
    sink.postMessage(SAMPLE);
  },
});

Deno.bench({
  name: "postMessage(JSON.stringify(object)): cost on the sending thread",
  group: "sending side only",
  baseline: true,
  fn() {
    sink.postMessage(JSON.stringify(SAMPLE));
  },
});

const TEXT = JSON.stringify(SAMPLE);

Deno.bench({
  name: "postMessage(string already serialized): cost on the sending thread",
  group: "sending side only",
  fn() {
    sink.postMessage(TEXT);
  },
});

Deno.bench({
  name: "structuredClone(object)",
  group: "copy in one thread",
  fn() {
    structuredClone(SAMPLE);
  },
});

Deno.bench({
  name: "JSON.parse(JSON.stringify(object))",
  group: "copy in one thread",
  baseline: true,
  fn() {
    JSON.parse(JSON.stringify(SAMPLE));
  },
});

globalThis.addEventListener("unload", () => {
  worker.terminate();
  sink.terminate();
  URL.revokeObjectURL(url);
  URL.revokeObjectURL(sinkUrl);
});
