/**
 * The defaults of monitor.yaml: the one place they are written. The
 * configuration resolver fills them in, and the services' own defaults (the
 * broker's `DEFAULT_LISTEN`, the agent's default broker, the store prefix)
 * are these values.
 *
 * @module
 */
import { DEFAULT_LOG_FORMAT, type LogFormat, type LogLevel } from "../common/log.ts";
import { DEFAULT_STORE_PREFIX } from "../store/keys.ts";

/** Defaults of monitor.yaml (the values `deno task validate` fills in). */
export const MONITOR_DEFAULTS = Object.freeze({
  state_dir: ".monitor",
  log_level: "info" as LogLevel,
  log_format: DEFAULT_LOG_FORMAT as LogFormat,
  store: Object.freeze({
    backend: "embedded",
    endpoints: ["127.0.0.1:2379"],
    prefix: DEFAULT_STORE_PREFIX,
  }),
  bus: Object.freeze({ backend: "embedded", brokers: ["127.0.0.1:9092"] }),
  broker: Object.freeze({
    /** The broker's gRPC address (its `DEFAULT_LISTEN`, the agent's default broker). */
    listen: "127.0.0.1:50052",
    /** The broker's admin API (its `DEFAULT_ADMIN`). */
    admin: "127.0.0.1:50053",
    command_timeout: 10,
    max_batch_samples: 1000,
    /** Brokers the supervisor starts on this host (listen port + i, admin port + i). */
    replicas: 1,
    /**
     * Streams (agents) one broker process accepts (the broker's
     * `DEFAULT_MAX_STREAMS`). It was 4,000 while Deno 2.9's node:http2, which
     * aborted a broker near 7,000 streams (issue 14), ran the broker's
     * server; on its own HTTP/2 server one broker holds 5,000 agents at p99
     * sample → Kafka 92 ms and 40 % of a core on a 2-core machine (bench
     * scenario 8), and two brokers take 10,000.
     */
    max_streams: 5000,
  }),
  analysis: Object.freeze({
    group: "analysis",
    command_timeout: 15,
    summary_interval: 10,
    /** The dashboard's address. */
    http: "127.0.0.1:8090",
    history: Object.freeze({
      raw_retention_hours: 24,
      rollup_retention_days: 7,
      max_size_mb: 1024,
    }),
  }),
  agent: Object.freeze({ metrics_source: "auto" }),
});
