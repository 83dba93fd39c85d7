/**
 * The dashboard in a real headless Chromium (playwright-core), against a
 * system started with `deno task up` (broker, analysis, local agent as
 * subprocesses on the embedded backends), plus a second agent started
 * alone (killed and restarted) and a bus publisher standing for an agent
 * whose metric never changes. One system serves every step.
 *
 * Set DASHBOARD_SCREENSHOTS=<dir> to keep the fleet and agent pages as PNG
 * files there (docs/ holds the ones the README shows).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { agentPermissionFlags } from "../services/agent/permissions.ts";
import { openBus } from "../services/bus/mod.ts";
import type { Bus } from "../services/bus/types.ts";
import { DEFAULT_TOPICS } from "../services/common/messages.ts";
import { openStore, storeKeys, storePermissionFlags } from "../services/store/mod.ts";
import type { Store, StoreSettings } from "../services/store/types.ts";
import { delay, waitUntil } from "./broker_support.ts";
import { mergePermissionFlags, ServiceProcess } from "./e2e_support.ts";
import { freePorts } from "./harness/free_port.ts";
import { launchChromium } from "./harness/browser.ts";

const WAIT_MS = 90_000;
const TTL_S = 3;

function monitorYaml(stateDir: string, ports: number[], summary = 10): string {
  return `state_dir: ${stateDir}
broker:
  listen: 127.0.0.1:${ports[0]}
  admin: 127.0.0.1:${ports[1]}
analysis:
  http: 127.0.0.1:${ports[2]}
  summary_interval: ${summary}
agent:
  id: dash-agent
agents:
  default:
    interval: 1
    heartbeat_ttl: ${TTL_S}
    metrics: [cpu, memory]
    plugins: [threshold_alert]
    plugin_configs:
      threshold_alert: { cpu: 99 }
`;
}

/** What the test reads of a canvas in the page (no DOM types in Deno). */
interface Canvas {
  width: number;
  height: number;
  getContext(kind: "2d"): {
    getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray };
  };
}

/** The text of the health badge of `agent` on the fleet page. */
function healthOf(page: Page, agent: string): Promise<string | null> {
  return page.locator(`tr[data-agent="${agent}"] .health`).first().textContent({ timeout: 1000 })
    .catch(() => null);
}

async function waitForHealth(page: Page, agent: string, wanted: string, ms: number) {
  const deadline = Date.now() + ms;
  let last: string | null = null;
  while (Date.now() < deadline) {
    last = await healthOf(page, agent);
    if (last === wanted) return;
    await delay(100);
  }
  throw new Error(`${agent} is not shown ${wanted} after ${ms} ms (shown: ${last})`);
}

async function chartData(page: Page, metric: string): Promise<Record<string, string>> {
  return await page.locator(`.chart[data-metric="${metric}"]`).evaluate((e) => ({
    ...(e as unknown as { dataset: Record<string, string> }).dataset,
  })).catch(() => ({}));
}

Deno.test("dashboard: fleet, charts, health, commands, configuration and history in Chromium", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "dashboard-" });
  const stateDir = join(dir, "state");
  const file = join(dir, "monitor.yaml");
  const ports = freePorts(3);
  const base = `http://127.0.0.1:${ports[2]}/`;
  await Deno.writeTextFile(file, monitorYaml(stateDir, ports));
  const up = new ServiceProcess("up", ["task", "up", "--config", file], { command: "deno" });
  const storeSettings: StoreSettings = {
    backend: "embedded",
    endpoints: [],
    prefix: "/monitor",
    path: join(stateDir, "monitor.db"),
  };
  const broker = `127.0.0.1:${ports[0]}`;
  const startAgentB = () =>
    new ServiceProcess("agent dash-b", [
      ...mergePermissionFlags(
        agentPermissionFlags({ broker }),
        storePermissionFlags(storeSettings),
      ),
      "services/agent/main.ts",
      "--supervised",
      "--broker",
      broker,
      "--id",
      "dash-b",
      "--state-dir",
      stateDir,
    ]);
  let agentB: ServiceProcess | undefined;
  let browser: Browser | undefined;
  let bus: Bus | undefined;
  let store: Store | undefined;
  let steadyTimer: ReturnType<typeof setInterval> | undefined;
  const shots = Deno.env.get("DASHBOARD_SCREENSHOTS");
  try {
    await up.waitForLine(
      /supervisor\| .*supervisor: dashboard: http:\/\/127\.0\.0\.1:\d+\//,
      WAIT_MS,
      "dashboard",
    );
    assert.ok(
      up.lines.some((l) =>
        l.startsWith("supervisor|") && l.endsWith(`supervisor: dashboard: ${base}`)
      ),
      up.output,
    );
    agentB = startAgentB();
    await agentB.waitForLine(/^monitor:ready$/, WAIT_MS, "agent dash-b ready");
    store = await openStore(storeSettings);
    bus = await openBus({ backend: "embedded", brokers: [], path: storeSettings.path });
    browser = await launchChromium();
    const page = await browser.newPage({ viewport: { width: 1500, height: 900 } });

    await t.step("the fleet page shows the agents alive, with their metrics", async () => {
      await page.goto(base);
      await waitForHealth(page, "dash-agent", "alive", 30_000);
      await waitForHealth(page, "dash-b", "alive", 30_000);
      const cpu = page.locator('tr[data-agent="dash-agent"] td.metric[data-metric="cpu"] .value');
      await waitUntil(async () => /%$/.test((await cpu.textContent()) ?? ""), 20_000, "cpu value");
      const version = await page.locator('tr[data-agent="dash-agent"] td').nth(3).textContent();
      assert.match(version ?? "", /^\d+\.\d+\.\d+/);
      await page.fill("#filter", "dash-b");
      await waitUntil(
        async () => (await page.locator("#fleet tbody tr").count()) === 1,
        5000,
        "the filter keeps one row",
      );
      await page.fill("#filter", "");
    });

    await t.step("the agent page's charts draw points that grow", async () => {
      await page.goto(`${base}#/agent/dash-agent`);
      await waitUntil(
        async () => Number((await chartData(page, "cpu")).points ?? 0) >= 2,
        20_000,
        "cpu points",
      );
      const before = Number((await chartData(page, "cpu")).points);
      await delay(3000);
      const after = Number((await chartData(page, "cpu")).points);
      assert.ok(after >= before + 2, `points ${before} -> ${after}`);
      // The uPlot canvas is drawn (not blank).
      const inked = await page.locator('.chart[data-metric="cpu"] canvas').first().evaluate(
        (c) => {
          const canvas = c as unknown as Canvas;
          const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height)
            .data;
          let n = 0;
          for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
          return n;
        },
      );
      assert.ok(inked > 100, `pixels drawn: ${inked}`);
      // The alert threshold of the agent's configuration (threshold_alert cpu: 99) is drawn.
      assert.equal((await chartData(page, "cpu")).threshold, "99");
    });

    await t.step("a metric that does not change stays on the chart", async () => {
      // An agent whose "steady" metric is sent once (the duplicate filter drops repeats).
      const publish = (metrics: Record<string, number>) =>
        bus!.publish(DEFAULT_TOPICS.data, [{
          key: "steady-agent",
          value: JSON.stringify({
            agent_id: "steady-agent",
            hostname: "steady-host",
            timestamp: Date.now() / 1000,
            metrics,
          }),
        }]);
      await publish({ cpu: 1, steady: 42 });
      let i = 0;
      steadyTimer = setInterval(() => void publish({ cpu: ++i }).catch(() => {}), 1000);
      await page.goto(`${base}#/agent/steady-agent`);
      await waitUntil(
        async () => (await chartData(page, "steady")).last === "42",
        20_000,
        "steady",
      );
      await delay(6000);
      const data = await chartData(page, "steady");
      assert.equal(data.last, "42");
      assert.equal(data.points, "1", "one sample of it");
      assert.ok(
        Number(data.drawnUntil) > Date.now() / 1000 - 3,
        `drawn until ${data.drawnUntil} (now ${Date.now() / 1000})`,
      );
      // Also after loading the page again (from history).
      await page.reload();
      await waitUntil(async () => (await chartData(page, "steady")).last === "42", 20_000, "again");
      assert.ok(Number((await chartData(page, "steady")).drawnUntil) > Date.now() / 1000 - 3);
      clearInterval(steadyTimer);
    });

    await t.step(
      `an agent killed turns dead within TTL + 2 s, and alive after restart`,
      async () => {
        await page.goto(base);
        await waitForHealth(page, "dash-b", "alive", 10_000);
        const killedAt = Date.now();
        agentB!.kill("SIGKILL");
        await agentB!.exited();
        await waitForHealth(page, "dash-b", "dead", (TTL_S + 2) * 1000);
        const took = Date.now() - killedAt;
        console.log(`dash-b shown dead ${took} ms after SIGKILL (TTL ${TTL_S} s)`);
        assert.match(
          (await page.locator('tr[data-agent="dash-b"] .seen').textContent()) ?? "",
          /last seen/,
        );
        agentB = startAgentB();
        await waitForHealth(page, "dash-b", "alive", 30_000);
      },
    );

    await t.step("the alerts page shows an alert firing, then resolved, live", async () => {
      await page.goto(`${base}#/alerts`);
      await page.locator("#alerts").waitFor({ timeout: 10_000 });
      const alert = (state: "firing" | "resolved", value: number) =>
        bus!.publish(DEFAULT_TOPICS.alerts, [{
          key: "steady-agent",
          value: JSON.stringify({
            agent_id: "steady-agent",
            metric: "cpu",
            value,
            threshold: 80,
            state,
            timestamp: Date.now() / 1000,
          }),
        }]);
      const row = page.locator('#alerts tr[data-agent="steady-agent"][data-metric="cpu"]');
      await alert("firing", 93.5);
      await waitUntil(
        async () => /firing/.test((await row.first().textContent().catch(() => "")) ?? ""),
        10_000,
        "the alert shown firing",
      );
      assert.match((await row.first().textContent())!, /93\.5 %.*80\.0 %/);
      await alert("resolved", 42);
      await waitUntil(
        async () => /resolved/.test((await row.first().textContent().catch(() => "")) ?? ""),
        10_000,
        "the alert shown resolved",
      );
      assert.match((await row.first().textContent())!, /42\.0 %$/);
    });

    await t.step("a command sent from the page shows each agent's result", async () => {
      await page.goto(`${base}#/commands`);
      await page.selectOption("#target", "dash-agent");
      await page.fill("#command-type", "status");
      await page.click("#send");
      const result = page.locator('.result[data-agent="dash-agent"]');
      await result.waitFor({ timeout: 30_000 });
      assert.equal(await result.getAttribute("data-status"), "ok");
      const output = (await result.locator("pre").textContent()) ?? "";
      assert.ok(output.includes("\n"), `pretty-printed: ${output}`);
      assert.match(output, /dash-agent/);
    });

    const key = storeKeys("/monitor").config("dash-agent");
    await t.step(
      "an invalid configuration shows its issues at the field and writes nothing",
      async () => {
        await page.goto(`${base}#/config/dash-agent`);
        await page.locator('#config-form[data-loaded="1"]').waitFor({ timeout: 20_000 });
        await page.fill('.field[data-field="interval"] textarea', '"5s"');
        await page.click("#save");
        const issue = page.locator('.field[data-field="interval"] .issue');
        await waitUntil(async () => ((await issue.textContent()) ?? "") !== "", 10_000, "issue");
        assert.match((await issue.textContent())!, /interval: expected .*seconds.*found "5s"/);
        assert.match((await page.locator("#config-message").textContent())!, /not saved/);
        assert.equal(await store!.get(key), undefined, "nothing written");
      },
    );

    await t.step("a valid configuration is written and applied by the agent", async () => {
      await page.fill('.field[data-field="interval"] textarea', "2");
      await page.fill('.field[data-field="metrics"] textarea', '["cpu", "memory", "disk"]');
      await page.click("#save");
      await waitUntil(
        async () => /saved/.test((await page.locator("#config-message").textContent()) ?? ""),
        10_000,
        "saved",
      );
      const written = JSON.parse((await store!.get(key))!.value);
      assert.equal(written.interval, 2);
      await up.waitForLine(
        /agent .*dash-agent\/config: configuration from \/monitor\/config\/dash-agent .*applied: interval 2 s, metrics cpu, memory, disk/,
        30_000,
        "the agent applied it",
      );
    });

    await t.step("history survives a restart of the analysis application", async () => {
      await page.goto(`${base}#/agent/dash-agent`);
      await page.click('button[data-range="1h"]');
      await waitUntil(
        async () => Number((await chartData(page, "cpu")).points ?? 0) >= 5,
        20_000,
        "points",
      );
      const firstBefore = Number((await chartData(page, "cpu")).first);
      // A change to the analysis section restarts the analysis application alone.
      const restarts = up.lines.length;
      await Deno.writeTextFile(file, monitorYaml(stateDir, ports, 11));
      await up.waitForLine(/restarting analysis/, 30_000, "analysis restarting");
      await waitUntil(
        () => up.lines.slice(restarts).some((l) => /analysis ready \(pid/.test(l)),
        WAIT_MS,
        "analysis ready again",
      );
      await waitUntil(
        async () => {
          await page.goto(`${base}#/agent/dash-agent`).catch(() => {});
          await page.reload().catch(() => {});
          await page.click('button[data-range="1h"]', { timeout: 2000 }).catch(() => {});
          return Number((await chartData(page, "cpu")).points ?? 0) >= 5;
        },
        30_000,
        "the chart after the restart",
      );
      const firstAfter = Number((await chartData(page, "cpu")).first);
      assert.ok(firstAfter <= firstBefore, `first point ${firstAfter} (before: ${firstBefore})`);
    });
    if (shots) {
      await page.goto(base);
      await waitForHealth(page, "dash-agent", "alive", 10_000);
      await delay(1000);
      await page.screenshot({ path: join(shots, "dashboard-fleet.png") });
      await page.goto(`${base}#/agent/dash-agent`);
      await waitUntil(
        async () => Number((await chartData(page, "cpu")).points ?? 0) >= 5,
        20_000,
        "points",
      );
      await delay(1000);
      await page.screenshot({ path: join(shots, "dashboard-agent.png") });
    }
  } finally {
    clearInterval(steadyTimer);
    await browser?.close().catch(() => {});
    await agentB?.stop().catch(() => {});
    await bus?.close().catch(() => {});
    await store?.close().catch(() => {});
    await up.stop(30_000);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
