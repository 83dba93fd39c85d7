/**
 * The broker's admin HTTP API and heartbeat health, over real HTTP and gRPC.
 */
import assert from "node:assert/strict";
import { answerCommands, TestAgent, waitUntil } from "./broker_support.ts";
import { withBroker } from "./broker_fixture.ts";
import { setLogSink } from "../services/common/log.ts";

async function getJson(
  url: string,
  init?: RequestInit,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(url, init);
  return { status: response.status, body: await response.json() };
}

Deno.test("broker admin: /agents, /stats and /health answer JSON; unknown paths and methods say what was expected", () =>
  withBroker({}, async ({ broker, adminUrl }) => {
    const agent = await TestAgent.connect(broker.address, "adm-1");
    try {
      agent.batch(1, [{ timestamp: Date.now() / 1000, metrics: { cpu: 5 } }]);
      await agent.waitFor((m) => m.ack?.seq === 1, "ack");
      const agents = await getJson(`${adminUrl}/agents`);
      assert.equal(agents.status, 200);
      const list = agents.body.agents as Array<Record<string, unknown>>;
      assert.equal(list.length, 1);
      assert.equal(list[0].agent_id, "adm-1");
      assert.equal(list[0].hostname, "adm-1.host");
      assert.deepEqual(list[0].latest, { cpu: 5 });
      assert.equal(typeof list[0].connected_since, "number");

      const stats = await getJson(`${adminUrl}/stats`);
      const total = stats.body.total as Record<string, unknown>;
      assert.equal(total.samples, 1);
      assert.equal(total.batches, 1);
      type Latency = { p50: number | null; p99: number | null; count: number };
      const latency = total.publish_latency_ms as Latency;
      assert.ok(latency.count >= 1);
      assert.equal(typeof latency.p50, "number");
      assert.ok(latency.p50! >= 0 && latency.p99! >= latency.p50!);
      assert.ok((total.rates as { samples: number }).samples > 0);
      const own = (stats.body.agents as Record<string, Record<string, unknown>>)["adm-1"];
      assert.ok(own, "per-agent stats of adm-1");
      assert.equal(own.samples, 1);
      assert.equal((own.publish_latency_ms as Latency).count, 1);

      const health = await getJson(`${adminUrl}/health`);
      const entries = health.body.agents as Array<Record<string, unknown>>;
      assert.deepEqual(entries.map((e) => [e.agent_id, e.status, e.connected]), [[
        "adm-1",
        "unknown",
        true,
      ]]);
      assert.equal(typeof entries[0].last_sample, "number");
      assert.deepEqual(entries[0].stale_metrics, []);

      const missing = await getJson(`${adminUrl}/nope`);
      assert.equal(missing.status, 404);
      assert.match(String(missing.body.error), /expected one of GET \/agents/);
      const wrongMethod = await getJson(`${adminUrl}/agents`, { method: "DELETE" });
      assert.equal(wrongMethod.status, 405);
      assert.match(String(wrongMethod.body.error), /expected GET, found DELETE/);
      const badSend = await getJson(`${adminUrl}/send`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "{",
      });
      assert.equal(badSend.status, 400);
      assert.match(String(badSend.body.error), /request body: expected JSON/);
      const badTarget = await getJson(`${adminUrl}/send`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ target: "a b", command_type: "status" }),
      });
      assert.equal(badTarget.status, 400);
      assert.match(String(badTarget.body.error), /target: agent id "a b" is not valid/);
    } finally {
      agent.close();
    }
  }));

Deno.test("broker admin: POST /send streams JSON lines ending with a summary", () =>
  withBroker({}, async ({ broker, adminUrl }) => {
    const agent = await TestAgent.connect(broker.address, "adm-send");
    answerCommands(agent, (c) => ({ status: "ok", output: { ran: c.command_type } }));
    try {
      const response = await fetch(`${adminUrl}/send`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ target: "adm-send", command_type: "status" }),
      });
      assert.equal(response.status, 200);
      assert.match(response.headers.get("content-type") ?? "", /application\/x-ndjson/);
      const lines = (await response.text()).trim().split("\n").map((l) => JSON.parse(l));
      assert.deepEqual(lines.map((l) => l.event), ["published", "dispatched", "result", "summary"]);
      assert.deepEqual(lines[2].result.output, { ran: "status" });
      assert.deepEqual(lines[3].summary.ok, ["adm-send"]);
    } finally {
      agent.close();
    }
  }));

Deno.test("broker admin: a token is required when set", () =>
  withBroker({ adminToken: "adm1n" }, async ({ adminUrl }) => {
    const refused = await getJson(`${adminUrl}/stats`);
    assert.equal(refused.status, 401);
    assert.match(String(refused.body.error), /Bearer <admin token>/);
    const ok = await getJson(`${adminUrl}/stats`, { headers: { authorization: "Bearer adm1n" } });
    assert.equal(ok.status, 200);
  }));

Deno.test("broker admin: a non-loopback admin address without a token is refused", async () => {
  await assert.rejects(
    withBroker({ admin: "0.0.0.0:0" }, () => Promise.resolve()),
    /admin API listens on loopback only/,
  );
});

Deno.test("broker admin: /metrics names families with base units, carries unchanged values forward, ends stale series and speaks OpenMetrics when asked", () =>
  withBroker({}, async ({ broker, adminUrl }) => {
    const agent = await TestAgent.connect(broker.address, "prom-1");
    try {
      const now = Date.now() / 1000;
      agent.batch(1, [
        {
          timestamp: now - 2,
          metrics: { cpu: 1, "disk read": 2048, "my plugin value": 7 },
          counters: { "disk read": 1_000_000 },
          interval: 1,
          keepalive: 30,
        },
        // The duplicate filter left cpu and "my plugin value" out: unchanged.
        {
          timestamp: now - 1,
          metrics: { "disk read": 1024, "net in": 3.25 },
          counters: { "disk read": 1_001_024, "net in": 500 },
          interval: 1,
          keepalive: 30,
        },
        // A metric last reported long ago: its series has ended.
        { timestamp: now - 1000, metrics: { memory: 50 }, interval: 1, keepalive: 30 },
      ]);
      await agent.waitFor((m) => m.ack?.seq === 1, "ack");
      const response = await fetch(`${adminUrl}/metrics`);
      assert.match(response.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
      const text = await response.text();
      const lines = text.trimEnd().split("\n").filter((l) => l !== "");
      // Every line is a comment or `name{labels} value` with a valid name.
      for (const line of lines) {
        assert.match(
          line,
          /^(# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+|[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? (-?[0-9.e+-]+|NaN|\+Inf))$/,
          `not exposition format: ${line}`,
        );
      }
      const labels = 'agent="prom-1",host="prom-1.host"';
      const has = (line: string) => assert.ok(lines.includes(line), `missing: ${line}\n${text}`);
      has("monitor_broker_samples_total 3");
      has(`monitor_broker_agent_samples_total{${labels}} 3`);
      has("monitor_broker_connected_agents 1");
      has(`monitor_agent_up{${labels}} 1`);
      has(`monitor_agent_connected{${labels}} 1`);
      has(`monitor_cpu_busy_percent{${labels}} 1`);
      has(`monitor_disk_read_bytes_per_second{${labels}} 1024`);
      has(`monitor_network_receive_bytes_per_second{${labels}} 3.25`);
      has(`monitor_disk_read_bytes_total{${labels}} 1001024`);
      has(`monitor_network_receive_bytes_total{${labels}} 500`);
      has(`monitor_agent_metric{${labels},metric="my plugin value"} 7`);
      has(`monitor_agent_stale_metrics{${labels}} 1`);
      has("# TYPE monitor_disk_read_bytes_total counter");
      has("# TYPE monitor_cpu_busy_percent gauge");
      has("# TYPE monitor_broker_publish_duration_seconds histogram");
      assert.match(text, /^monitor_broker_publish_duration_seconds_count 1$/m);
      assert.doesNotMatch(text, /monitor_memory_used_percent\{/, "a stale metric is not exported");
      // One TYPE line per family; no name shared by a total and a labelled family.
      const types = lines.filter((l) => l.startsWith("# TYPE ")).map((l) => l.split(" ")[2]);
      assert.equal(new Set(types).size, types.length);
      // OpenMetrics when asked (as Prometheus does).
      const open = await fetch(`${adminUrl}/metrics`, {
        headers: {
          accept:
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        },
      });
      assert.match(
        open.headers.get("content-type") ?? "",
        /^application\/openmetrics-text; version=1\.0\.0/,
      );
      const om = await open.text();
      assert.match(om, /^# TYPE monitor_disk_read_bytes counter$/m);
      assert.match(om, new RegExp(`^monitor_disk_read_bytes_total\\{${labels}\\} 1001024$`, "m"));
      assert.ok(om.endsWith("# EOF\n"));
    } finally {
      agent.close();
    }
  }));

Deno.test("broker health: heartbeats listed at start and watched; deleted or expired means dead; each transition logged", async () => {
  const logged: string[] = [];
  setLogSink((line) => logged.push(line));
  try {
    await healthScenario();
  } finally {
    setLogSink(undefined);
  }
  const transitions = logged.filter((l) => /broker\/health: agent \S+ is (alive|dead)/.test(l))
    .map((l) => l.replace(/^.*broker\/health: /, ""));
  const expected = [
    /^agent early-1 is alive \(heartbeat running\)$/,
    /^agent late-1 is alive \(heartbeat running\)$/,
    /^agent early-1 is dead: its heartbeat expired or was deleted \(last seen 1970-01-01T00:16:40\.000Z\)$/,
    /^agent late-1 is dead: its heartbeat expired or was deleted \(last seen \d{4}-\d\d-\d\dT[\d:.]+Z\)$/,
    /^agent early-1 is alive again \(heartbeat present\)$/,
  ];
  assert.equal(transitions.length, expected.length, transitions.join("\n"));
  expected.forEach((pattern, i) => assert.match(transitions[i], pattern));
});

/** Heartbeats appear, are deleted, expire and come back; `health` and /metrics follow. */
function healthScenario() {
  return withBroker({
    beforeStart: async (store) => {
      await store.put(
        "/monitor/heartbeat/early-1",
        JSON.stringify({ agent_id: "early-1", hostname: "h1", timestamp: 1000, status: "running" }),
      );
    },
  }, async ({ broker, store, openAnotherStore }) => {
    const status = (id: string) => broker.health().find((h) => h.agent_id === id);
    assert.equal(status("early-1")?.status, "alive");
    assert.equal(status("early-1")?.last_seen, 1000);
    assert.equal(status("early-1")?.hostname, "h1");
    // Another "process" keeps a heartbeat on a short lease, then dies (its store closes,
    // so nobody keeps the lease alive): the lease expires and the key goes with it.
    const other = await openAnotherStore();
    const lease = await other.lease(2);
    await lease.put(
      "/monitor/heartbeat/late-1",
      JSON.stringify({
        agent_id: "late-1",
        hostname: "h2",
        timestamp: Date.now() / 1000,
        status: "running",
      }),
    );
    await waitUntil(() => status("late-1")?.status === "alive", 5000, "late-1 alive");
    await store.delete("/monitor/heartbeat/early-1");
    await waitUntil(() => status("early-1")?.status === "dead", 5000, "early-1 dead");
    assert.equal(status("early-1")?.last_seen, 1000);
    await other.close();
    await waitUntil(
      () => status("late-1")?.status === "dead",
      10_000,
      "late-1 dead after its lease expired",
    );
    await store.put(
      "/monitor/heartbeat/early-1",
      JSON.stringify({ agent_id: "early-1", timestamp: Date.now() / 1000 }),
    );
    await waitUntil(() => status("early-1")?.status === "alive", 5000, "early-1 alive again");
    const metrics = (await broker.metrics()).body;
    assert.match(metrics, /monitor_agent_up\{agent="early-1",host="h1"\} 1/);
    assert.match(metrics, /monitor_agent_up\{agent="late-1",host="h2"\} 0/);
  });
}

Deno.test("broker admin: PUT /config validates with the agent-config validator, then writes the store; GET falls back to the default", () =>
  withBroker({}, async ({ adminUrl, store }) => {
    const seed = {
      interval: 5,
      metrics: ["cpu", "memory", "disk read", "disk write", "net in", "net out"],
      plugins: [
        "plugins.duplicate_filter.DuplicateFilterPlugin",
        "plugins.threshold_alert.ThresholdAlertPlugin",
      ],
      plugin_configs: { ThresholdAlertPlugin: { cpu: 80, memory: 90, disk: 95 } },
    };
    const none = await getJson(`${adminUrl}/config/web-1`);
    assert.deepEqual(none.body, {
      agent_id: "web-1",
      key: "/monitor/config/web-1",
      source: "none",
      config: null,
      revision: 0,
    });
    const put = await getJson(`${adminUrl}/config/default`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(seed),
    });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    assert.equal(put.body.key, "/monitor/config/default");
    const stored = await store.get("/monitor/config/default");
    assert.deepEqual(JSON.parse(stored!.value), seed);
    const fallback = await getJson(`${adminUrl}/config/web-1`);
    assert.equal(fallback.body.source, "default");
    assert.deepEqual(fallback.body.config, seed);

    const bad = await getJson(`${adminUrl}/config/web-1`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ interval: "5s", metrics: ["cpu", "gpu"], intervall: 3 }),
    });
    assert.equal(bad.status, 400);
    const issues = bad.body.issues as Array<{ path: string }>;
    assert.ok(issues.some((i) => i.path === "interval"), JSON.stringify(issues));
    assert.ok(issues.some((i) => i.path.startsWith("metrics")), JSON.stringify(issues));
    assert.match(String(bad.body.error), /^\/monitor\/config\/web-1: /);
    assert.match(String(bad.body.error), /did you mean "interval"/);
    assert.equal(await store.get("/monitor/config/web-1"), undefined);

    const badId = await getJson(`${adminUrl}/config/no%20spaces`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    assert.equal(badId.status, 400);
    assert.match(String(badId.body.error), /agent id "no spaces" is not valid/);
  }));

Deno.test("broker admin: bodies must be JSON and, without a token, the host must be loopback", () =>
  withBroker({}, async ({ adminUrl }) => {
    const plain = await getJson(`${adminUrl}/send`, {
      method: "POST",
      body: JSON.stringify({ target: "all", command_type: "status" }),
    });
    assert.equal(plain.status, 415);
    assert.match(
      String(plain.body.error),
      /content-type: expected application\/json, found "text\/plain/,
    );
    // fetch() does not let a page (or a test) choose the Host header: speak HTTP directly.
    const raw = async (host: string) => {
      const [hostname, port] = adminUrl.replace("http://", "").split(":");
      const conn = await Deno.connect({ hostname, port: Number(port) });
      try {
        const request = `GET /agents HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`;
        await conn.write(new TextEncoder().encode(request));
        let text = "";
        const buffer = new Uint8Array(4096);
        while (true) {
          const n = await conn.read(buffer);
          if (n === null) break;
          text += new TextDecoder().decode(buffer.subarray(0, n));
        }
        return text;
      } finally {
        conn.close();
      }
    };
    const rebound = await raw("evil.example:50053");
    assert.match(rebound, /^HTTP\/1\.1 403/);
    assert.match(rebound, /host: expected a loopback address/);
    assert.match(await raw("localhost:50053"), /^HTTP\/1\.1 200/);
  }));

Deno.test("broker admin: malformed requests get 400 naming what was expected, never 500 nor an ERROR log", async () => {
  const errors: string[] = [];
  setLogSink((line, level) => {
    if (level === "error") errors.push(line);
  });
  try {
    await withBroker({}, async ({ adminUrl }) => {
      const json = { "content-type": "application/json" };
      const cases: Array<[string, string, RequestInit, RegExp]> = [
        [
          "GET",
          "/config/%ZZ",
          {},
          /\/config\/%ZZ: expected \/config\/<agent id> with valid %-escapes/,
        ],
        ["PUT", "/config/%ZZ", { headers: json, body: "{}" }, /malformed %-escape/],
        ["GET", "/config/%", {}, /malformed %-escape/],
        ["GET", "/config/%E0%A4%A", {}, /malformed %-escape/],
        ["GET", "/config/a%2Fb", {}, /agent id "a\/b" is not valid/],
        ["GET", `/config/${"x".repeat(300)}`, {}, /is not valid/],
        ["PUT", "/config/web-1", { headers: json, body: "null" }, /expected/],
        ["PUT", "/config/web-1", { headers: json, body: "[1]" }, /expected/],
        ["POST", "/send", { headers: json, body: "[]" }, /request body: expected \{"target"/],
        ["POST", "/send", {
          headers: json,
          body: JSON.stringify({ target: "all", command_type: "status", timeout_ms: "x" }),
        }, /timeout_ms: expected a positive number/],
      ];
      for (const [method, path, init, pattern] of cases) {
        const response = await fetch(`${adminUrl}${path}`, { method, ...init });
        const body = await response.json();
        assert.equal(response.status, 400, `${method} ${path}: ${JSON.stringify(body)}`);
        assert.match(String(body.error), pattern, `${method} ${path}`);
      }
    });
  } finally {
    setLogSink(undefined);
  }
  assert.deepEqual(errors, []);
});
