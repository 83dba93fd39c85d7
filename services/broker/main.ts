/**
 * The broker's command line: `deno task broker --help`.
 *
 * @module
 */
import { Command } from "commander";
import { isAbsolute, join, resolve } from "node:path";
import { openBus } from "../bus/mod.ts";
import type { Bus } from "../bus/types.ts";
import {
  addCommonOptions,
  configureLogging,
  fatal,
  onTerminal,
  parseServiceFlags,
  type ServiceFlags,
  stopOnShutdown,
} from "../common/cli.ts";
import { getLogger } from "../common/log.ts";
import {
  resolveServiceSettings,
  sectionNumber,
  sectionString,
} from "../config/service_settings.ts";
import { startConsole } from "../console/mod.ts";
import { consoleEditDir } from "../console/permissions.ts";
import { openStore } from "../store/mod.ts";
import type { Store } from "../store/types.ts";
import { DEFAULT_ADMIN, DEFAULT_LISTEN, DEFAULT_MAX_STREAMS, startBroker } from "./mod.ts";
import { brokerCommands, localBrokerBackend } from "./console.ts";
import { readBrokerSecurity, securityWarnings } from "./security.ts";

const EXAMPLES = `
Examples:
  deno task broker                                   # embedded store and bus in ./.monitor
  deno task broker --config monitor.yaml             # settings from monitor.yaml
  deno task broker --listen 0.0.0.0:50052 --token-file /etc/monitor/agent-token \\
      --tls-cert broker.pem --tls-key broker-key.pem --tls-ca ca.pem \\
      --store-backend etcd --store-endpoints 10.0.0.5:2379 \\
      --bus-backend kafka --bus-brokers 10.0.0.6:9092
  deno task broker --sink result.txt                 # also append samples as JSON lines
  deno task broker --listen 0.0.0.0:50062 --admin 127.0.0.1:50063   # a second broker (agents: --broker a:50052,a:50062)
  curl http://127.0.0.1:50053/metrics                # Prometheus text from the admin API

Console (when stdin is a terminal, or with --console): help, list, health, stats,
config <agent> <json>, send <agent|all> <command> [json args], quit.

monitor.yaml keys (section broker:): listen, admin, sink, command_timeout (seconds),
max_batch_samples, max_streams, replicas (used by the supervisor), tls: {cert, key, ca, require_client_cert}, token_file | token_env | token,
admin_token_file | admin_token_env | admin_token. Tokens are never given on the command line
(they would show in ps): --token-file and --token-env name where to read them.`;

interface BrokerFlags extends ServiceFlags {
  listen?: string;
  admin?: string;
  adminTokenFile?: string;
  adminTokenEnv?: string;
  tokenFile?: string;
  tokenEnv?: string;
  sink?: string;
  commandTimeout?: string;
  maxBatchSamples?: string;
  maxStreams?: string;
  id?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
}

async function main() {
  const program = addCommonOptions(
    new Command()
      .name("deno task broker")
      .description(
        "Accepts agent streams over gRPC, publishes their data to the bus, routes commands, watches heartbeats, serves the admin API.",
      ),
  )
    .option("--listen <host:port>", `gRPC address for agents (default: ${DEFAULT_LISTEN})`)
    .option(
      "--admin <host:port>",
      `admin HTTP API on loopback, or "off" (default: ${DEFAULT_ADMIN})`,
    )
    .option("--admin-token-file <file>", "file holding the bearer token the admin API requires")
    .option("--admin-token-env <name>", "environment variable holding the admin API's token")
    .option("--token-file <file>", "file holding the token agents must present")
    .option("--token-env <name>", "environment variable holding the token agents must present")
    .option("--sink <file>", "append every received sample to this file as JSON lines")
    .option(
      "--command-timeout <seconds>",
      "how long an agent has to answer a command (default: 10)",
    )
    .option("--max-batch-samples <n>", "largest batch accepted (default: 1000)")
    .option(
      "--max-streams <n>",
      `most agent streams this broker accepts; more are refused RESOURCE_EXHAUSTED and go to another broker (default: ${DEFAULT_MAX_STREAMS})`,
    )
    .option(
      "--id <broker-id>",
      "this broker's id in the fleet (default: <host>:<port> of --listen, the hostname for 0.0.0.0)",
    )
    .option("--tls-cert <file>", "TLS certificate (PEM) for the gRPC listener")
    .option("--tls-key <file>", "TLS private key (PEM)")
    .option(
      "--tls-ca <file>",
      "CA (PEM) agent certificates must chain to: mTLS, certificates required",
    );
  const flags = parseServiceFlags<BrokerFlags>(program, EXAMPLES);
  const log = getLogger("broker");

  const settings = await resolveServiceSettings("broker", flags);
  configureLogging(settings, { service: "broker" });
  const base = settings.configFile ? resolve(settings.configFile, "..") : Deno.cwd();
  const path = (p: string) =>
    isAbsolute(p) ? p : resolve(flags.sink !== undefined ? Deno.cwd() : base, p);
  const listen = sectionString(settings, "broker", "listen", flags.listen) ?? DEFAULT_LISTEN;
  const adminRaw = sectionString(settings, "broker", "admin", flags.admin) ?? DEFAULT_ADMIN;
  const sink = sectionString(settings, "broker", "sink", flags.sink);
  const commandTimeout = sectionNumber(
    settings,
    "broker",
    "command_timeout",
    flags.commandTimeout,
    "a number of seconds greater than 0",
  );
  const maxBatch = sectionNumber(
    settings,
    "broker",
    "max_batch_samples",
    flags.maxBatchSamples,
    "a whole number of samples greater than 0",
  );
  const maxStreams = sectionNumber(
    settings,
    "broker",
    "max_streams",
    flags.maxStreams,
    "a whole number of streams (agents) greater than 0",
  );
  if (flags.id !== undefined && !/^[^/\s]{1,128}$/.test(flags.id)) {
    throw new Error(
      `--id: expected 1 to 128 characters without '/' or spaces, found ${JSON.stringify(flags.id)}`,
    );
  }
  const security = await readBrokerSecurity(settings);
  for (const warning of securityWarnings(listen, security)) log.warn(warning);
  if (security.tls) {
    log.info(
      `gRPC listener ${listen}: TLS${
        security.tls.requireClientCert ? " with client certificates required (mTLS)" : ""
      }`,
    );
  }
  if (security.token) log.info(`agents must present the token from ${security.token.from}`);

  let store: Store | undefined;
  let bus: Bus | undefined;
  try {
    store = await openStore(settings.store);
    bus = await openBus({ ...settings.bus, clientId: "broker" });
  } catch (error) {
    await bus?.close().catch(() => {});
    await store?.close().catch(() => {});
    throw error;
  }
  const broker = await startBroker({
    listen,
    admin: adminRaw === "off" ? false : adminRaw,
    adminToken: security.adminToken?.value,
    token: security.token?.value,
    sinkPath: sink === undefined ? undefined : path(sink),
    commandTimeoutMs: commandTimeout === undefined ? undefined : commandTimeout * 1000,
    limits: maxBatch === undefined ? undefined : { maxBatchSamples: Math.floor(maxBatch) },
    maxStreams: maxStreams === undefined ? undefined : Math.floor(maxStreams),
    brokerId: flags.id,
    tls: security.tls,
    bus,
    store,
    prefix: settings.store.prefix,
    topics: settings.topics,
    closeBackends: true,
    log,
  });

  const shutdown = stopOnShutdown((why) => broker.stop(why), {
    log,
    reason: (signal) => `the broker received ${signal}`,
    supervised: flags.supervised,
  });
  if (flags.supervised) return;
  if (onTerminal() || flags.console) {
    const console = startConsole({
      name: "broker",
      commands: brokerCommands(localBrokerBackend(broker)),
      historyFile: join(settings.stateDir, "history", "broker"),
      editDir: consoleEditDir(settings.stateDir),
      terminal: onTerminal(),
    });
    await console.done;
    await shutdown("the broker console was closed");
  }
}

if (import.meta.main) {
  main().catch((error) => fatal("broker", error));
}
