import { join } from "node:path";
import { openBus } from "../services/bus/mod.ts";
import { DEFAULT_TOPICS } from "../services/common/messages.ts";
import { randomMetrics } from "./support.ts";
const dir = await Deno.makeTempDir();
const db = join(dir, "monitor.db");
const bus = await openBus({ backend: "embedded", brokers: [], path: db });
const analysis = new Deno.Command("deno", {
  args: [
    "run",
    "-A",
    "services/analysis/main.ts",
    "--supervised",
    "--state-dir",
    dir,
    "--http",
    "127.0.0.1:51191",
    "--log-level",
    "warn",
  ],
  stdout: "null",
  stderr: "inherit",
}).spawn();
let on = true;
const agents = 1000;
(async () => {
  let tick = 0;
  while (on) {
    const st = Date.now();
    const share = 100;
    const from = (tick % 10) * share;
    const msgs = [];
    for (let i = from; i < from + share; i++) {
      const id = `sim-${i}`;
      msgs.push({
        key: id,
        value: JSON.stringify({
          agent_id: id,
          hostname: id,
          timestamp: Date.now() / 1000,
          metrics: randomMetrics(),
          interval: 1,
        }),
      });
    }
    await bus.publish(DEFAULT_TOPICS.data, msgs);
    tick++;
    await new Promise((r) => setTimeout(r, Math.max(0, 100 - (Date.now() - st))));
  }
})();
await new Promise((r) => setTimeout(r, 6000));
// SSE client in Deno
const delays: number[] = [];
const res = await fetch("http://127.0.0.1:51191/api/events");
const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
const end = Date.now() + 20000;
let buf = "";
while (Date.now() < end) {
  const { value, done } = await reader.read();
  if (done) break;
  buf += value;
  let i;
  while ((i = buf.indexOf("\n\n")) >= 0) {
    const ev = buf.slice(0, i);
    buf = buf.slice(i + 2);
    if (ev.startsWith("event: samples")) {
      const now = Date.now() / 1000;
      for (const s of JSON.parse(ev.slice(ev.indexOf("data: ") + 6))) {
        delays.push((now - s.t) * 1000);
      }
    }
  }
}
await reader.cancel();
delays.sort((a, b) => a - b);
const stats = await (await fetch("http://127.0.0.1:51191/api/stats")).json();
console.log(
  "SSE in Deno: n",
  delays.length,
  "p50",
  delays[delays.length >> 1],
  "p99",
  delays[Math.floor(delays.length * 0.99)],
);
console.log("analysis delivery delay", stats.delivery_delay_ms, "samples/s", stats.samples_per_s);
on = false;
analysis.kill();
await analysis.status;
await bus.close();
await Deno.remove(dir, { recursive: true });
