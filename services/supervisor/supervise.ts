/**
 * The supervisor's long-running process, started by `deno task up`
 * (services/supervisor/main.ts) with the permissions
 * {@linkcode supervisorPermissionSet} computed from monitor.yaml. Not meant
 * to be run by hand.
 *
 * Exit codes: 0 after a clean stop, 1 after an error or an unclean stop,
 * {@linkcode RELAUNCH_EXIT_CODE} when an edit changed its own permissions
 * (main.ts then validates the file again and starts it anew).
 *
 * @module
 */
import { join } from "node:path";
import { onParentExit } from "../common/cli.ts";
import { errorMessage, isLogFormat } from "../common/log.ts";
import { readSecret } from "../common/secrets.ts";
import { ConfigError, formatIssue } from "../config/issues.ts";
import { startAdminConsole } from "../broker/console.ts";
import type { Console } from "../console/mod.ts";
import { consoleEditDir } from "../console/permissions.ts";
import { RELAUNCH_EXIT_CODE } from "./commands.ts";
import { loadPlan, parsePlan } from "./from_config.ts";
import type { SupervisorPlan } from "./plan.ts";
import { ServiceOutput } from "./output.ts";
import { lockStateDir } from "./lock.ts";
import { Supervisor } from "./supervisor.ts";
import { watchFile } from "./watch.ts";

export { RELAUNCH_EXIT_CODE };

function argValue(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

/** Runs the supervisor until a signal, `quit` in the console, or a relaunch. Returns the exit code. */
export async function supervise(args: string[]): Promise<number> {
  const file = argValue(args, "--config");
  // `deno task up --log-format json` wins over monitor.yaml's log_format, for every plan.
  const logFormat = argValue(args, "--log-format");
  const withFlags = (plan: SupervisorPlan) => {
    if (isLogFormat(logFormat)) plan.deployment.logFormat = logFormat;
    return plan;
  };
  if (!file) {
    console.error("supervisor: error: --config <monitor.yaml> is required");
    return 1;
  }
  const output = new ServiceOutput();
  let plan;
  // One read: the plan and the watcher's starting point are the same text.
  const text = await Deno.readTextFile(file).catch(() => undefined);
  try {
    // Without the text, loadPlan names why the file cannot be read.
    plan = withFlags(text === undefined ? await loadPlan(file) : parsePlan(text, file));
  } catch (error) {
    if (error instanceof ConfigError) {
      for (const issue of error.issues) console.error(formatIssue(issue, error.file ?? file));
    } else console.error(`supervisor: error: ${errorMessage(error)}`);
    return 1;
  }
  if (isLogFormat(plan.deployment.logFormat)) output.setFormat(plan.deployment.logFormat);
  // One system per state folder: a second `deno task up` is refused before it starts anything.
  const lock = lockStateDir(plan.deployment.stateDir, { config: file });
  if (!lock.ok) {
    console.error(`supervisor: error: ${lock.message}`);
    return 1;
  }
  const supervisor = new Supervisor({
    plan,
    parse: (text) => withFlags(parsePlan(text, file)),
    output,
  });
  let console_: Console | undefined;
  let resolveStop!: (why: string) => void;
  const stopRequested = new Promise<string>((resolve) => resolveStop = resolve);
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGHUP"];
  let stopping = false;
  let lastSignal = 0;
  const handlers = signals.map((signal) => {
    const handler = () => {
      // A terminal's Ctrl-C arrives twice (directly and forwarded by the launcher): copies
      // within 300 ms count once. Another signal while stopping kills the services at once.
      const now = Date.now();
      const repeated = now - lastSignal > 300;
      lastSignal = now;
      if (stopping && repeated) {
        output.say("warn", `received ${signal} again: killing the services`);
        supervisor.kill();
      }
      resolveStop(`received ${signal}`);
    };
    Deno.addSignalListener(signal, handler);
    return () => Deno.removeSignalListener(signal, handler);
  });

  let relaunch = false;
  const watch = watchFile(file, (text) => supervisor.applyEdit(text, file), {
    initialText: text,
    onError: (error) => output.say("warn", `watching ${file}: ${errorMessage(error)}`),
  });
  supervisor.relaunchRequested.then((why) => {
    relaunch = true;
    resolveStop(why);
  });
  // `deno task up` killed with SIGKILL: stop the services in order rather than leave them running.
  const stopWatchingParent = onParentExit((pid) =>
    resolveStop(`deno task up (pid ${pid}) is gone`)
  );

  const started = supervisor.start().catch((error) => {
    output.say("error", errorMessage(error));
    resolveStop("the services could not be started");
    return false;
  });
  const interactive = Deno.stdin.isTerminal() && Deno.stdout.isTerminal();
  const admin = plan.deployment.broker.admin;
  const whyStop = await Promise.race([
    stopRequested,
    started.then(async (ok) => {
      if (!interactive || !admin || !ok) return await stopRequested;
      const broker = plan.deployment.broker;
      const adminToken = await readSecret({
        what: "broker.admin_token",
        inline: (plan.serviceInputs.broker as { admin_token?: string }).admin_token,
        file: broker.adminTokenFile,
        env: broker.adminTokenEnv,
        base: plan.deployment.stateDir,
      }).catch((error) => {
        output.say("warn", `console: ${errorMessage(error)}`);
        return undefined;
      });
      console_ = startAdminConsole({
        adminUrl: admin,
        token: adminToken?.value,
        historyFile: join(plan.deployment.stateDir, "history", "console"),
        editDir: consoleEditDir(plan.deployment.stateDir),
        confirmQuit: "Stop every service and quit?",
      });
      output.setWriter((line) => console_?.print(line));
      return await Promise.race([console_.done.then(() => "quit in the console"), stopRequested]);
    }),
  ]);
  stopping = true;
  output.setWriter(undefined);
  console_?.close();
  output.say("info", `stopping (${whyStop})`);
  await watch.close();
  const clean = await supervisor.stop();
  await started.catch(() => {});
  handlers.forEach((remove) => remove());
  stopWatchingParent();
  lock.release();
  if (relaunch) return RELAUNCH_EXIT_CODE;
  output.say("info", clean ? "all services stopped" : "stopped, but not every service cleanly");
  return clean ? 0 : 1;
}

if (import.meta.main) {
  Deno.exit(await supervise(Deno.args));
}
