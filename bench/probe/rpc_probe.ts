/**
 * Server CPU per message: `deno run -A bench/probe/rpc_probe.ts <variant> [connections] [seconds]`.
 * Starts rpc_probe_server.ts, two agent_sim processes sharing the connections
 * (1 msg/s each), and reads the server's CPU time from /proc over the rate run.
 */
import { startAgentSim } from "../sim_client.ts";
import { lines } from "../support.ts";

const variant = Deno.args[0];
const connections = Number(Deno.args[1] ?? 3000);
const seconds = Number(Deno.args[2] ?? 30);
const server = new Deno.Command("deno", {
  args: [
    "run",
    "-A",
    ...(Deno.env.get("PROF") ? ["--cpu-prof", `--cpu-prof-dir=${Deno.env.get("PROF")}`] : []),
    new URL("./rpc_probe_server.ts", import.meta.url).pathname,
    variant,
  ],
  stdout: "piped",
  stderr: "inherit",
}).spawn();
const first = await lines(server.stdout)[Symbol.asyncIterator]().next();
const port = JSON.parse(first.value).port;
const tick = () => {
  const f = Deno.readTextFileSync(`/proc/${server.pid}/stat`).split(") ")[1].split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;
};
const rss = () =>
  Number(/VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${server.pid}/status`))![1]) / 1024;
const sims = [startAgentSim(), startAgentSim()];
const per = Math.ceil(connections / sims.length);
const t0 = performance.now();
await Promise.all(
  sims.map((s, i) =>
    s.request({ op: "connect", address: `127.0.0.1:${port}`, count: per, prefix: `s${i}` }, 300_000)
  ),
);
const connectCpu = tick();
console.log(
  `connected ${per * sims.length} in ${Math.round(performance.now() - t0)} ms, server cpu ${
    connectCpu.toFixed(2)
  } s`,
);
await new Promise((r) => setTimeout(r, 3000));
const c0 = tick();
const w0 = performance.now();
const results = await Promise.all(
  sims.map((s) =>
    s.request({ op: "rate", ms: seconds * 1000, perSecond: 1 }, seconds * 1000 + 60_000)
  ),
);
const c1 = tick();
const wall = (performance.now() - w0) / 1000;
const acked = results.reduce((a, r) => a + Number(r.acked), 0);
const sent = results.reduce((a, r) => a + Number(r.sent), 0);
const cpu = c1 - c0;
console.log(JSON.stringify({
  variant,
  connections: per * sims.length,
  sent,
  acked,
  cpuS: +cpu.toFixed(2),
  wallS: +wall.toFixed(1),
  cpuPct: +(100 * cpu / wall).toFixed(1),
  usPerMsg: +(1e6 * cpu / acked).toFixed(1),
  msgsPerCpuS: Math.round(acked / cpu),
  rssMiB: Math.round(rss()),
  ackP50: results.map((r) => r.ackP50),
  ackP99: results.map((r) => r.ackP99),
}));
await Promise.all(sims.map((s) => s.close()));
server.kill("SIGTERM");
await server.status;
Deno.exit(0);
