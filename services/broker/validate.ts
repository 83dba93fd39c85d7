/**
 * Validation of everything an agent sends on its stream. Each check returns
 * a message naming the field and what was expected, or undefined when the
 * message is valid; the broker ends the stream with INVALID_ARGUMENT and that
 * message.
 *
 * @module
 */
import { checkAgentId } from "../common/ids.ts";
import type { Batch, CommandResult, Hello } from "../rpc/messages.ts";

/** Limits applied to incoming messages. */
export interface MessageLimits {
  /** Most samples in one batch. */
  maxBatchSamples: number;
  /** Most alerts in one batch. */
  maxBatchAlerts: number;
  /** Most metrics in one sample. */
  maxMetricsPerSample: number;
  /** Longest metric name (characters). */
  maxMetricNameLength: number;
}

/** Default limits. */
export const DEFAULT_LIMITS: Readonly<MessageLimits> = Object.freeze({
  maxBatchSamples: 1000,
  maxBatchAlerts: 1000,
  maxMetricsPerSample: 256,
  maxMetricNameLength: 128,
});

/** Longest hostname accepted in a Hello. */
const MAX_HOSTNAME = 255;
/** Longest agent version string. */
const MAX_VERSION = 64;
/** Longest command id. */
export const MAX_COMMAND_ID = 256;
/** Longest command output (characters of JSON). */
const MAX_OUTPUT = 1024 * 1024;

function describe(value: unknown): string {
  if (value === undefined) return "nothing";
  if (typeof value === "number") return String(value);
  if (typeof value === "string") {
    const text = JSON.stringify(value);
    return text.length > 40 ? text.slice(0, 37) + '..."' : text;
  }
  return typeof value;
}

function finite(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value);
}

/** Checks a metric or alert name: a non-empty string without control characters. */
export function checkMetricName(name: unknown, where: string, limits: MessageLimits) {
  if (typeof name !== "string" || name.length === 0) {
    return `${where}: expected a non-empty metric name, found ${describe(name)}`;
  }
  if (name.length > limits.maxMetricNameLength) {
    return `${where}: expected a metric name of at most ${limits.maxMetricNameLength} characters, found ${name.length}`;
  }
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) {
    return `${where}: expected a metric name without control characters, found ${describe(name)}`;
  }
  return undefined;
}

/** Validates the first message of a stream. */
export function checkHello(hello: Hello): string | undefined {
  if (typeof hello.agent_id !== "string") return "hello.agent_id: expected a string";
  const idProblem = checkAgentId(hello.agent_id);
  if (idProblem) return `hello.agent_id: ${idProblem}`;
  if (typeof hello.hostname !== "string" || hello.hostname.length > MAX_HOSTNAME) {
    return `hello.hostname: expected a string of at most ${MAX_HOSTNAME} characters`;
  }
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(hello.hostname)) {
    return "hello.hostname: expected no control characters";
  }
  if (typeof hello.version !== "string" || hello.version.length > MAX_VERSION) {
    return `hello.version: expected a string of at most ${MAX_VERSION} characters`;
  }
  const instance = hello.instance_id ?? "";
  if (typeof instance !== "string" || !/^[A-Za-z0-9._-]{0,64}$/.test(instance)) {
    return "hello.instance_id: expected at most 64 letters, digits, '.', '_' or '-'";
  }
  return undefined;
}

/** Validates one batch. */
export function checkBatch(batch: Batch, limits: MessageLimits): string | undefined {
  if (!Number.isSafeInteger(batch.seq) || batch.seq < 0) {
    return `batch.seq: expected a whole number >= 0, found ${describe(batch.seq)}`;
  }
  const samples = batch.samples ?? [];
  const alerts = batch.alerts ?? [];
  if (!Array.isArray(samples)) return "batch.samples: expected a list";
  if (!Array.isArray(alerts)) return "batch.alerts: expected a list";
  if (samples.length > limits.maxBatchSamples) {
    return `batch.samples: expected at most ${limits.maxBatchSamples} samples per batch, found ${samples.length}`;
  }
  if (alerts.length > limits.maxBatchAlerts) {
    return `batch.alerts: expected at most ${limits.maxBatchAlerts} alerts per batch, found ${alerts.length}`;
  }
  for (let i = 0; i < samples.length; i++) {
    const sample = samples[i];
    const where = `batch.samples[${i}]`;
    if (!finite(sample.timestamp) || sample.timestamp < 0) {
      return `${where}.timestamp: expected Unix seconds (a finite number >= 0), found ${
        describe(sample.timestamp)
      }`;
    }
    const metrics = sample.metrics ?? {};
    const names = Object.keys(metrics);
    if (names.length > limits.maxMetricsPerSample) {
      return `${where}.metrics: expected at most ${limits.maxMetricsPerSample} metrics, found ${names.length}`;
    }
    for (const name of names) {
      const problem = checkMetricName(name, `${where}.metrics`, limits);
      if (problem) return problem;
      const value = metrics[name];
      if (!finite(value)) {
        return `${where}.metrics[${JSON.stringify(name)}]: expected a finite number, found ${
          describe(value)
        }`;
      }
    }
    const counters = sample.counters ?? {};
    const counterNames = Object.keys(counters);
    if (counterNames.length > limits.maxMetricsPerSample) {
      return `${where}.counters: expected at most ${limits.maxMetricsPerSample} counters, found ${counterNames.length}`;
    }
    for (const name of counterNames) {
      const problem = checkMetricName(name, `${where}.counters`, limits);
      if (problem) return problem;
      const value = counters[name];
      if (!finite(value) || value < 0) {
        return `${where}.counters[${JSON.stringify(name)}]: expected a finite number >= 0, found ${
          describe(value)
        }`;
      }
    }
    for (const field of ["interval", "keepalive"] as const) {
      const value = sample[field] ?? 0;
      if (!finite(value) || value < 0) {
        return `${where}.${field}: expected seconds (a finite number >= 0, 0 when not said), found ${
          describe(value)
        }`;
      }
    }
  }
  for (let i = 0; i < alerts.length; i++) {
    const alert = alerts[i];
    const where = `batch.alerts[${i}]`;
    const nameProblem = checkMetricName(alert.metric, `${where}.metric`, limits);
    if (nameProblem) return nameProblem;
    for (const field of ["value", "threshold", "timestamp"] as const) {
      if (!finite(alert[field])) {
        return `${where}.${field}: expected a finite number, found ${describe(alert[field])}`;
      }
    }
    if (alert.state !== "firing" && alert.state !== "resolved") {
      return `${where}.state: expected "firing" or "resolved", found ${describe(alert.state)}`;
    }
  }
  return undefined;
}

/** A command result after validation, with its output parsed. */
export interface ParsedResult {
  command_id: string;
  status: "ok" | "error";
  output: unknown;
  timestamp: number;
}

/** Validates a command result and parses its output; a string names the problem. */
export function parseResult(result: CommandResult): ParsedResult | string {
  if (
    typeof result.command_id !== "string" || result.command_id.length === 0 ||
    result.command_id.length > MAX_COMMAND_ID
  ) {
    return `result.command_id: expected a non-empty string of at most ${MAX_COMMAND_ID} characters, found ${
      describe(result.command_id)
    }`;
  }
  if (result.status !== "ok" && result.status !== "error") {
    return `result.status: expected "ok" or "error", found ${describe(result.status)}`;
  }
  if (typeof result.output_json !== "string" || result.output_json.length > MAX_OUTPUT) {
    return `result.output_json: expected JSON text of at most ${MAX_OUTPUT} characters`;
  }
  let output: unknown = "";
  if (result.output_json !== "") {
    try {
      output = JSON.parse(result.output_json);
    } catch (error) {
      return `result.output_json: expected JSON text, found ${describe(result.output_json)} (${
        (error as Error).message
      })`;
    }
  }
  if (!finite(result.timestamp)) {
    return `result.timestamp: expected a finite number, found ${describe(result.timestamp)}`;
  }
  return {
    command_id: result.command_id,
    status: result.status,
    output,
    timestamp: result.timestamp,
  };
}
