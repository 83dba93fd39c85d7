/**
 * `deno task up`: validates monitor.yaml, then runs the supervisor
 * (services/supervisor/supervise.ts) as a subprocess with exactly the
 * permissions that file calls for, and every service under it with its own.
 *
 * This launcher only reads: it needs to read the monitor.yaml it is given
 * (which may be anywhere, hence `--allow-read` without a list) and to run
 * `deno`; it never writes nor connects anywhere. When an edit of
 * monitor.yaml changes the supervisor's own permissions (store, state
 * directory, admin address), the supervisor stops everything and exits
 * with {@linkcode RELAUNCH_EXIT_CODE}; the launcher validates the file
 * again and starts it anew.
 *
 * @module
 */
import { Command } from "commander";
import { resolve } from "node:path";
import { errorMessage, isLogFormat } from "../common/log.ts";
import { ConfigError, formatIssue } from "../config/issues.ts";
import {
  brokerReplicaCommand,
  brokerReplicaName,
  formatCommand,
  pinCommand,
  RELAUNCH_EXIT_CODE,
  REPO_ROOT,
  SERVICE_NAMES,
  serviceCommand,
  supervisorCommand,
} from "./commands.ts";
import { environmentEditor } from "../console/permissions.ts";
import { runInForeground } from "./foreground.ts";
import { loadPlan } from "./from_config.ts";
import type { SupervisorPlan } from "./plan.ts";

const EXAMPLES = `
Examples:
  deno task up                                  # ./monitor.yaml: broker, analysis, local agent
  deno task up --config /etc/monitor/monitor.yaml
  deno task up --print-commands                 # the exact command line of every process

Starts the broker, then the analysis application, then the local agent, each as
"deno run" with only the permissions monitor.yaml calls for; prefixes their output
with their names; restarts a crashed service with exponential backoff (5 crashes
within 60 s stop the retries for that service); applies edits of monitor.yaml
live (agents: written to the store, plugins: pinned again, a service whose own
section changed is restarted alone). Ctrl-C or SIGTERM stops everything.
On a terminal, a console talks to the broker's admin API (help, list, health,
stats, config, send, quit).`;

interface UpFlags {
  config?: string;
  logFormat?: string;
  printCommands?: boolean;
}

function printIssues(error: unknown, file: string): void {
  if (error instanceof ConfigError) {
    for (const issue of error.issues) console.error(formatIssue(issue, error.file ?? file));
  } else console.error(`up: error: ${errorMessage(error)}`);
}

/** Every command line of a plan, as `# name` and the line. */
export function describeCommands(plan: SupervisorPlan, supervisorFlags: string[] = []): string {
  const lines = [`# run in ${REPO_ROOT}`];
  lines.push("# supervisor", formatCommand(supervisorCommand(plan.deployment, supervisorFlags)));
  if (Object.keys(plan.plugins).length > 0) {
    lines.push("# plugins (pinning)", formatCommand(pinCommand(plan.deployment)));
  }
  for (const name of SERVICE_NAMES) {
    lines.push(`# ${name}`, formatCommand(serviceCommand(name, plan.deployment)));
    const replicas = name === "broker" ? plan.deployment.broker.replicas?.length ?? 1 : 1;
    for (let i = 1; i < replicas; i++) {
      lines.push(
        `# ${brokerReplicaName(i)}`,
        formatCommand(brokerReplicaCommand(plan.deployment, i)),
      );
    }
  }
  return lines.join("\n");
}

/** The plan of `file`, with the editor the console's `config` may start (from the environment). */
async function loadLaunchPlan(file: string): Promise<SupervisorPlan> {
  const plan = await loadPlan(file);
  const editor = environmentEditor();
  if (editor) plan.deployment.editor = editor;
  return plan;
}

async function main(): Promise<number> {
  const program = new Command()
    .name("deno task up")
    .description("Start the whole system described by monitor.yaml.")
    .option("--config <file>", "the monitor.yaml to use (default: monitor.yaml)")
    .option("--print-commands", "print the exact command line of every process and exit")
    .option(
      "--log-format <format>",
      "text | json, one object a line, for the supervisor and every service (default: log_format, else text)",
    )
    .addHelpText("after", EXAMPLES)
    .showHelpAfterError()
    .parse(Deno.args, { from: "user" });
  const flags = program.opts<UpFlags>();
  const given = flags.config ?? "monitor.yaml";
  const file = resolve(given);
  if (flags.logFormat !== undefined && !isLogFormat(flags.logFormat)) {
    program.error(
      `error: --log-format: expected text or json, found ${JSON.stringify(flags.logFormat)}`,
    );
  }
  const supervisorFlags = flags.logFormat ? ["--log-format", flags.logFormat] : [];
  const override = (plan: SupervisorPlan) => {
    if (flags.logFormat) plan.deployment.logFormat = flags.logFormat;
    return plan;
  };

  let plan: SupervisorPlan;
  try {
    plan = override(await loadLaunchPlan(file));
  } catch (error) {
    printIssues(error, given);
    return 1;
  }
  if (flags.printCommands) {
    console.log(describeCommands(plan, supervisorFlags));
    return 0;
  }

  while (true) {
    const code = await runInForeground(supervisorCommand(plan.deployment, supervisorFlags));
    if (code !== RELAUNCH_EXIT_CODE) return code;
    try {
      plan = override(await loadLaunchPlan(file));
    } catch (error) {
      printIssues(error, given);
      return 1;
    }
  }
}

if (import.meta.main) {
  Deno.exit(await main());
}
