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
  announceReady,
  fatal,
  onShutdownSignal,
  onTerminal,
} from "../common/cli.ts";
import { errorMessage, getLogger, setLogLevel } from "../common/log.ts";
import {
  resolveServiceSettings,
  sectionNumber,
  sectionString,
} from "../common/service_settings.ts";
import { brokerCommands, localBrokerBackend, startConsole } from "../console/mod.ts";
import type { ServerTlsOptions } from "../rpc/mod.ts";
import { openStore } from "../store/mod.ts";
import type { Store } from "../store/types.ts";
import { DEFAULT_ADMIN, DEFAULT_LISTEN, startBroker } from "./mod.ts";

const EXAMPLES = `
Examples:
  deno task broker                                   # embedded store and bus in ./.monitor
  deno task broker --config monitor.yaml             # settings from monitor.yaml
  deno task broker --listen 0.0.0.0:50052 --token s3cret \\
      --store-backend etcd --store-endpoints 10.0.0.5:2379 \\
      --bus-backend kafka --bus-brokers 10.0.0.6:9092
  deno task broker --sink result.txt                 # also append samples as JSON lines
  curl http://127.0.0.1:50053/metrics                # Prometheus text from the admin API

Console (when stdin is a terminal, or with --console): help, list, health, stats,
config <agent> <json>, send <agent|all> <command> [json args], quit.

monitor.yaml keys (section broker:): listen, admin, admin_token, token, sink,
command_timeout (seconds), max_batch_samples, tls: {cert, key, ca, require_client_cert}.`;

interface BrokerFlags {
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
  listen?: string;
  admin?: string;
  adminToken?: string;
  token?: string;
  sink?: string;
  commandTimeout?: string;
  maxBatchSamples?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  tlsRequireClientCert?: boolean;
}

async function main() {
  const program = addCommonOptions(
    new Command()
      .name("broker")
      .description(
        "Accepts agent streams over gRPC, publishes their data to the bus, routes commands, watches heartbeats, serves the admin API.",
      ),
  )
    .option("--listen <host:port>", `gRPC address for agents (default ${DEFAULT_LISTEN})`)
    .option(
      "--admin <host:port>",
      `admin HTTP API on loopback, or "off" (default ${DEFAULT_ADMIN})`,
    )
    .option("--admin-token <token>", "require this bearer token on the admin API")
    .option("--token <token>", "require agents to present this token in their hello")
    .option("--sink <file>", "append every received sample to this file as JSON lines")
    .option("--command-timeout <seconds>", "how long an agent has to answer a command (default 10)")
    .option("--max-batch-samples <n>", "largest batch accepted (default 1000)")
    .option("--tls-cert <file>", "TLS certificate (PEM) for the gRPC listener")
    .option("--tls-key <file>", "TLS private key (PEM)")
    .option("--tls-ca <file>", "CA (PEM) that agent certificates must chain to (mTLS)")
    .option("--tls-require-client-cert", "refuse agents without a certificate signed by --tls-ca")
    .addHelpText("after", EXAMPLES)
    .showHelpAfterError()
    .parse(Deno.args, { from: "user" });
  const flags = program.opts<BrokerFlags>();
  const log = getLogger("broker");

  const settings = await resolveServiceSettings("broker", flags);
  setLogLevel(settings.logLevel);
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
  const tls = await readTls(settings.section.tls, flags, base);

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
    adminToken: sectionString(settings, "broker", "admin_token", flags.adminToken),
    token: sectionString(settings, "broker", "token", flags.token),
    sinkPath: sink === undefined ? undefined : path(sink),
    commandTimeoutMs: commandTimeout === undefined ? undefined : commandTimeout * 1000,
    limits: maxBatch === undefined ? undefined : { maxBatchSamples: Math.floor(maxBatch) },
    tls,
    bus,
    store,
    prefix: settings.store.prefix,
    topics: settings.topics,
    closeBackends: true,
    log,
  });

  let exiting = false;
  const shutdown = async (why: string) => {
    if (exiting) return;
    exiting = true;
    try {
      await broker.stop(why);
    } catch (error) {
      log.error(`stopping: ${errorMessage(error)}`);
    }
    Deno.exit(0);
  };
  onShutdownSignal((signal) => void shutdown(`the broker received ${signal}`));

  if (flags.supervised) {
    announceReady();
    return;
  }
  if (onTerminal() || flags.console) {
    const console = startConsole({
      name: "broker",
      commands: brokerCommands(localBrokerBackend(broker)),
      historyFile: join(settings.stateDir, "history", "broker"),
      terminal: onTerminal(),
    });
    await console.done;
    await shutdown("the broker console was closed");
  }
}

async function readTls(
  section: unknown,
  flags: BrokerFlags,
  base: string,
): Promise<ServerTlsOptions | undefined> {
  const doc = (typeof section === "object" && section !== null ? section : {}) as Record<
    string,
    unknown
  >;
  const pick = (flag: string | undefined, key: string) =>
    flag ?? (typeof doc[key] === "string" ? doc[key] as string : undefined);
  const cert = pick(flags.tlsCert, "cert");
  const key = pick(flags.tlsKey, "key");
  const ca = pick(flags.tlsCa, "ca");
  if (cert === undefined && key === undefined) return undefined;
  if (cert === undefined || key === undefined) {
    throw new Error("broker.tls: expected both cert and key (PEM files)");
  }
  const read = async (p: string, what: string) => {
    const file = isAbsolute(p) ? p : resolve(base, p);
    try {
      return await Deno.readTextFile(file);
    } catch (error) {
      throw new Error(`broker.tls.${what}: cannot read ${file}: ${errorMessage(error)}`);
    }
  };
  return {
    cert: await read(cert, "cert"),
    key: await read(key, "key"),
    ca: ca === undefined ? undefined : await read(ca, "ca"),
    requireClientCert: flags.tlsRequireClientCert ?? doc.require_client_cert === true,
  };
}

if (import.meta.main) {
  main().catch((error) => fatal("broker", error));
}
