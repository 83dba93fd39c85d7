/**
 * The agent's command line: `deno task agent --help`.
 *
 * @module
 */
import { Command } from "commander";
import {
  addCommonOptions,
  configureLogging,
  fatal,
  parseServiceFlags,
  type ServiceFlags,
  stopOnShutdown,
} from "../common/cli.ts";
import { checkAgentId } from "../common/ids.ts";
import { getLogger, setLogContext, setLogSink } from "../common/log.ts";
import { parseBrokerList } from "../common/broker_list.ts";
import { resolveServiceSettings, sectionString } from "../config/service_settings.ts";
import { MONITOR_DEFAULTS } from "../config/defaults.ts";
import { openStore } from "../store/mod.ts";
import { describeCommands } from "./commands.ts";
import { type AgentOptions, runOnce, startAgent } from "./agent.ts";
import type { MetricsSource } from "./metrics.ts";
import { readAgentSecurity } from "./security.ts";
import { agentStoreOptions } from "./permissions.ts";
import { Ticker } from "./ticker.ts";

/** Default broker address. */
export const DEFAULT_BROKER: string = MONITOR_DEFAULTS.broker.listen;

const EXAMPLES = `
Examples:
  deno task agent                                    # broker on 127.0.0.1:50052, embedded store in ./.monitor
  deno task agent --id web-1 --log-level debug
  deno task agent --config monitor.yaml              # store, broker and agent settings from monitor.yaml
  # an agent on another host (the seed's start_agent.sh SERVER:50052 my-agent SERVER):
  deno task agent --broker SERVER:50052 --id my-agent --store-backend etcd --store-endpoints SERVER:2379
  deno task agent --broker b1:50052,b2:50052,b3:50052 --id my-agent ...   # several brokers, failover
  deno task agent --broker broker.example:50052 --tls-ca ca.pem --tls-cert agent.pem --tls-key agent-key.pem \\
      --token-file /etc/monitor/agent-token

The agent reads its configuration from the store key <prefix>/config/<id> (or
<prefix>/config/default), applies changes live, writes <prefix>/heartbeat/<id>
on a lease and answers these commands:
${describeCommands().map((line) => `  ${line}`).join("\n")}

monitor.yaml keys (section agent:): id, broker (host:port or a list), metrics_source, tls: {ca, cert, key,
server_name}, token_file | token_env | token. Without agent.broker and an agent token the
agent uses broker.listen (and its broker.replicas ports) and the broker.token* keys of the
same file. The token is never
given on the command line (it would show in ps): --token-file and --token-env name where
to read it.`;

interface AgentFlags extends ServiceFlags {
  broker?: string;
  id?: string;
  tokenFile?: string;
  tokenEnv?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsServerName?: string;
  metricsSource?: string;
  test?: boolean;
  once?: boolean;
}

async function main() {
  const program = addCommonOptions(
    new Command()
      .name("deno task agent")
      .description(
        "Collects system metrics, runs them through the plugin pipeline and streams them to the broker.",
      ),
  )
    .option(
      "--broker <host:port,...>",
      `broker address, or several separated by commas: the agent picks one by its id and fails over to the others (default: ${DEFAULT_BROKER})`,
    )
    .option("--id <agent-id>", "agent id (default: the hostname)")
    .option("--token-file <file>", "file holding the token the broker requires, if any")
    .option("--token-env <name>", "environment variable holding the token the broker requires")
    .option("--tls-ca <file>", "CA (PEM) the broker's certificate must chain to (enables TLS)")
    .option("--tls-cert <file>", "client certificate (PEM) for mTLS")
    .option("--tls-key <file>", "client private key (PEM) for mTLS")
    .option("--tls-server-name <name>", "expected name in the broker's certificate")
    .option(
      "--metrics-source <source>",
      "native | systeminformation (cpu and memory through npm:systeminformation; needs --allow-env) (default: native)",
    )
    .option(
      "--test",
      "collect once through the configured pipeline, print the sample as it would be sent, exit (sends nothing)",
    )
    .option(
      "--once",
      "collect once, send that one batch to the broker, wait for its acknowledgement, exit",
    );
  const flags = parseServiceFlags<AgentFlags>(program, EXAMPLES);

  const settings = await resolveServiceSettings("agent", flags);

  // The local agent of a monitor.yaml talks to that file's brokers unless agent: says
  // otherwise: the resolved configuration's agent.broker says which.
  const brokers = agentBrokers(flags.broker, settings.config.agent.broker);
  const id = sectionString(settings, "agent", "id", flags.id);
  if (id !== undefined) {
    const problem = checkAgentId(id);
    if (problem) throw new Error(`--id: ${problem}`);
  }
  configureLogging(settings, { service: "agent", agent: id });
  const source = sectionString(settings, "agent", "metrics_source", flags.metricsSource) ?? "auto";
  if (!["auto", "native", "systeminformation"].includes(source)) {
    throw new Error(
      `--metrics-source: expected auto, native or systeminformation, found ${
        JSON.stringify(source)
      }`,
    );
  }
  const security = await readAgentSecurity(settings);
  const log = getLogger(`agent ${id ?? "(hostname)"}`);
  if (security.token?.warning) log.warn(security.token.warning);

  if (flags.test && flags.once) {
    throw new Error("--test and --once: expected one of them, found both");
  }
  // One timer for the collection, the heartbeat and the embedded store's poll.
  const ticker = new Ticker();
  const store = await openStore(settings.store, agentStoreOptions(ticker));
  const options: AgentOptions = {
    agentId: id,
    store,
    ownsStore: true,
    prefix: settings.store.prefix,
    stateDir: settings.stateDir,
    broker: brokers,
    tls: security.tls,
    token: security.token?.value,
    metricsSource: source as MetricsSource | "auto",
    ticker,
    log: id ? log : undefined,
  };
  if (flags.test || flags.once) Deno.exit(await oneShot(flags.test ? "test" : "once", options));

  let agent;
  try {
    agent = await startAgent(options);
  } catch (error) {
    await store.close().catch(() => {});
    throw error;
  }
  setLogContext({ service: "agent", agent: agent.agentId });

  const started = agent;
  stopOnShutdown(async (why) => {
    getLogger(`agent ${started.agentId}`).info(`stopping: ${why}`);
    await started.stop();
  }, { log, supervised: flags.supervised });
}

/**
 * `--test` (Telegraf's): the sample as it would be published on
 * monitoring-data, and each alert as on monitoring-alerts, as JSON on stdout
 * (log lines go to stderr). `--once`: sends the one batch. Returns the exit code.
 */
async function oneShot(mode: "test" | "once", options: AgentOptions): Promise<number> {
  const log = getLogger(`agent ${options.agentId ?? "(hostname)"}`);
  if (mode === "test") {
    // stdout carries only the samples (for jq); every log line goes to stderr.
    setLogSink((line) => console.error(line));
  }
  const result = await runOnce(options, mode);
  const { sample } = result;
  const plugins = result.plugins.length ? result.plugins.join(", ") : "no plugins";
  if (mode === "test") {
    console.error(`collected: ${JSON.stringify(sample.collected)}`);
    if (sample.sent) {
      console.log(JSON.stringify(
        {
          agent_id: result.agentId,
          hostname: result.hostname,
          timestamp: sample.sent.timestamp,
          metrics: sample.sent.metrics,
        },
        null,
        2,
      ));
      console.error(`after the pipeline (${plugins}): the sample above; nothing was sent`);
    } else {
      console.error(
        Object.keys(sample.collected.metrics).length === 0
          ? "no metric could be read (see the warnings above); nothing to send"
          : `the pipeline (${plugins}) dropped the sample at plugin ${sample.dropped_by}`,
      );
    }
    for (const alert of result.alerts) {
      console.log(JSON.stringify({ agent_id: result.agentId, ...alert }, null, 2));
    }
    return 0;
  }
  if (sample.seq === undefined) {
    log.info(
      sample.dropped_by
        ? `the pipeline (${plugins}) dropped the sample at plugin ${sample.dropped_by}; nothing sent`
        : "no metric could be read; nothing sent",
    );
    return 0;
  }
  if (!result.acknowledged) {
    log.error(
      `batch ${sample.seq} was not acknowledged by the broker (${
        [options.broker].flat().join(", ")
      }) in time`,
    );
    return 1;
  }
  log.info(
    `sent one batch (seq ${sample.seq}, ${
      Object.keys(sample.sent?.metrics ?? {}).length
    } metric(s)) and the broker acknowledged it`,
  );
  return 0;
}

/**
 * The brokers of the agent: `--broker`, else the resolved `agent.broker`
 * (monitor.yaml's `agent.broker`, else every broker the same file starts:
 * `broker.listen` and its `broker.replicas`, else {@linkcode DEFAULT_BROKER}).
 */
function agentBrokers(flag: string | undefined, resolved: string): string[] {
  const parsed = parseBrokerList(flag ?? resolved);
  if (typeof parsed === "string") {
    throw new Error(`${flag !== undefined ? "--broker" : "agent.broker"}: ${parsed}`);
  }
  return parsed;
}

if (import.meta.main) {
  main().catch((error) => fatal("agent", error));
}
