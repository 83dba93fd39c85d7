/**
 * The analysis application's command line: `deno task analysis --help`.
 *
 * @module
 */
import { Command } from "commander";
import { join } from "node:path";
import process from "node:process";
import { openBus } from "../bus/mod.ts";
import {
  addCommonOptions,
  announceReady,
  configureLogging,
  fatal,
  onShutdownSignal,
  onTerminal,
  parseServiceFlags,
  type ServiceFlags,
} from "../common/cli.ts";
import { errorMessage, getLogger } from "../common/log.ts";
import {
  resolveServiceSettings,
  sectionNumber,
  sectionString,
} from "../config/service_settings.ts";
import { startConsole } from "../console/mod.ts";
import { analysisCommands, localAnalysisBackend } from "./console.ts";
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

monitor.yaml keys (section analysis:): group (of the analysis the supervisor starts),
command_timeout (seconds), summary_interval (seconds).`;

interface AnalysisFlags extends ServiceFlags {
  group?: string;
  commandTimeout?: string;
  summaryInterval?: string;
  fromBeginning?: boolean;
}

async function main() {
  const program = addCommonOptions(
    new Command()
      .name("analysis")
      .description(
        "Consumes monitoring data, results and alerts; shows a live view per agent; sends commands to agents.",
      ),
  )
    .option(
      "--group <name>",
      "consumer group (default: analysis under the supervisor; a group of its own on a terminal or with --console)",
    )
    .option("--command-timeout <seconds>", "how long send waits for results (default 15)")
    .option(
      "--summary-interval <seconds>",
      "period of the summary when not on a terminal (default 10)",
    )
    .option("--from-beginning", "a new consumer group starts at the beginning of the topics");
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
  const analysis = await startAnalysis({
    bus,
    topics: settings.topics,
    group,
    fromBeginning: flags.fromBeginning,
    commandTimeoutMs: commandTimeout === undefined ? undefined : commandTimeout * 1000,
    closeBus: true,
    log,
  });

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

  let exiting = false;
  const shutdown = async () => {
    if (exiting) return;
    exiting = true;
    display.stop();
    console?.close();
    try {
      await analysis.stop();
    } catch (error) {
      log.error(`stopping: ${errorMessage(error)}`);
    }
    Deno.exit(0);
  };
  onShutdownSignal(() => void shutdown());
  if (flags.supervised) announceReady();
  if (console) {
    await console.done;
    await shutdown();
  }
}

if (import.meta.main) {
  main().catch((error) => fatal("analysis", error));
}
