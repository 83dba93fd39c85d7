/**
 * The analysis application's command line: `deno task analysis --help`.
 *
 * @module
 */
import { Command } from "commander";
import { dirname, join } from "node:path";
import process from "node:process";
import { openBus } from "../bus/mod.ts";
import {
  addCommonOptions,
  announceServing,
  configureLogging,
  fatal,
  onTerminal,
  parseServiceFlags,
  type ServiceFlags,
  stopOnShutdown,
} from "../common/cli.ts";
import { errorMessage, getLogger } from "../common/log.ts";
import { readSecret } from "../common/secrets.ts";
import { readTlsFile, secretSources, tlsFileResolver } from "../config/security_settings.ts";
import { HealthMonitor } from "../broker/health.ts";
import { resolveAnalysisSection } from "../config/monitor_config.ts";
import { openStore } from "../store/mod.ts";
import type { Store } from "../store/types.ts";
import {
  resolveServiceSettings,
  sectionNumber,
  sectionString,
} from "../config/service_settings.ts";
import { startConsole } from "../console/mod.ts";
import { analysisCommands, localAnalysisBackend } from "./console.ts";
import { type Dashboard, startDashboard } from "./dashboard.ts";
import { FleetState } from "./fleet.ts";
import { HISTORY_FILE, HistoryStore } from "./history.ts";
import { recordEvents } from "./recorder.ts";
import { chooseGroup } from "./group.ts";
import { startAnalysis, startLiveDisplay } from "./mod.ts";

const EXAMPLES = `
Examples:
  deno task analysis                                  # embedded bus in ./.monitor
  deno task analysis --config monitor.yaml
  deno task analysis --bus-backend kafka --bus-brokers 10.0.0.6:9092
  printf 'send all status\\nquit\\n' | deno task analysis --console   # scripted console

Shows one line per agent with its latest values (alerts highlighted), redrawn in
place on a terminal; when the output is not a terminal, a compact summary every
--summary-interval seconds. Console (terminal, or --console): help, stats,
send <agent|all> <command> [json args], quit.

On a terminal or with --console the analysis joins a consumer group of its own
(analysis-console-<random>, starting with new messages) so that it sees everything
even beside the analysis of "deno task up"; --group chooses one.

Keeps every sample in a history under the state directory (timeseries.db) and
serves the dashboard (default: http://127.0.0.1:8090/; --http off to turn it off;
an analysis started beside the supervised one, which serves it already, says so).

monitor.yaml keys (section analysis:): group (of the analysis the supervisor starts),
command_timeout (seconds), summary_interval (seconds), http, http_token / http_token_file /
http_token_env, tls: {cert, key}, history: {raw_retention_hours, rollup_retention_days,
max_size_mb}.`;

interface AnalysisFlags extends ServiceFlags {
  group?: string;
  commandTimeout?: string;
  summaryInterval?: string;
  fromBeginning?: boolean;
  http?: string;
}

async function main() {
  const program = addCommonOptions(
    new Command()
      .name("deno task analysis")
      .description(
        "Consumes monitoring data, results and alerts; shows a live view per agent; sends commands to agents.",
      ),
  )
    .option(
      "--group <name>",
      "consumer group (default: analysis under the supervisor; a group of its own on a terminal or with --console)",
    )
    .option("--command-timeout <seconds>", "how long send waits for results (default: 15)")
    .option(
      "--summary-interval <seconds>",
      "period of the summary when not on a terminal (default: 10)",
    )
    .option("--from-beginning", "a new consumer group starts at the beginning of the topics")
    .option("--http <host:port|off>", "the dashboard's address (default: 127.0.0.1:8090)");
  const flags = parseServiceFlags<AnalysisFlags>(program, EXAMPLES);
  const log = getLogger("analysis");
  const settings = await resolveServiceSettings("analysis", flags);
  configureLogging(settings, { service: "analysis" });
  const commandTimeout = sectionNumber(
    settings,
    "analysis",
    "command_timeout",
    flags.commandTimeout,
    "a number of seconds greater than 0",
  );
  const summaryInterval = sectionNumber(
    settings,
    "analysis",
    "summary_interval",
    flags.summaryInterval,
    "a number of seconds greater than 0",
  ) ?? 10;

  const section = resolveAnalysisSection(
    flags.http === undefined ? settings.section : { ...settings.section, http: flags.http },
    flags.http === undefined ? settings.configFile : undefined,
  );
  await Deno.mkdir(settings.stateDir, { recursive: true });
  const history = HistoryStore.open(join(settings.stateDir, HISTORY_FILE), {
    rawRetentionHours: section.history.raw_retention_hours,
    rollupRetentionDays: section.history.rollup_retention_days,
    maxSizeMb: section.history.max_size_mb,
    onWarning: (message) => log.warn(message),
  });
  history.startBackground();
  const fleet = new FleetState();
  seedFleet(fleet, history);

  const terminal = onTerminal();
  const withConsole = !flags.supervised && (terminal || Boolean(flags.console));
  // monitor.yaml's analysis.group is the supervised analysis's; an interactive one beside it
  // takes a group of its own unless --group says otherwise.
  const configuredGroup = sectionString(settings, "analysis", "group", flags.group);
  const { group } = chooseGroup({
    configured: withConsole ? flags.group : configuredGroup,
    supervised: Boolean(flags.supervised),
    interactive: withConsole,
  });
  const bus = await openBus({ ...settings.bus, clientId: "analysis" });
  // Heartbeats, once the store is open (below).
  let health: HealthMonitor | undefined;
  const analysis = await startAnalysis({
    bus,
    topics: settings.topics,
    group,
    fromBeginning: flags.fromBeginning,
    commandTimeoutMs: commandTimeout === undefined ? undefined : commandTimeout * 1000,
    closeBus: true,
    log,
    // `send all` waits for the agents whose heartbeat says they are up (none stopping).
    connectedAgents: () =>
      health?.list().filter((h) => h.status === "alive" && h.agent_status !== "stopping").map((
        h,
      ) => h.agent_id),
  });
  const stopRecording = recordEvents(analysis, fleet, history);

  // The store: agents' heartbeats (health, plugins, version) and configurations. Opened in
  // the background: the live view and the history do not wait for it.
  let store: Store | undefined;
  let dashboard: Dashboard | undefined;
  let stopping = false;
  const storeReady = (async () => {
    try {
      const opened = await openStore(settings.store);
      if (stopping) return await opened.close();
      store = opened;
      health = await HealthMonitor.start(opened, settings.store.prefix, log);
      const monitor = health;
      const apply = (id: string) => {
        const h = monitor.get(id);
        if (!h) return;
        fleet.applyHealth(id, { ...h, details: monitor.details(id) });
        dashboard?.touch(id);
      };
      for (const h of monitor.list()) apply(h.agent_id);
      monitor.onChange(apply);
    } catch (error) {
      log.warn(
        `the dashboard runs without the store (no health, no configuration): ${
          errorMessage(error)
        }`,
      );
    }
  })();
  if (section.http !== "off") {
    const base = settings.configFile ? dirname(settings.configFile) : Deno.cwd();
    const token = await readSecret({
      what: "analysis.http_token",
      ...secretSources(settings.section, "http_token", "analysis"),
      base,
    });
    if (token?.warning) log.warn(token.warning);
    const pick = tlsFileResolver(section.tls ?? {}, "analysis", base, Deno.cwd());
    const cert = pick(undefined, "cert");
    const key = pick(undefined, "key");
    const tls = cert && key
      ? { cert: await readTlsFile(cert), key: await readTlsFile(key) }
      : undefined;
    try {
      dashboard = await startDashboard({
        listen: section.http,
        token: token?.value,
        tls,
        analysis,
        fleet,
        history,
        store: () => store,
        prefix: settings.store.prefix,
        log,
      });
      log.info(`dashboard: ${dashboard.url}`);
      if (flags.supervised) announceServing("dashboard", dashboard.url);
    } catch (error) {
      // Another analysis process (the supervised one) may serve it already.
      log.warn(`no dashboard from this process: ${errorMessage(error)}`);
    }
  }

  const console = withConsole
    ? startConsole({
      name: "analysis",
      commands: analysisCommands(localAnalysisBackend(analysis)),
      historyFile: join(settings.stateDir, "history", "analysis"),
      terminal,
    })
    : undefined;
  const display = startLiveDisplay({
    analysis,
    mode: console?.interactive
      ? "console"
      : !flags.supervised && !withConsole && process.stdout.isTTY
      ? "tty"
      : "summary",
    console,
    summaryMs: summaryInterval * 1000,
    log,
  });

  const shutdown = stopOnShutdown(async () => {
    display.stop();
    console?.close();
    stopping = true;
    await dashboard?.close();
    await analysis.stop();
    stopRecording();
    history.close();
    await storeReady;
    await health?.close();
    await store?.close();
  }, { log, supervised: flags.supervised });
  if (console) {
    await console.done;
    await shutdown("the analysis console was closed");
  }
}

/** Seeds the fleet's sparklines and last values from the history (after a restart). */
function seedFleet(fleet: FleetState, history: HistoryStore) {
  const now = Date.now() / 1000;
  for (const agent of history.agentIds()) {
    const series = history.query(agent, now - 300, now);
    for (const [metric, points] of Object.entries(series)) {
      if (points.t.length > 0) fleet.seedSpark(agent, metric, points);
    }
  }
}

if (import.meta.main) {
  main().catch((error) => fatal("analysis", error));
}
