/**
 * Reading the transport security keys of a monitor.yaml section (`agent:`,
 * `broker:`) and their flags: the `tls:` mapping, the TLS files it or a flag
 * names, and where a secret comes from (`token`, `token_file`, `token_env`).
 * Errors name the key (or flag) and what was expected.
 *
 * @module
 */
import { isAbsolute, resolve } from "node:path";
import { errorMessage } from "../common/log.ts";
import type { SecretSource } from "../common/secrets.ts";
import { configPath } from "./monitor_config.ts";
import { type ServiceSettings, settingName } from "./service_settings.ts";

/**
 * `doc[key]` when it is a non-empty string, undefined when absent or null;
 * otherwise throws `<path>.<key>: expected a non-empty string, found …`.
 */
export function optionalString(
  doc: Record<string, unknown>,
  key: string,
  path: string,
): string | undefined {
  const value = doc[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string" || value === "") {
    throw new Error(`${path}.${key}: expected a non-empty string, found ${JSON.stringify(value)}`);
  }
  return value;
}

/**
 * The `tls:` mapping of `section` (`{}` when absent or null); otherwise
 * throws `<where>.tls: expected a mapping <keys>, found …`.
 * @param where the section's name, e.g. `broker`
 * @param keys the keys the mapping takes, for the message, e.g. `{cert, key, ca}`
 */
export function tlsMapping(
  section: Record<string, unknown>,
  where: string,
  keys: string,
): Record<string, unknown> {
  const raw = section.tls;
  if (raw !== undefined && raw !== null && (typeof raw !== "object" || Array.isArray(raw))) {
    throw new Error(`${where}.tls: expected a mapping ${keys}, found ${JSON.stringify(raw)}`);
  }
  return (raw ?? {}) as Record<string, unknown>;
}

/** A TLS file: its absolute path and the flag or key that named it (for messages). */
export type TlsFile = [file: string, setting: string];

/**
 * Returns a function that resolves TLS file `key` (`ca`, `cert`, `key`): the
 * flag `--tls-<key>` wins (relative to `cwd`), else `<where>.tls.<key>` of
 * `tls` (relative to `base`, monitor.yaml's folder); undefined when neither
 * names one.
 */
export function tlsFileResolver(
  tls: Record<string, unknown>,
  where: string,
  base: string,
  cwd: string,
): (flag: string | undefined, key: string) => TlsFile | undefined {
  return (flag, key) => {
    if (flag !== undefined) return [isAbsolute(flag) ? flag : resolve(cwd, flag), `--tls-${key}`];
    const value = optionalString(tls, key, `${where}.tls`);
    return value === undefined
      ? undefined
      : [isAbsolute(value) ? value : resolve(base, value), `${where}.tls.${key}`];
  };
}

/** Reads a TLS file (PEM text); throws `<setting>: cannot read <file>: <reason>`. */
export async function readTlsFile([file, setting]: TlsFile): Promise<string> {
  try {
    return await Deno.readTextFile(file);
  } catch (error) {
    throw new Error(`${setting}: cannot read ${file}: ${errorMessage(error)}`, { cause: error });
  }
}

/**
 * Where the secret `name` of a section comes from: the keys `<name>`
 * (inline), `<name>_file` and `<name>_env` of `doc`, each checked with
 * {@linkcode optionalString} (messages name `<path>.<key>`).
 */
export function secretSources(
  doc: Record<string, unknown>,
  name: string,
  path: string,
): Pick<SecretSource, "inline" | "file" | "env"> {
  return {
    inline: optionalString(doc, name, path),
    file: optionalString(doc, `${name}_file`, path),
    env: optionalString(doc, `${name}_env`, path),
  };
}

/**
 * Returns a function that reads TLS file `key` of `<section>.tls` as the
 * resolved configuration names it (relative to monitor.yaml's folder; a
 * flag's path is absolute), records its path in `files`, and names the flag
 * or key in a message when it cannot be read.
 */
export function configTlsReader(
  settings: ServiceSettings,
  section: string,
  files: string[],
): (key: string, value: string) => Promise<string> {
  return async (key, value) => {
    const file = configPath(settings.config, value);
    const text = await readTlsFile([file, settingName(settings, `${section}.tls.${key}`)]);
    files.push(file);
    return text;
  };
}
