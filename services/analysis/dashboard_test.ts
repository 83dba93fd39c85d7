import assert from "node:assert/strict";
import { join } from "node:path";
import { openBus } from "../bus/mod.ts";
import { getLogger } from "../common/log.ts";
import { DEFAULT_TOPICS } from "../common/messages.ts";
import { openStore, storeKeys } from "../store/mod.ts";
import { startAnalysis } from "./analysis.ts";
import { startDashboard } from "./dashboard.ts";
import { FleetState } from "./fleet.ts";
import { HistoryStore } from "./history.ts";
import { recordEvents } from "./recorder.ts";

const log = getLogger("dashboard-test");

/** A dashboard over a real analysis application on the embedded bus and store. */
async function withDashboard(
  token: string | undefined,
  fn: (ctx: {
    url: string;
    publish(value: unknown): Promise<void>;
    store: Awaited<ReturnType<typeof openStore>>;
  }) => Promise<void>,
) {
  const dir = await Deno.makeTempDir({ prefix: "dashboard-unit-" });
  const path = join(dir, "monitor.db");
  const bus = await openBus({ backend: "embedded", brokers: [], path });
  const store = await openStore({ backend: "embedded", endpoints: [], prefix: "/monitor", path });
  const analysis = await startAnalysis({ bus, log, group: "unit" });
  const fleet = new FleetState();
  const history = HistoryStore.open(join(dir, "timeseries.db"));
  const stop = recordEvents(analysis, fleet, history);
  const dashboard = await startDashboard({
    listen: "127.0.0.1:0",
    token,
    analysis,
    fleet,
    history,
    store: () => store,
    log,
  });
  try {
    await fn({
      url: dashboard.url,
      publish: (value) =>
        bus.publish(DEFAULT_TOPICS.data, [{ key: "x", value: JSON.stringify(value) }]).then(
          () => {},
        ),
      store,
    });
  } finally {
    await dashboard.close();
    await analysis.stop();
    stop();
    history.close();
    await store.close();
    await bus.close();
    await Deno.remove(dir, { recursive: true });
  }
}

async function call(
  url: string,
  init: RequestInit = {},
): Promise<{ status: number; body: Record<string, unknown> | string; headers: Headers }> {
  const response = await fetch(url, init);
  const text = await response.text();
  let body: Record<string, unknown> | string = text;
  try {
    body = JSON.parse(text);
  } catch { /* not JSON */ }
  return { status: response.status, body, headers: response.headers };
}

const ACTION = { "x-monitor-request": "1", "content-type": "application/json" };

Deno.test("dashboard API: pages, bad requests get 400/404/415, cross-site actions 403, nothing written when invalid", () =>
  withDashboard(undefined, async ({ url, store }) => {
    const page = await call(url);
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type")!, /text\/html/);
    assert.match(String(page.body), /uPlot\.iife\.min\.js/);
    assert.equal((await call(`${url}vendor/uPlot.iife.min.js`)).status, 200);
    assert.equal((await call(`${url}api/fleet`)).status, 200);
    assert.equal((await call(`${url}nothing`)).status, 404);
    assert.equal((await call(`${url}../etc/passwd`)).status, 404);
    assert.deepEqual((await call(`${url}api/agents/a/history?from=x`)).body, {
      error: 'from: expected Unix seconds, found "x"',
    });
    assert.equal((await call(`${url}api/agents/a/history?from=10&to=5`)).status, 400);
    assert.equal((await call(`${url}api/agents/%E0%A4%A/history`)).status, 400);
    assert.equal(
      (await call(`${url}api/fleet`, { method: "DELETE", headers: ACTION })).status,
      405,
    );

    // Actions: the custom header, JSON, and the page's own origin.
    const send = (headers: Record<string, string>, body: string) =>
      call(`${url}api/commands`, { method: "POST", headers, body });
    assert.equal((await send({ "content-type": "application/json" }, "{}")).status, 403);
    assert.equal(
      (await send({ ...ACTION, origin: "https://evil.example" }, '{"target":"all"}')).status,
      403,
    );
    assert.equal((await send({ "x-monitor-request": "1" }, "{}")).status, 415);
    assert.equal((await send(ACTION, "{not json")).status, 400);
    assert.equal((await send(ACTION, "[]")).status, 400);
    assert.equal(
      (await send(ACTION, '{"target":"a b","command_type":"status"}')).status,
      400,
    );
    const sent = await send(
      { ...ACTION, origin: url.replace(/\/$/, "") },
      '{"target":"all","command_type":"status"}',
    );
    assert.equal(sent.status, 202);
    assert.match(String((sent.body as Record<string, unknown>).command_id), /^dash/);

    // A request for another host name (DNS rebinding) is refused.
    const { port } = new URL(url);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
    await conn.write(
      new TextEncoder().encode(
        "GET /api/fleet HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
      ),
    );
    const reply = new TextDecoder().decode(
      await new Response(conn.readable).arrayBuffer(),
    );
    assert.match(reply, /^HTTP\/1\.1 403/);

    // Configuration: invalid is 400 with the issues, and nothing is written.
    const key = storeKeys("/monitor").config("web-1");
    const bad = await call(`${url}api/config/web-1`, {
      method: "PUT",
      headers: ACTION,
      body: JSON.stringify({ interval: "5s", metrics: ["cpu"] }),
    });
    assert.equal(bad.status, 400);
    const issues = (bad.body as { issues: Array<{ path: string }> }).issues;
    assert.deepEqual(issues.map((i) => i.path), ["interval"]);
    assert.equal(await store.get(key), undefined);
    const good = await call(`${url}api/config/web-1`, {
      method: "PUT",
      headers: ACTION,
      body: JSON.stringify({ interval: 5, metrics: ["cpu"], plugins: [] }),
    });
    assert.equal(good.status, 200);
    assert.equal(JSON.parse((await store.get(key))!.value).interval, 5);
    const view = await call(`${url}api/config/web-1`);
    assert.equal((view.body as { source: string }).source, "own");
  }));

Deno.test("dashboard API: live samples arrive as server-sent events and land in the history", () =>
  withDashboard(undefined, async ({ url, publish }) => {
    const response = await fetch(`${url}api/events`);
    assert.match(response.headers.get("content-type")!, /text\/event-stream/);
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    const t = Date.now() / 1000;
    await publish({ agent_id: "web-9", hostname: "h9", timestamp: t, metrics: { cpu: 12.5 } });
    const deadline = Date.now() + 10_000;
    while (!/event: samples\ndata: .*"web-9"/.test(text) && Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      text += value;
    }
    await reader.cancel();
    assert.match(text, /^event: hello\n/);
    assert.match(
      text,
      /event: samples\ndata: \[\{"agent_id":"web-9","t":[\d.]+,"metrics":\{"cpu":12.5\}\}\]/,
    );
    assert.match(text, /event: rows\ndata: .*"agent_id":"web-9"/);
    const history = await call(`${url}api/agents/web-9/history?from=${t - 10}&to=${t + 10}`);
    assert.deepEqual((history.body as { series: unknown }).series, { cpu: { t: [t], v: [12.5] } });
  }));

Deno.test("dashboard API: with a token, every request needs it (header or the login cookie)", () =>
  withDashboard("s3cret", async ({ url }) => {
    assert.equal((await call(`${url}api/fleet`)).status, 401);
    assert.equal(
      (await call(`${url}api/fleet`, { headers: { authorization: "Bearer wrong" } })).status,
      401,
    );
    assert.equal(
      (await call(`${url}api/fleet`, { headers: { authorization: "Bearer s3cret" } })).status,
      200,
    );
    // The page itself loads, to ask for the token.
    assert.equal((await call(url)).status, 200);
    const wrong = await call(`${url}api/login`, {
      method: "POST",
      headers: ACTION,
      body: '{"token":"nope"}',
    });
    assert.equal(wrong.status, 401);
    const login = await call(`${url}api/login`, {
      method: "POST",
      headers: ACTION,
      body: '{"token":"s3cret"}',
    });
    assert.equal(login.status, 200);
    const cookie = login.headers.get("set-cookie")!;
    assert.match(cookie, /HttpOnly; SameSite=Strict/);
    const withCookie = await call(`${url}api/fleet`, {
      headers: { cookie: cookie.split(";")[0] },
    });
    assert.equal(withCookie.status, 200);
  }));

Deno.test("dashboard: a non-loopback address without a token or TLS is refused", async () => {
  await assert.rejects(
    () =>
      startDashboard({
        listen: "0.0.0.0:0",
        analysis: {} as never,
        fleet: new FleetState(),
        history: {} as never,
        log,
      }),
    /analysis\.http 0\.0\.0\.0:0: expected a loopback address .* unless analysis\.http_token or analysis\.tls is set/,
  );
});
