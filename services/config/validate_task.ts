/**
 * `deno task validate [file]`: runs validate_main.ts with read access to
 * exactly the file it checks ({@linkcode validatePermissions}), wherever it
 * is. This launcher only reads its arguments and runs `deno`.
 *
 * @module
 */
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { permissionFlags } from "../common/permissions.ts";
import { validateFileArgument, validatePermissions } from "./permissions.ts";

const MAIN = fileURLToPath(new URL("./validate_main.ts", import.meta.url));

/** Runs the validator on `args`; resolves with its exit code. */
export async function runValidateTask(args: readonly string[]): Promise<number> {
  const file = resolve(validateFileArgument(args));
  const child = new Deno.Command("deno", {
    args: ["run", "--no-prompt", ...permissionFlags(validatePermissions(file)), MAIN, ...args],
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  return (await child.status).code;
}

if (import.meta.main) {
  Deno.exit(await runValidateTask(Deno.args));
}
