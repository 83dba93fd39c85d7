/**
 * Runs one command in the foreground of a launcher (`deno task up`,
 * `deno task broker` ...): the child shares the terminal (stdin, stdout,
 * stderr), the signals the launcher receives are passed on, and the child's
 * exit code is returned.
 *
 * @module
 */
import type { ServiceCommand } from "./process.ts";

/** Runs `command` with the terminal, forwarding SIGTERM, SIGHUP and SIGINT; resolves its exit code. */
export async function runInForeground(command: ServiceCommand): Promise<number> {
  const child = new Deno.Command(command.program, {
    args: command.args,
    cwd: command.cwd,
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  // A terminal's Ctrl-C reaches the child directly (same process group); forward the rest.
  const signals: Deno.Signal[] = ["SIGTERM", "SIGHUP", "SIGINT"];
  const handlers = signals.map((signal) => {
    const handler = () => {
      try {
        child.kill(signal);
      } catch { /* exited */ }
    };
    Deno.addSignalListener(signal, handler);
    return () => Deno.removeSignalListener(signal, handler);
  });
  try {
    return (await child.status).code;
  } finally {
    handlers.forEach((remove) => remove());
  }
}
