/**
 * A real Prometheus (Debian `prometheus`, on loopback, scrape interval 1 s)
 * scrapes a real broker while a real agent process with `duplicate_filter`
 * streams to it: the exposition passes `promtool check metrics`; the cpu
 * series, which the filter sends only every fifth sample, has a point for
 * every scrape; the disk and network byte counters hold exactly what the
 * agent read and their rate() matches the agent's; once the agent is killed
 * its series end and `monitor_agent_up` turns 0.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { agentPermissions } from "../services/agent/permissions.ts";
import { setLogLevel } from "../services/common/log.ts";
import type { DataMessage } from "../services/common/messages.ts";
import { storePermissions } from "../services/store/mod.ts";
import { withBroker } from "./broker_fixture.ts";
import { delay, embeddedPath, tempDir, waitUntil } from "./broker_support.ts";
import { ServiceProcess } from "./e2e_support.ts";
import { freePort } from "./harness/free_port.ts";
import { requireComponents } from "./harness/provision.ts";

setLogLevel("warn");

const AGENT_MAIN = fileURLToPath(new URL("../services/agent/main.ts", import.meta.url));
const AGENT_ID = "prom-agent";
/** The duplicate filter's keep-alive: every metric at least every 5 samples. */
const MAX_SILENT = 5;
const COUNTERS = {
  "disk read": "monitor_disk_read_bytes_total",
  "disk write": "monitor_disk_written_bytes_total",
  "net in": "monitor_network_receive_bytes_total",
  "net out": "monitor_network_transmit_bytes_total",
} as const;

/** `deno run` flags: the agent's scoped permissions plus the embedded store's. */
function agentFlags(broker: string, storePath: string): string[] {
  const agent = agentPermissions({ broker });
  const store = storePermissions({
    backend: "embedded",
    endpoints: [],
    prefix: "/monitor",
    path: storePath,
  });
  const join = (list: string[]) => [...new Set(list)].join(",");
  return [
    "--no-prompt",
    `--allow-read=${join([...agent.read, ...store.read])}`,
    `--allow-write=${join([...agent.write, ...store.write])}`,
    `--allow-net=${join([...agent.net, ...store.net])}`,
    `--allow-env=${join([...agent.env, ...store.env])}`,
    `--allow-sys=${join(agent.sys)}`,
    `--allow-run=${join(agent.run)}`,
  ];
}

type Vector = Array<{ metric: Record<string, string>; value: [number, string] }>;
type Matrix = Array<{ metric: Record<string, string>; values: Array<[number, string]> }>;

/** A Prometheus HTTP API client for one server. */
class PromQL {
  constructor(readonly base: string) {}

  async #get<T>(path: string, params: Record<string, string>): Promise<T> {
    const url = `${this.base}${path}?${new URLSearchParams(params)}`;
    const response = await fetch(url);
    const body = await response.json();
    if (body.status !== "success") {
      throw new Error(`${url}: ${response.status} ${JSON.stringify(body)}`);
    }
    return body.data as T;
  }

  /** An instant query returning a vector. */
  async vector(query: string, time?: number): Promise<Vector> {
    const data = await this.#get<{ resultType: string; result: Vector }>("/api/v1/query", {
      query,
      ...(time === undefined ? {} : { time: String(time) }),
    });
    assert.equal(data.resultType, "vector", query);
    return data.result;
  }

  /** An instant query of a range selector (the raw scraped points). */
  async matrix(query: string, time: number): Promise<Matrix> {
    const data = await this.#get<{ resultType: string; result: Matrix }>("/api/v1/query", {
      query,
      time: String(time),
    });
    assert.equal(data.resultType, "matrix", query);
    return data.result;
  }

  /** A range query. */
  async range(query: string, start: number, end: number, step: number): Promise<Matrix> {
    const data = await this.#get<{ result: Matrix }>("/api/v1/query_range", {
      query,
      start: String(start),
      end: String(end),
      step: String(step),
    });
    return data.result;
  }

  /** The single value of an instant query, or undefined when the result is empty. */
  async scalar(query: string, time?: number): Promise<number | undefined> {
    const result = await this.vector(query, time);
    assert.ok(result.length <= 1, `${query}: expected one series, found ${result.length}`);
    return result.length === 0 ? undefined : Number(result[0].value[1]);
  }
}

Deno.test({
  name:
    "prometheus: a real Prometheus scrapes the broker; promtool passes; a filtered cpu has a point per scrape; counters rate() like the agent; a killed agent's series end and up turns 0",
  async fn() {
    const paths = requireComponents(["prometheus", "promtool"]);
    await withBroker({}, async ({ broker, bus, store, dir, adminUrl }) => {
      // Every sample the broker publishes, as the agent measured it.
      const published: DataMessage[] = [];
      const subscription = await bus.subscribe({
        topics: ["monitoring-data"],
        group: "prometheus-test",
        fromBeginning: true,
        handler: (message) => {
          const data = JSON.parse(message.value) as DataMessage;
          if (data.agent_id === AGENT_ID) published.push(data);
          return Promise.resolve();
        },
      });
      // tolerance 100: cpu (0-100 %) always counts as unchanged, as on a saturated host,
      // so the filter sends it only every MAX_SILENT samples; byte rates that change go out.
      await store.put(
        `/monitor/config/${AGENT_ID}`,
        JSON.stringify({
          interval: 1,
          heartbeat_ttl: 2,
          metrics: ["cpu", "memory", "disk read", "disk write", "net in", "net out"],
          plugins: [{
            name: "duplicate_filter",
            config: { tolerance: 100, max_silent_intervals: MAX_SILENT },
          }],
        }),
      );
      const promDir = await tempDir("monitor-prometheus-");
      const promPort = freePort();
      const target = broker.adminAddress!;
      await Deno.writeTextFile(
        `${promDir}/prometheus.yml`,
        [
          "global: { scrape_interval: 1s, scrape_timeout: 900ms, evaluation_interval: 1s }",
          "scrape_configs:",
          "  - job_name: monitor-broker",
          `    static_configs: [{ targets: ["${target}"] }]`,
          "",
        ].join("\n"),
      );
      let agent: ServiceProcess | undefined;
      let prometheus: ServiceProcess | undefined;
      try {
        agent = new ServiceProcess("agent", [
          ...agentFlags(broker.address, embeddedPath(dir)),
          AGENT_MAIN,
          "--supervised",
          "--broker",
          broker.address,
          "--id",
          AGENT_ID,
          "--store-backend",
          "embedded",
          "--state-dir",
          dir,
          "--log-level",
          "warn",
        ]);
        await waitUntil(() => published.length >= 2, 30_000, "the agent's first samples")
          .catch((error) => {
            throw new Error(`${error.message}\nagent output:\n${agent!.output}`);
          });
        prometheus = new ServiceProcess("prometheus", [
          `--config.file=${promDir}/prometheus.yml`,
          `--storage.tsdb.path=${promDir}/data`,
          `--web.listen-address=127.0.0.1:${promPort}`,
          "--log.level=warn",
        ], { command: paths.prometheus });
        const prom = new PromQL(`http://127.0.0.1:${promPort}`);
        await waitUntil(
          async () =>
            (await fetch(`${prom.base}/-/ready`).then((r) => r.text(), () => ""))
              .includes("Ready"),
          30_000,
          "Prometheus ready",
        ).catch((error) => {
          throw new Error(`${error.message}\nprometheus output:\n${prometheus!.output}`);
        });
        await waitUntil(
          async () => (await prom.scalar('up{job="monitor-broker"}')) === 1,
          15_000,
          "the first successful scrape",
        );
        const firstScrape = Date.now() / 1000;

        // promtool on the text exposition, as served.
        const text = await (await fetch(`${adminUrl}/metrics`)).text();
        const check = await new Deno.Command(paths.promtool, {
          args: ["check", "metrics"],
          stdin: "piped",
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        const writer = check.stdin.getWriter();
        await writer.write(new TextEncoder().encode(text));
        await writer.close();
        const checked = await check.output();
        const lint = new TextDecoder().decode(checked.stdout) +
          new TextDecoder().decode(checked.stderr);
        assert.equal(checked.code, 0, `promtool check metrics failed:\n${lint}\n${text}`);
        assert.equal(lint.trim(), "", "promtool has nothing to say");

        // Let Prometheus scrape for a while (OpenMetrics: it asks for it).
        const WINDOW = 15;
        while (Date.now() / 1000 < firstScrape + WINDOW + 5) await delay(500);
        const targets = await fetch(`${prom.base}/api/v1/targets`).then((r) => r.json());
        const active = targets.data.activeTargets[0];
        assert.equal(active.health, "up", JSON.stringify(active));
        assert.equal(active.lastError, "");
        const at = Math.floor(Date.now() / 1000);

        // cpu: a point for every scrape, although the filter sent it only every MAX_SILENT samples.
        const sel = `{agent="${AGENT_ID}"}`;
        // Successful scrapes (up is 1 for each).
        const scrapes = await prom.scalar(
          `sum_over_time(up{job="monitor-broker"}[${WINDOW}s])`,
          at,
        );
        const cpuPoints = await prom.scalar(
          `count_over_time(monitor_cpu_busy_percent${sel}[${WINDOW}s])`,
          at,
        );
        const memoryPoints = await prom.scalar(
          `count_over_time(monitor_memory_used_percent${sel}[${WINDOW}s])`,
          at,
        );
        const inWindow = published.filter((m) => m.timestamp > at - WINDOW && m.timestamp <= at);
        const withCpu = inWindow.filter((m) => "cpu" in m.metrics).length;
        console.log(
          `figures: ${scrapes} scrapes in ${WINDOW} s; count_over_time cpu ${cpuPoints}, memory ${memoryPoints}; ` +
            `the agent sent ${inWindow.length} samples, ${withCpu} of them with cpu`,
        );
        assert.ok(scrapes !== undefined && scrapes >= WINDOW - 2, `scrapes: ${scrapes}`);
        assert.equal(cpuPoints, scrapes, "a cpu point for every scrape");
        assert.equal(memoryPoints, scrapes, "a memory point for every scrape");
        assert.ok(withCpu < inWindow.length, "the duplicate filter held cpu back in some samples");
        assert.ok(withCpu <= Math.ceil(WINDOW / MAX_SILENT) + 1, `cpu sent ${withCpu} times`);
        for (const m of inWindow) {
          assert.equal(m.interval, 1);
          assert.equal(m.keepalive, MAX_SILENT);
          assert.deepEqual(Object.keys(m.counters ?? {}).sort(), Object.keys(COUNTERS).sort());
        }

        // Counters: every scraped value is one the agent read; rate() matches the agent's.
        for (const [metric, family] of Object.entries(COUNTERS)) {
          const [series] = await prom.matrix(`${family}${sel}[${WINDOW}s]`, at);
          assert.ok(series, `${family} scraped`);
          // When the agent read each value: the newest sample with it taken before the scrape.
          const readAt = (value: number, scrapedAt: number): number | undefined => {
            let best: number | undefined;
            for (const m of published) {
              if (m.counters?.[metric] !== value || m.timestamp > scrapedAt) continue;
              if (best === undefined || m.timestamp > best) best = m.timestamp;
            }
            return best;
          };
          const points = series.values.map(([t, v]) => [t, Number(v)] as const);
          assert.ok(points.length >= WINDOW - 2, `${family}: ${points.length} points`);
          for (let i = 0; i < points.length; i++) {
            const [t, v] = points[i];
            assert.ok(
              readAt(v, t) !== undefined,
              `${family} ${v} is a value the agent read before ${t}`,
            );
            if (i > 0) assert.ok(v >= points[i - 1][1], `${family} never goes down`);
          }
          const [t1, first] = points[0];
          const [tn, last] = points[points.length - 1];
          const agentSpan = readAt(last, tn)! - readAt(first, t1)!;
          const agentRate = agentSpan > 0 ? (last - first) / agentSpan : 0;
          const rate = await prom.scalar(`rate(${family}${sel}[${WINDOW}s])`, at);
          assert.ok(rate !== undefined && rate >= 0, `rate(${family}) = ${rate}`);
          console.log(
            `figures: rate(${family}[${WINDOW}s]) ${rate!.toFixed(1)} B/s; the agent's counters: ${
              agentRate.toFixed(1)
            } B/s over ${agentSpan.toFixed(1)} s`,
          );
          assert.ok(
            Math.abs(rate! - agentRate) <= 0.1 * Math.max(rate!, agentRate) + 1,
            `rate(${family}) ${rate} vs the agent's ${agentRate}`,
          );
          const rates = await prom.range(`rate(${family}${sel}[5s])`, firstScrape + 5, at, 1);
          for (const [, v] of rates[0]?.values ?? []) {
            assert.ok(Number(v) >= 0, `rate(${family}[5s]) ${v} >= 0`);
          }
        }

        // Kill the agent: no goodbye, the heartbeat lease expires.
        agent.kill("SIGKILL");
        await agent.exited();
        const killed = Date.now() / 1000;
        await waitUntil(
          async () => (await prom.scalar(`monitor_agent_up${sel}`)) === 0,
          20_000,
          "monitor_agent_up 0",
        );
        const downAfter = Date.now() / 1000 - killed;
        await delay(1500);
        assert.equal(await prom.scalar(`monitor_cpu_busy_percent${sel}`), undefined, "cpu ended");
        for (const family of Object.values(COUNTERS)) {
          assert.equal(await prom.scalar(`${family}${sel}`), undefined, `${family} ended`);
        }
        assert.equal(await prom.scalar(`monitor_agent_connected${sel}`), 0);
        const after = await (await fetch(`${adminUrl}/metrics`)).text();
        assert.doesNotMatch(after, /^monitor_cpu_busy_percent\{/m);
        console.log(
          `figures: monitor_agent_up 0 in Prometheus ${downAfter.toFixed(1)} s after SIGKILL`,
        );
      } finally {
        agent?.kill("SIGKILL");
        await agent?.exited().catch(() => {});
        await prometheus?.stop().catch(() => {});
        await subscription.close();
        await Deno.remove(promDir, { recursive: true }).catch(() => {});
      }
    });
  },
});
