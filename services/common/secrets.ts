/**
 * Shared secrets (agent token, admin token) read from a file or an
 * environment variable named in monitor.yaml or by a flag, never given on the
 * command line itself, where every user of the machine could read it in `ps`.
 *
 * @module
 */
import { isAbsolute, resolve } from "node:path";
import { errorMessage } from "./log.ts";

/** The environment variable the `deno task broker` / `deno task agent` permissions allow. */
export const DEFAULT_TOKEN_ENV = "MONITOR_TOKEN";

/** Where one secret may come from (at most one of them). */
export interface SecretSource {
  /** Name of the setting, for messages, e.g. `broker.token`. */
  what: string;
  /** The secret written in monitor.yaml itself. */
  inline?: string;
  /** A file holding the secret (surrounding white space ignored). */
  file?: string;
  /** An environment variable holding the secret. */
  env?: string;
  /** Base folder of a relative `file` (monitor.yaml's folder, or the working directory). */
  base: string;
}

/** A secret and where it came from (for the log; never the secret itself). */
export interface Secret {
  value: string;
  /** e.g. `file /etc/monitor/token` or `environment variable MONITOR_TOKEN`. */
  from: string;
  /** A warning about how it is stored, e.g. a file others can read. */
  warning?: string;
}

/**
 * Reads a secret; undefined when no source is set. Throws naming the setting
 * and what was expected when the source cannot be read or is empty.
 */
export async function readSecret(source: SecretSource): Promise<Secret | undefined> {
  const given = [
    source.inline !== undefined ? `${source.what}` : undefined,
    source.file !== undefined ? `${source.what}_file` : undefined,
    source.env !== undefined ? `${source.what}_env` : undefined,
  ].filter((g): g is string => g !== undefined);
  if (given.length === 0) return undefined;
  if (given.length > 1) {
    throw new Error(`${given.join(" and ")}: expected only one source for the secret`);
  }
  if (source.inline !== undefined) {
    if (source.inline.trim() === "") throw new Error(`${source.what}: expected a non-empty token`);
    return { value: source.inline.trim(), from: "monitor.yaml" };
  }
  if (source.file !== undefined) {
    const path = isAbsolute(source.file) ? source.file : resolve(source.base, source.file);
    let text: string;
    let mode: number | null = null;
    try {
      text = await Deno.readTextFile(path);
      mode = (await Deno.stat(path)).mode;
    } catch (error) {
      throw new Error(
        `${source.what}_file: cannot read ${path}: ${errorMessage(error)}`,
        { cause: error },
      );
    }
    const value = text.trim();
    if (value === "") {
      throw new Error(`${source.what}_file: expected a token in ${path}, found an empty file`);
    }
    const secret: Secret = { value, from: `file ${path}` };
    if (mode !== null && (mode & 0o077) !== 0) {
      secret.warning = `${source.what}_file ${path} can be read by other users (mode ${
        (mode & 0o777).toString(8)
      }); chmod 600 it`;
    }
    return secret;
  }
  const name = source.env as string;
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
    throw new Error(
      `${source.what}_env: expected an environment variable name, found ${JSON.stringify(name)}`,
    );
  }
  let value: string | undefined;
  try {
    value = Deno.env.get(name);
  } catch (error) {
    throw new Error(
      `${source.what}_env: cannot read the environment variable ${name} (${
        errorMessage(error)
      }); the deno tasks allow ${DEFAULT_TOKEN_ENV}, otherwise grant --allow-env=${name}`,
      { cause: error },
    );
  }
  if (value === undefined || value.trim() === "") {
    throw new Error(`${source.what}_env: expected the token in $${name}, found it unset or empty`);
  }
  return { value: value.trim(), from: `environment variable ${name}` };
}
