/**
 * HTTP client of the broker's admin API (see services/broker/admin.ts), used
 * by consoles that do not run inside the broker (the supervisor's console).
 *
 * @module
 */
import type { ConfigIssue } from "../config/issues.ts";
import type { ConfigView, ConfigWrite } from "../config/config_store.ts";
import type { SendEvent, SendRequest, SendSummary } from "./send.ts";
import type { AgentInfo, BrokerBackend, BrokerStats, HealthEntry } from "./types.ts";

/** An error answer of the admin API. */
export class AdminApiError extends Error {
  /**
   * @param status HTTP status
   * @param message the API's `error` text
   * @param issues configuration problems, for a refused `PUT /config`
   */
  constructor(readonly status: number, message: string, readonly issues: ConfigIssue[] = []) {
    super(message);
    this.name = "AdminApiError";
  }
}

/** Options of {@linkcode AdminClient}. */
export interface AdminClientOptions {
  /** `http://host:port` or `host:port` of the admin API (default port 50053). */
  url: string;
  /** Bearer token, when the broker requires one. */
  token?: string;
  /** Timeout of ordinary requests (ms). Default 10000. */
  timeoutMs?: number;
}

/** Normalizes `host:port` or a URL to `http://host:port` without a trailing slash. */
export function adminBaseUrl(url: string): string {
  const withScheme = /^https?:\/\//.test(url) ? url : `http://${url}`;
  return withScheme.replace(/\/+$/, "");
}

/** Talks to the broker's admin API; implements {@linkcode BrokerBackend}. */
export class AdminClient implements BrokerBackend {
  readonly baseUrl: string;
  #token?: string;
  #timeoutMs: number;

  /** @param options where the admin API is */
  constructor(options: AdminClientOptions) {
    this.baseUrl = adminBaseUrl(options.url);
    this.#token = options.token;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
  }

  async #request(
    method: string,
    path: string,
    body?: unknown,
    timeoutMs = this.#timeoutMs,
  ): Promise<Response> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    const headers: Record<string, string> = {};
    if (this.#token) headers.authorization = `Bearer ${this.#token}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    let response: Response;
    try {
      response = await fetch(`${this.baseUrl}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: controller.signal,
      });
    } catch (error) {
      clearTimeout(timer);
      const why = controller.signal.aborted
        ? `no answer within ${timeoutMs} ms`
        : (error as Error).message;
      throw new AdminApiError(0, `broker admin API at ${this.baseUrl} not reachable: ${why}`);
    }
    if (!response.ok) {
      clearTimeout(timer);
      let message = `${method} ${path}: HTTP ${response.status}`;
      let issues: ConfigIssue[] = [];
      try {
        const parsed = await response.json() as { error?: string; issues?: ConfigIssue[] };
        if (parsed.error) message = parsed.error;
        if (Array.isArray(parsed.issues)) issues = parsed.issues;
      } catch { /* not JSON */ }
      throw new AdminApiError(response.status, message, issues);
    }
    // The caller reads the body; the timer only guards the connection and headers.
    clearTimeout(timer);
    return response;
  }

  async #json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await this.#request(method, path, body);
    return await response.json() as T;
  }

  /** `GET /agents`. */
  async agents(): Promise<AgentInfo[]> {
    return (await this.#json<{ agents: AgentInfo[] }>("GET", "/agents")).agents;
  }

  /** `GET /health`. */
  async health(): Promise<HealthEntry[]> {
    return (await this.#json<{ agents: HealthEntry[] }>("GET", "/health")).agents;
  }

  /** `GET /stats`. */
  stats(): Promise<BrokerStats> {
    return this.#json<BrokerStats>("GET", "/stats");
  }

  /** `GET /config/<agent>`. */
  getConfig(agentId: string): Promise<ConfigView> {
    return this.#json<ConfigView>("GET", `/config/${encodeURIComponent(agentId)}`);
  }

  /** `PUT /config/<agent>`; rejects with {@linkcode AdminApiError} listing the issues. */
  putConfig(agentId: string, config: unknown): Promise<ConfigWrite> {
    return this.#json<ConfigWrite>("PUT", `/config/${encodeURIComponent(agentId)}`, config);
  }

  /** `GET /metrics` (Prometheus text). */
  async metrics(): Promise<string> {
    return await (await this.#request("GET", "/metrics")).text();
  }

  /** `POST /send`: calls `onEvent` for each streamed event; resolves with the summary. */
  async send(request: SendRequest, onEvent?: (event: SendEvent) => void): Promise<SendSummary> {
    const response = await this.#request("POST", "/send", request);
    if (!response.body) throw new AdminApiError(0, "POST /send: empty answer");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let summary: SendSummary | undefined;
    let failure: string | undefined;
    const handle = (line: string) => {
      if (line.trim() === "") return;
      const event = JSON.parse(line) as SendEvent | { event: "error"; error: string };
      if (event.event === "error") {
        failure = event.error;
        return;
      }
      if (event.event === "summary") summary = event.summary;
      onEvent?.(event);
    };
    try {
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let newline = buffer.indexOf("\n");
        while (newline >= 0) {
          handle(buffer.slice(0, newline));
          buffer = buffer.slice(newline + 1);
          newline = buffer.indexOf("\n");
        }
      }
      handle(buffer);
    } finally {
      reader.releaseLock();
    }
    if (failure !== undefined) throw new AdminApiError(500, failure);
    if (!summary) throw new AdminApiError(0, "POST /send: the answer ended without a summary");
    return summary;
  }
}
