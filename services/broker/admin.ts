/**
 * The broker's admin HTTP API (loopback by default; optionally behind a
 * bearer token). Consoles use it; Prometheus scrapes `/metrics`.
 *
 * | Method and path        | Answer                                                                 |
 * |------------------------|------------------------------------------------------------------------|
 * | `GET /agents`          | `{"agents": AgentInfo[]}`: connected agents                            |
 * | `GET /health`          | `{"agents": HealthEntry[]}`: alive/dead from heartbeats, last seen      |
 * | `GET /stats`           | `BrokerStats`: per agent and total counters, rates, publish latency     |
 * | `GET /config/<agent>`  | `ConfigView`: the agent's configuration (own, default or none)          |
 * | `PUT /config/<agent>`  | body: the configuration JSON; validated, then written to the store:     |
 * |                        | 200 `ConfigWrite`, or 400 `{"error", "issues": ConfigIssue[]}`          |
 * | `POST /send`           | body `{"target", "command_type", "args"?, "timeout_ms"?}`; answers      |
 * |                        | `application/x-ndjson`, one `SendEvent` per line, the last a summary    |
 * | `GET /metrics`         | Prometheus text format 0.0.4, or OpenMetrics 1.0 when `Accept` asks     |
 *
 * PUT and POST bodies must be sent as `application/json`. Without a token,
 * only requests for a loopback host name are answered.
 *
 * Errors are JSON `{"error": "<what was expected>"}` with status 400, 401,
 * 403, 404, 405, 413, 415 or 500.
 *
 * @module
 */
import { checkCommandType, checkTarget, isPlainObject } from "../common/commands.ts";
import { checkRequestAccess, exposureProblem } from "../common/http_security.ts";
import { errorMessage, type Logger } from "../common/log.ts";
import { splitHostPort } from "../common/net.ts";
import { ConfigError } from "../config/issues.ts";
import { negotiateFormat } from "./prometheus.ts";
import type { SendEvent, SendRequest } from "./send.ts";
import type { Broker } from "./types.ts";

/** Options of {@linkcode startAdminServer}. */
export interface AdminServerOptions {
  /** `host:port`; loopback unless a token is set. Port 0 picks a free port. */
  listen: string;
  /** Bearer token required on every request, when set. */
  token?: string;
  broker: Broker;
  log: Logger;
}

/** A running admin server. */
export interface AdminServer {
  /** Bound `host:port`. */
  readonly address: string;
  /** Stops accepting and waits for open responses. */
  close(): Promise<void>;
}

/** Largest request body (bytes). */
const MAX_BODY = 1024 * 1024;

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body, null, 2) + "\n", {
    status,
    headers: { "content-type": "application/json; charset=utf-8" },
  });
}

function problem(status: number, error: string, extra: Record<string, unknown> = {}): Response {
  return json(status, { error, ...extra });
}

async function readJson(request: Request): Promise<{ value: unknown } | Response> {
  // Requiring JSON keeps browsers from posting here across origins without a preflight.
  const type = request.headers.get("content-type") ?? "";
  if (!/^application\/json\b/i.test(type)) {
    return problem(
      415,
      `content-type: expected application/json, found ${
        type === "" ? "none" : JSON.stringify(type)
      }`,
    );
  }
  const length = Number(request.headers.get("content-length") ?? "0");
  if (length > MAX_BODY) return problem(413, `request body: expected at most ${MAX_BODY} bytes`);
  const text = await request.text();
  if (text.length > MAX_BODY) {
    return problem(413, `request body: expected at most ${MAX_BODY} bytes`);
  }
  if (text.trim() === "") return problem(400, "request body: expected JSON, found nothing");
  try {
    return { value: JSON.parse(text) };
  } catch (error) {
    return problem(400, `request body: expected JSON (${errorMessage(error)})`);
  }
}

/** Decodes one %-escaped path segment; undefined when an escape is malformed. */
function decodePathPart(text: string): string | undefined {
  try {
    return decodeURIComponent(text);
  } catch {
    return undefined;
  }
}

const ENDPOINTS = [
  "GET /agents",
  "GET /health",
  "GET /stats",
  "GET /config/<agent>",
  "PUT /config/<agent>",
  "POST /send",
  "GET /metrics",
];

/** Starts the admin API. */
export function startAdminServer(options: AdminServerOptions): Promise<AdminServer> {
  const { host, port } = splitHostPort(options.listen, "--admin");
  if (exposureProblem(`${host}:${port}`, { token: Boolean(options.token) }) !== undefined) {
    throw new Error(
      `--admin ${options.listen}: the admin API listens on loopback only (127.0.0.1 or ::1) unless an admin token is set`,
    );
  }
  const { broker, log } = options;

  const handle = async (request: Request): Promise<Response> => {
    const url = new URL(request.url);
    // Without a token only loopback host names are answered (no DNS rebinding from a web page).
    const refused = checkRequestAccess(request, options.token);
    if (refused) {
      log.warn(
        `refused ${request.method} ${url.pathname}: ${
          refused.status === 401 ? "missing or wrong admin token" : refused.error
        }`,
      );
      return problem(refused.status, refused.error.replace("<token>", "<admin token>"));
    }
    const path = url.pathname.replace(/\/+$/, "") || "/";
    const method = request.method;
    const only = (allowed: string) =>
      new Response(JSON.stringify({ error: `${path}: expected ${allowed}, found ${method}` }), {
        status: 405,
        headers: { "content-type": "application/json", allow: allowed },
      });
    try {
      if (path === "/") return json(200, { endpoints: ENDPOINTS });
      if (path === "/agents") {
        return method === "GET" ? json(200, { agents: broker.agents() }) : only("GET");
      }
      if (path === "/health") {
        return method === "GET" ? json(200, { agents: broker.health() }) : only("GET");
      }
      if (path === "/stats") return method === "GET" ? json(200, broker.stats()) : only("GET");
      if (path === "/metrics") {
        if (method !== "GET") return only("GET");
        const { body, contentType } = await broker.metrics(
          negotiateFormat(request.headers.get("accept")),
        );
        return new Response(body, { headers: { "content-type": contentType } });
      }
      if (path.startsWith("/config/")) {
        const agentId = decodePathPart(path.slice("/config/".length));
        if (agentId === undefined) {
          return problem(
            400,
            `${path}: expected /config/<agent id> with valid %-escapes (such as %2D), found a malformed %-escape`,
          );
        }
        if (method === "GET") return json(200, await broker.getConfig(agentId));
        if (method === "PUT") {
          const body = await readJson(request);
          if (body instanceof Response) return body;
          return json(200, await broker.putConfig(agentId, body.value));
        }
        return only("GET, PUT");
      }
      if (path === "/send") {
        if (method !== "POST") return only("POST");
        const body = await readJson(request);
        if (body instanceof Response) return body;
        return sendResponse(body.value);
      }
      return problem(404, `${path}: no such endpoint; expected one of ${ENDPOINTS.join(", ")}`);
    } catch (error) {
      if (error instanceof ConfigError) {
        return problem(400, error.message, { issues: error.issues });
      }
      if (error instanceof TypeError || error instanceof URIError) {
        return problem(400, error.message);
      }
      log.error(`${method} ${path} failed: ${errorMessage(error)}`);
      return problem(500, errorMessage(error));
    }
  };

  const sendResponse = (value: unknown): Response => {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      return problem(
        400,
        'request body: expected {"target": "<agent|all>", "command_type": "status", "args": {...}}',
      );
    }
    const body = value as Record<string, unknown>;
    const invalid = checkTarget(body.target) ?? checkCommandType(body.command_type) ??
      (body.args !== undefined && body.args !== null && !isPlainObject(body.args)
        ? "args: expected a JSON object"
        : undefined);
    if (invalid) return problem(400, invalid);
    if (
      body.timeout_ms !== undefined &&
      (typeof body.timeout_ms !== "number" || !(body.timeout_ms > 0))
    ) {
      return problem(400, "timeout_ms: expected a positive number of milliseconds");
    }
    const request: SendRequest = {
      target: body.target as string,
      command_type: body.command_type as string,
      args: body.args === undefined || body.args === null
        ? undefined
        : body.args as Record<string, unknown>,
      timeout_ms: body.timeout_ms as number | undefined,
    };
    const encoder = new TextEncoder();
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    let open = true;
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        controller = c;
      },
      cancel() {
        open = false;
      },
    });
    const write = (event: SendEvent | { event: "error"; error: string }) => {
      if (!open) return;
      try {
        controller.enqueue(encoder.encode(JSON.stringify(event) + "\n"));
      } catch {
        open = false;
      }
    };
    broker.send(request, write).catch((error) =>
      write({ event: "error", error: errorMessage(error) })
    )
      .finally(() => {
        if (!open) return;
        open = false;
        try {
          controller.close();
        } catch { /* cancelled */ }
      });
    return new Response(stream, {
      headers: {
        "content-type": "application/x-ndjson; charset=utf-8",
        "cache-control": "no-store",
      },
    });
  };

  return new Promise((resolve, reject) => {
    try {
      const server = Deno.serve({
        hostname: host,
        port,
        onListen(addr) {
          const bound = addr as Deno.NetAddr;
          const shown = bound.hostname.includes(":") ? `[${bound.hostname}]` : bound.hostname;
          resolve({ address: `${shown}:${bound.port}`, close: () => server.shutdown() });
        },
        onError(error) {
          log.error(`admin API error: ${errorMessage(error)}`);
          return problem(500, errorMessage(error));
        },
      }, handle);
    } catch (error) {
      reject(
        new Error(`cannot listen on ${options.listen} (admin API): ${errorMessage(error)}`, {
          cause: error,
        }),
      );
    }
  });
}
