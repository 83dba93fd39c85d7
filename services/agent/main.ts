/**
 * The agent's command line: `deno task agent --help`.
 *
 * @module
 */
import { Command } from "commander";
import { isAbsolute, resolve } from "node:path";
import { addCommonOptions, announceReady, fatal, onShutdownSignal } from "../common/cli.ts";
import { checkAgentId } from "../common/ids.ts";
import { errorMessage, getLogger, setLogLevel } from "../common/log.ts";
import {
  isHostPort,
  readMonitorYaml,
  resolveServiceSettings,
  sectionString,
} from "../common/service_settings.ts";
import type { ClientTlsOptions } from "../rpc/mod.ts";
import { openStore } from "../store/mod.ts";
import { describeCommands } from "./commands.ts";
import { startAgent } from "./agent.ts";
import type { MetricsSource } from "./metrics.ts";

/** Default broker address. */
export const DEFAULT_BROKER = "127.0.0.1:50052";

const EXAMPLES = `
Examples:
  deno task agent                                    # broker on 127.0.0.1:50052, embedded store in ./.monitor
  deno task agent --id web-1 --log-level debug
  deno task agent --config monitor.yaml              # store, broker and agent settings from monitor.yaml
  # an agent on another host (the seed's start_agent.sh SERVER:50052 my-agent SERVER):
  deno task agent --broker SERVER:50052 --id my-agent --store-backend etcd --store-endpoints SERVER:2379
  deno task agent --broker broker.example:50052 --tls-ca ca.pem --tls-cert agent.pem --tls-key agent-key.pem

The agent reads its configuration from the store key <prefix>/config/<id> (or
<prefix>/config/default), applies changes live, writes <prefix>/heartbeat/<id>
on a lease and answers these commands:
${describeCommands().map((line) => `  ${line}`).join("\n")}

monitor.yaml keys (section agent:): id, broker, token, metrics_source,
tls: {ca, cert, key, server_name}. Without agent.broker and agent.token the agent uses
broker.listen and broker.token of the same file.`;

interface AgentFlags {
  config?: string;
  storeBackend?: string;
  storeEndpoints?: string;
  storePrefix?: string;
  busBackend?: string;
  busBrokers?: string;
  stateDir?: string;
  supervised?: boolean;
  console?: boolean;
  logLevel?: string;
  broker?: string;
  id?: string;
  token?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsServerName?: string;
  metricsSource?: string;
}

async function main() {
  const program = addCommonOptions(
    new Command()
      .name("agent")
      .description(
        "Collects system metrics, runs them through the plugin pipeline and streams them to the broker.",
      ),
  )
    .option("--broker <host:port>", `broker address (default ${DEFAULT_BROKER})`)
    .option("--id <agent-id>", "agent id (default: the hostname)")
    .option("--token <token>", "shared secret the broker requires, if any")
    .option("--tls-ca <file>", "CA (PEM) the broker's certificate must chain to (enables TLS)")
    .option("--tls-cert <file>", "client certificate (PEM) for mTLS")
    .option("--tls-key <file>", "client private key (PEM) for mTLS")
    .option("--tls-server-name <name>", "expected name in the broker's certificate")
    .option(
      "--metrics-source <source>",
      "native | systeminformation (cpu and memory through npm:systeminformation; needs --allow-env) (default native)",
    )
    .addHelpText("after", EXAMPLES)
    .showHelpAfterError()
    .parse(Deno.args, { from: "user" });
  const flags = program.opts<AgentFlags>();

  const settings = await resolveServiceSettings("agent", flags);
  setLogLevel(settings.logLevel);
  const base = settings.configFile ? resolve(settings.configFile, "..") : Deno.cwd();

  // The local agent of a monitor.yaml talks to that file's broker unless agent: says otherwise.
  const brokerSection = settings.configFile
    ? (await readMonitorYaml(settings.configFile)).broker as Record<string, unknown> | undefined
    : undefined;
  let broker = sectionString(settings, "agent", "broker", flags.broker);
  if (broker === undefined && typeof brokerSection?.listen === "string") {
    broker = brokerSection.listen.replace(/^(0\.0\.0\.0|\[::\]):/, "127.0.0.1:");
  }
  broker ??= DEFAULT_BROKER;
  if (!isHostPort(broker)) {
    throw new Error(`--broker: expected host:port, found ${JSON.stringify(broker)}`);
  }
  const id = sectionString(settings, "agent", "id", flags.id);
  if (id !== undefined) {
    const problem = checkAgentId(id);
    if (problem) throw new Error(`--id: ${problem}`);
  }
  const source = sectionString(settings, "agent", "metrics_source", flags.metricsSource) ?? "auto";
  if (!["auto", "native", "systeminformation"].includes(source)) {
    throw new Error(
      `--metrics-source: expected auto, native or systeminformation, found ${
        JSON.stringify(source)
      }`,
    );
  }
  const token = sectionString(settings, "agent", "token", flags.token) ??
    (typeof brokerSection?.token === "string" ? brokerSection.token : undefined);
  const tls = await readTls(settings.section.tls, flags, base);
  const log = getLogger(`agent ${id ?? "(hostname)"}`);

  const store = await openStore(settings.store);
  let agent;
  try {
    agent = await startAgent({
      agentId: id,
      store,
      ownsStore: true,
      prefix: settings.store.prefix,
      stateDir: settings.stateDir,
      broker,
      tls,
      token,
      metricsSource: source as MetricsSource | "auto",
      log: id ? log : undefined,
    });
  } catch (error) {
    await store.close().catch(() => {});
    throw error;
  }

  let exiting = false;
  const shutdown = async (why: string) => {
    if (exiting) return;
    exiting = true;
    getLogger(`agent ${agent.agentId}`).info(`stopping: ${why}`);
    try {
      await agent.stop();
    } catch (error) {
      log.error(`stopping: ${errorMessage(error)}`);
    }
    Deno.exit(0);
  };
  onShutdownSignal((signal) => void shutdown(`received ${signal}`));
  if (flags.supervised) announceReady();
}

async function readTls(
  section: unknown,
  flags: AgentFlags,
  base: string,
): Promise<ClientTlsOptions | undefined> {
  const doc = (typeof section === "object" && section !== null ? section : {}) as Record<
    string,
    unknown
  >;
  const pick = (flag: string | undefined, key: string) =>
    flag ?? (typeof doc[key] === "string" ? doc[key] as string : undefined);
  const ca = pick(flags.tlsCa, "ca");
  const cert = pick(flags.tlsCert, "cert");
  const key = pick(flags.tlsKey, "key");
  const serverName = pick(flags.tlsServerName, "server_name");
  if (ca === undefined && cert === undefined && key === undefined) return undefined;
  if ((cert === undefined) !== (key === undefined)) {
    throw new Error("agent.tls: expected both cert and key (PEM files) for mTLS, or neither");
  }
  const read = async (p: string, what: string) => {
    const file = isAbsolute(p) ? p : resolve(base, p);
    try {
      return await Deno.readTextFile(file);
    } catch (error) {
      throw new Error(`agent.tls.${what}: cannot read ${file}: ${errorMessage(error)}`);
    }
  };
  const tls: ClientTlsOptions = {};
  if (ca !== undefined) tls.ca = await read(ca, "ca");
  if (cert !== undefined) tls.cert = await read(cert, "cert");
  if (key !== undefined) tls.key = await read(key, "key");
  if (serverName !== undefined) tls.serverName = serverName;
  return tls;
}

if (import.meta.main) {
  main().catch((error) => fatal("agent", error));
}
