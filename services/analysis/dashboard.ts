/**
 * The dashboard served by the analysis application (`analysis.http`,
 * default `127.0.0.1:8090`): static pages from `services/analysis/web/`
 * and a JSON API with server-sent events for live updates.
 *
 * | Method and path                     | Answer                                                  |
 * |-------------------------------------|---------------------------------------------------------|
 * | `GET /`                             | the dashboard (fleet, agent, alerts, commands, config)  |
 * | `GET /api/fleet`                    | `{now, agents: FleetRow[]}`                             |
 * | `GET /api/sparklines?agents=a,b`    | `{<agent>: {<metric>: {t, v}}}` (last minutes)          |
 * | `GET /api/agents/<id>`              | `{row, sparklines, thresholds}`                         |
 * | `GET /api/agents/<id>/history`      | `?from=&to=` (Unix s), `metrics=a,b`, `points=` (most      |
 * |                                     | points per series): `{agent_id, from, to, series}`      |
 * | `GET /api/alerts`                   | `{alerts: AlertRecord[]}` firing and resolved           |
 * | `GET /api/stats`                    | the analysis application's statistics                   |
 * | `GET /api/config/<id>`              | the agent's configuration (own, default or none)        |
 * | `PUT /api/config/<id>`              | validated, then written; 400 `{error, issues}`          |
 * | `POST /api/commands`                | `{target, command_type, args?}`: 202 `{command_id}`;    |
 * |                                     | results come as `result` events, then `command_done`    |
 * | `GET /api/events[?agent=<id>]`      | server-sent events: `hello`, `rows`, `samples`,         |
 * |                                     | `alert`, `result`, `command_done`                       |
 * | `POST /api/login`                   | `{token}`: sets the session cookie (with a token only)  |
 *
 * Security (rules shared with the broker's admin API,
 * services/common/http_security.ts): loopback unless a token or TLS is set;
 * with a token, every request needs it (header, or the cookie set by
 * `/api/login`). Requests that change something (PUT, POST) must be JSON,
 * carry `X-Monitor-Request: 1` and, when the browser sends an `Origin`, come
 * from this dashboard's own origin; so another site cannot make a browser
 * send them. Malformed requests get 400 naming what was expected.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { checkRequestAccess, exposureProblem } from "../common/http_security.ts";
import { splitHostPort } from "../common/net.ts";
import { checkCommandType, checkTarget, isPlainObject, newCommandId } from "../common/commands.ts";
import { errorMessage, type Logger } from "../common/log.ts";
import { validateAgentConfig } from "../config/agent_config.ts";
import { ConfigError } from "../config/issues.ts";
import { readAgentConfig, writeAgentConfig } from "../config/config_store.ts";
import { DEFAULT_STORE_PREFIX } from "../store/keys.ts";
import type { Store } from "../store/types.ts";
import type { Analysis, AnalysisEvent } from "./analysis.ts";
import type { FleetState } from "./fleet.ts";
import type { HistoryStore } from "./history.ts";

/** The folder of the dashboard's static files. */
export const WEB_DIR: string = fileURLToPath(new URL("./web/", import.meta.url));

/** Static files served, by URL path: file (relative to {@linkcode WEB_DIR}) and type. */
const STATIC: Record<string, [string, string]> = {
  "/": ["index.html", "text/html; charset=utf-8"],
  "/app.js": ["app.js", "text/javascript; charset=utf-8"],
  "/style.css": ["style.css", "text/css; charset=utf-8"],
  "/vendor/uPlot.iife.min.js": ["vendor/uPlot.iife.min.js", "text/javascript; charset=utf-8"],
  "/vendor/uPlot.min.css": ["vendor/uPlot.min.css", "text/css; charset=utf-8"],
};

/** Header every request that changes something must carry (browsers cannot send it cross-site). */
export const ACTION_HEADER = "x-monitor-request";
/** Name of the session cookie set by `/api/login`. */
export const SESSION_COOKIE = "monitor_token";
/** Largest request body (bytes). */
const MAX_BODY = 256 * 1024;
/** Period of the live updates (ms). */
const FLUSH_MS = 100;

/** Options of {@linkcode startDashboard}. */
export interface DashboardOptions {
  /** `host:port`; port 0 picks a free port. */
  listen: string;
  /** Bearer token required on every request, when set. */
  token?: string;
  /** TLS (PEM text). */
  tls?: { cert: string; key: string };
  analysis: Analysis;
  fleet: FleetState;
  history: HistoryStore;
  /** The store (configurations), once open; without it the configuration pages answer 503. */
  store?: () => Store | undefined;
  /** Store key prefix. Default `/monitor`. */
  prefix?: string;
  log: Logger;
}

/** A running dashboard. */
export interface Dashboard {
  /** The URL to open, e.g. `http://127.0.0.1:8090/`. */
  readonly url: string;
  /** Marks an agent's row changed (pushed to open pages with the next update). */
  touch(agentId: string): void;
  /** Stops serving (open event streams are ended). */
  close(): Promise<void>;
}

/** An HTTP error with a status and what was expected. */
class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly extra: object = {}) {
    super(message);
  }
}

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json; charset=utf-8", ...headers },
  });
}

function cookie(request: Request, name: string): string | null {
  for (const part of (request.headers.get("cookie") ?? "").split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === name) {
      try {
        return decodeURIComponent(v.join("="));
      } catch {
        return null;
      }
    }
  }
  return null;
}

async function readBody(request: Request): Promise<unknown> {
  const type = request.headers.get("content-type") ?? "";
  if (!/^application\/json\b/i.test(type)) {
    throw new HttpError(
      415,
      `content-type: expected application/json, found ${
        type === "" ? "none" : JSON.stringify(type)
      }`,
    );
  }
  const text = await request.text();
  if (new TextEncoder().encode(text).length > MAX_BODY) {
    throw new HttpError(413, `request body: expected at most ${MAX_BODY} bytes`);
  }
  if (text.trim() === "") throw new HttpError(400, "request body: expected JSON, found nothing");
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new HttpError(400, `request body: expected JSON (${errorMessage(error)})`);
  }
}

function seconds(url: URL, key: string, fallback: number): number {
  const raw = url.searchParams.get(key);
  if (raw === null || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) {
    throw new HttpError(400, `${key}: expected Unix seconds, found ${JSON.stringify(raw)}`);
  }
  return value;
}

function agentParam(raw: string): string {
  let id: string;
  try {
    id = decodeURIComponent(raw);
  } catch {
    throw new HttpError(400, `agent id: expected URL-encoded text, found ${JSON.stringify(raw)}`);
  }
  if (id === "" || id.length > 128 || id.includes("/")) {
    throw new HttpError(400, `agent id: expected 1 to 128 characters without '/'`);
  }
  return id;
}

/** The thresholds of an agent's `threshold_alert` plugin in `config` (empty when none). */
export function thresholdsOf(config: unknown): Record<string, number> {
  const result = validateAgentConfig(config, "");
  const plugin = result.config?.plugins.find((p) => p.name === "threshold_alert");
  const out: Record<string, number> = {};
  for (const [metric, value] of Object.entries(plugin?.config ?? {})) {
    if (typeof value === "number") out[metric] = value;
  }
  return out;
}

interface Client {
  agent?: string;
  send(event: string, data: unknown): boolean;
  close(): void;
}

/** Starts serving the dashboard. */
export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  const { host, port } = splitHostPort(options.listen, "analysis.http");
  const problem = exposureProblem(`${host}:${port}`, {
    token: Boolean(options.token),
    tls: Boolean(options.tls),
  }, { token: "analysis.http_token", tls: "analysis.tls" });
  if (problem) throw new Error(`analysis.http ${options.listen}: expected ${problem}`);
  const { analysis, fleet, history, log } = options;
  const prefix = options.prefix ?? DEFAULT_STORE_PREFIX;
  const files = new Map<string, Uint8Array<ArrayBuffer>>();
  for (const [path, [file]] of Object.entries(STATIC)) {
    files.set(path, await Deno.readFile(WEB_DIR + file));
  }

  // Live updates: changes are collected and sent to every open page every FLUSH_MS.
  const clients = new Set<Client>();
  const dirty = new Set<string>();
  let samples: Array<{ agent_id: string; t: number; metrics: Record<string, number> }> = [];
  const metricCounts = new Map<string, number>();
  // The fleet and the history are fed by recordEvents (see recorder.ts), registered before this.
  const unsubscribe = analysis.onEvent((event: AnalysisEvent) => {
    if (event.type === "data") {
      const id = event.sample.agent_id;
      if (clients.size > 0) {
        samples.push({ agent_id: id, t: event.sample.timestamp, metrics: event.sample.metrics });
      }
      const count = Object.keys(fleet.row(id)?.metrics ?? {}).length;
      if (metricCounts.get(id) !== count) {
        metricCounts.set(id, count);
        dirty.add(id);
      }
    } else if (event.type === "alert") {
      dirty.add(event.alert.agent_id);
      broadcast("alert", event.alert);
    } else if (event.type === "result") {
      broadcast("result", event.result);
    }
  });
  const broadcast = (name: string, data: unknown, agent?: string) => {
    for (const client of [...clients]) {
      if (agent !== undefined && client.agent !== undefined && client.agent !== agent) continue;
      if (!client.send(name, data)) {
        clients.delete(client);
        client.close();
      }
    }
  };
  const flush = () => {
    if (clients.size === 0) {
      samples = [];
      dirty.clear();
      return;
    }
    if (dirty.size > 0) {
      const now = Date.now();
      const rows = [...dirty].map((id) => fleet.row(id, now)).filter((r) => r !== undefined);
      dirty.clear();
      for (const client of [...clients]) {
        const mine = client.agent === undefined
          ? rows
          : rows.filter((r) => r.agent_id === client.agent);
        if (mine.length > 0 && !client.send("rows", mine)) {
          clients.delete(client);
          client.close();
        }
      }
    }
    if (samples.length > 0) {
      const batch = samples;
      samples = [];
      for (const client of [...clients]) {
        const mine = client.agent === undefined
          ? batch
          : batch.filter((s) => s.agent_id === client.agent);
        if (mine.length > 0 && !client.send("samples", mine)) {
          clients.delete(client);
          client.close();
        }
      }
    }
  };
  const flushTimer = setInterval(flush, FLUSH_MS);
  const pingTimer = setInterval(() => broadcast("ping", { now: Date.now() / 1000 }), 15_000);

  const events = (url: URL): Response => {
    const agent = url.searchParams.get("agent") ?? undefined;
    const encoder = new TextEncoder();
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    let open = true;
    const client: Client = {
      agent,
      send(event, data) {
        if (!open) return false;
        // A page that does not read its stream is dropped (it reconnects and reloads).
        if ((controller.desiredSize ?? 0) < -256) return false;
        try {
          controller.enqueue(encoder.encode(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`));
          return true;
        } catch {
          return false;
        }
      },
      close() {
        if (!open) return;
        open = false;
        try {
          controller.close();
        } catch { /* cancelled */ }
      },
    };
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        controller = c;
      },
      cancel() {
        open = false;
        clients.delete(client);
      },
    }, new CountQueuingStrategy({ highWaterMark: 16 }));
    clients.add(client);
    client.send("hello", { now: Date.now() / 1000 });
    return new Response(stream, {
      headers: {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-store",
        "x-accel-buffering": "no",
      },
    });
  };

  const requireStore = (): Store => {
    const store = options.store?.();
    if (!store) throw new HttpError(503, "the store is not available to the dashboard (yet)");
    return store;
  };

  const command = (value: unknown): Response => {
    if (!isPlainObject(value)) {
      throw new HttpError(
        400,
        'request body: expected {"target": "<agent|all>", "command_type": "status", "args": {...}}',
      );
    }
    const invalid = checkTarget(value.target) ?? checkCommandType(value.command_type) ??
      (value.args !== undefined && value.args !== null && !isPlainObject(value.args)
        ? "args: expected a JSON object"
        : undefined);
    if (invalid) throw new HttpError(400, invalid);
    const commandId = newCommandId("dash");
    const target = value.target as string;
    analysis.send(
      target,
      value.command_type as string,
      isPlainObject(value.args) ? value.args : undefined,
      { commandId },
    ).then((summary) => broadcast("command_done", summary))
      .catch((error) =>
        broadcast("command_done", { command_id: commandId, error: errorMessage(error) })
      );
    return json(202, { command_id: commandId, target });
  };

  const api = async (request: Request, url: URL, path: string): Promise<Response> => {
    const method = request.method;
    const only = (allowed: string) => {
      throw new HttpError(405, `${path}: expected ${allowed}, found ${method}`);
    };
    if (path === "/api/fleet") {
      if (method !== "GET") only("GET");
      return json(200, { now: Date.now() / 1000, agents: fleet.rows() });
    }
    if (path === "/api/events") {
      if (method !== "GET") only("GET");
      return events(url);
    }
    if (path === "/api/sparklines") {
      if (method !== "GET") only("GET");
      const ids = (url.searchParams.get("agents") ?? "").split(",").filter((s) => s !== "");
      if (ids.length > 500) throw new HttpError(400, "agents: expected at most 500 agent ids");
      return json(200, Object.fromEntries(ids.map((id) => [id, fleet.sparklines(id)])));
    }
    if (path === "/api/alerts") {
      if (method !== "GET") only("GET");
      return json(200, { alerts: history.alerts() });
    }
    if (path === "/api/stats") {
      if (method !== "GET") only("GET");
      return json(200, analysis.stats());
    }
    if (path === "/api/commands") {
      if (method !== "POST") only("POST");
      return command(await readBody(request));
    }
    const agentMatch = /^\/api\/agents\/([^/]+)(\/history)?$/.exec(path);
    if (agentMatch) {
      if (method !== "GET") only("GET");
      const id = agentParam(agentMatch[1]);
      if (agentMatch[2]) {
        const now = Date.now() / 1000;
        const to = seconds(url, "to", now);
        const from = seconds(url, "from", to - 300);
        if (from >= to) throw new HttpError(400, "from: expected a time before to");
        const metrics = url.searchParams.get("metrics")?.split(",").filter((m) => m !== "");
        const pointsParam = url.searchParams.get("points");
        const maxPoints = pointsParam === null ? Infinity : Number(pointsParam);
        if (!Number.isInteger(maxPoints) && maxPoints !== Infinity || maxPoints < 10) {
          throw new HttpError(
            400,
            `points: expected a whole number of at least 10, found ${JSON.stringify(pointsParam)}`,
          );
        }
        const series = history.query(id, from, to, metrics, true, maxPoints);
        return json(200, { agent_id: id, from, to, series });
      }
      let thresholds: Record<string, number> = {};
      const store = options.store?.();
      if (store) {
        try {
          thresholds = thresholdsOf((await readAgentConfig(store, prefix, id)).config);
        } catch (error) {
          log.debug(`thresholds of ${id}: ${errorMessage(error)}`);
        }
      }
      return json(200, {
        row: fleet.row(id) ?? null,
        sparklines: fleet.sparklines(id),
        thresholds,
        metrics: history.metricsOf(id),
      });
    }
    const configMatch = /^\/api\/config\/([^/]+)$/.exec(path);
    if (configMatch) {
      const id = agentParam(configMatch[1]);
      if (method === "GET") return json(200, await readAgentConfig(requireStore(), prefix, id));
      if (method === "PUT") {
        const value = await readBody(request);
        const written = await writeAgentConfig(requireStore(), prefix, id, value);
        log.info(
          `configuration of ${id} written from the dashboard (revision ${written.revision})`,
        );
        return json(200, written);
      }
      only("GET, PUT");
    }
    throw new HttpError(404, `${path}: no such endpoint`);
  };

  const handle = async (request: Request): Promise<Response> => {
    let url: URL;
    try {
      url = new URL(request.url);
    } catch {
      return json(400, { error: "request: expected a valid URL" });
    }
    const path = url.pathname;
    const method = request.method;
    try {
      if (path === "/api/login") {
        if (method !== "POST") throw new HttpError(405, `${path}: expected POST, found ${method}`);
        checkAction(request, url);
        const body = await readBody(request);
        const given = isPlainObject(body) && typeof body.token === "string" ? body.token : "";
        if (!options.token || checkRequestAccess(request, options.token, given)) {
          throw new HttpError(401, "token: expected the dashboard's token");
        }
        const secure = options.tls ? "; Secure" : "";
        return json(200, { ok: true }, {
          "set-cookie": `${SESSION_COOKIE}=${
            encodeURIComponent(given)
          }; HttpOnly; SameSite=Strict; Path=/${secure}`,
        });
      }
      const refused = checkRequestAccess(request, options.token, cookie(request, SESSION_COOKIE));
      if (refused) {
        // The page itself is served so that it can ask for the token.
        if (method === "GET" && STATIC[path] && refused.status === 401) {
          return new Response(files.get(path), {
            headers: { "content-type": STATIC[path][1], "cache-control": "no-store" },
          });
        }
        log.warn(`refused ${method} ${JSON.stringify(path)}: ${refused.error}`);
        return json(refused.status, { error: refused.error });
      }
      if (method !== "GET" && method !== "HEAD") checkAction(request, url);
      const file = STATIC[path];
      if (file) {
        if (method !== "GET" && method !== "HEAD") {
          throw new HttpError(405, `${path}: expected GET, found ${method}`);
        }
        return new Response(files.get(path), {
          headers: { "content-type": file[1], "cache-control": "no-cache" },
        });
      }
      if (path.startsWith("/api/")) return await api(request, url, path);
      throw new HttpError(404, `${path}: no such page`);
    } catch (error) {
      if (error instanceof HttpError) {
        return json(error.status, { error: error.message, ...error.extra });
      }
      if (error instanceof ConfigError) {
        return json(400, { error: error.message, issues: error.issues });
      }
      if (error instanceof TypeError) return json(400, { error: error.message });
      log.error(`${method} ${path} failed: ${errorMessage(error)}`);
      return json(500, { error: errorMessage(error) });
    }
  };

  /** Refuses a request that changes something unless it comes from this dashboard's own pages. */
  const checkAction = (request: Request, url: URL) => {
    if (request.headers.get(ACTION_HEADER) !== "1") {
      throw new HttpError(403, `${ACTION_HEADER}: expected "1" on requests that change something`);
    }
    const origin = request.headers.get("origin");
    if (origin !== null && origin !== url.origin) {
      throw new HttpError(
        403,
        `origin: expected ${url.origin} (this dashboard), found ${JSON.stringify(origin)}`,
      );
    }
  };

  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname: host,
      port,
      ...(options.tls ? { cert: options.tls.cert, key: options.tls.key } : {}),
      onListen() {},
      onError(error) {
        log.error(`dashboard error: ${errorMessage(error)}`);
        return json(500, { error: errorMessage(error) });
      },
    }, handle);
  } catch (error) {
    clearInterval(flushTimer);
    clearInterval(pingTimer);
    unsubscribe();
    throw new Error(`cannot listen on ${options.listen} (analysis.http): ${errorMessage(error)}`, {
      cause: error,
    });
  }
  const bound = server.addr;
  const shown = bound.hostname.includes(":") ? `[${bound.hostname}]` : bound.hostname;
  const url = `${options.tls ? "https" : "http"}://${shown}:${bound.port}/`;
  return {
    url,
    touch(agentId) {
      dirty.add(agentId);
    },
    async close() {
      clearInterval(flushTimer);
      clearInterval(pingTimer);
      unsubscribe();
      for (const client of clients) client.close();
      clients.clear();
      await server.shutdown();
    },
  };
}
