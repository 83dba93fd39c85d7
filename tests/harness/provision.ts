/**
 * Test harness: makes sure the real components the tests need are installed:
 * `etcd` and `etcdctl` (Debian `etcd-server`, `etcd-client`), `librdkafka.so.1`
 * (Debian `librdkafka1`, for the Kafka mock cluster), `kcat`, `chromium` (the
 * dashboard's browser tests), `prometheus` and `promtool` (Debian
 * `prometheus`, the exposition tests) and `collectd` (Debian `collectd-core`,
 * the footprint peer of the bench).
 *
 * Run as a script (first step of `deno task test`): when something is
 * missing and this is root on a system with `apt-get`, it runs `apt-get
 * update` and `apt-get install -y` of {@linkcode DEBIAN_PACKAGES};
 * otherwise it exits with status 1 printing the exact install command.
 * Needs `--allow-run --allow-read --allow-env`.
 *
 * `deno task bench` runs it first too, as `provision.ts --for bench`: only
 * what the benchmarks' comparisons need ({@linkcode BENCH_COMPONENTS}: etcd,
 * librdkafka, collectd), so that a newcomer's bench does not silently measure
 * the agent without collectd beside it.
 *
 * Harness modules call {@linkcode requireComponents} to fail with the same
 * message when they are used without the components.
 *
 * @module
 */

/** Debian packages providing every component. */
export const DEBIAN_PACKAGES: readonly string[] = Object.freeze([
  "etcd-server",
  "etcd-client",
  "librdkafka1",
  "kcat",
  "chromium",
  "prometheus",
  "collectd-core",
]);

/** The exact command that installs `packages` on Debian (as root). */
export function installCommand(packages: readonly string[]): string {
  return `apt-get update && apt-get install -y ${packages.join(" ")}`;
}

/** The exact command that installs every component on Debian (as root). */
export const INSTALL_COMMAND = installCommand(DEBIAN_PACKAGES);

/** A component the tests need. */
export type ComponentName =
  | "etcd"
  | "etcdctl"
  | "kcat"
  | "librdkafka.so.1"
  | "chromium"
  | "prometheus"
  | "promtool"
  | "collectd";

/** One checked component. */
export interface ComponentStatus {
  /** The component. */
  name: ComponentName;
  /** Debian package that provides it. */
  debianPackage: string;
  /** Where it was found, when it was. */
  path?: string;
}

const COMPONENTS: readonly { name: ComponentName; debianPackage: string; kind: "bin" | "lib" }[] = [
  { name: "etcd", debianPackage: "etcd-server", kind: "bin" },
  { name: "etcdctl", debianPackage: "etcd-client", kind: "bin" },
  { name: "kcat", debianPackage: "kcat", kind: "bin" },
  { name: "librdkafka.so.1", debianPackage: "librdkafka1", kind: "lib" },
  { name: "chromium", debianPackage: "chromium", kind: "bin" },
  { name: "prometheus", debianPackage: "prometheus", kind: "bin" },
  { name: "promtool", debianPackage: "prometheus", kind: "bin" },
  { name: "collectd", debianPackage: "collectd-core", kind: "bin" },
];

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
}

function isFile(path: string, executable: boolean): boolean {
  try {
    const info = Deno.statSync(path);
    if (!info.isFile) return false;
    return !executable || info.mode === null || (info.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

function listDir(dir: string): string[] {
  try {
    return [...Deno.readDirSync(dir)].map((e) => e.name);
  } catch {
    return [];
  }
}

function readText(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return "";
  }
}

/** Finds an executable on PATH (plus the usual system directories). */
export function findExecutable(name: string): string | undefined {
  const dirs = (env("PATH") ?? "").split(":").filter(Boolean);
  for (const d of ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"]) {
    if (!dirs.includes(d)) dirs.push(d);
  }
  for (const dir of dirs) {
    const path = `${dir}/${name}`;
    if (isFile(path, true)) return path;
  }
  return undefined;
}

/** Directories the dynamic linker searches (LD_LIBRARY_PATH, ld.so.conf, the usual ones). */
function libraryDirs(): string[] {
  const dirs = (env("LD_LIBRARY_PATH") ?? "").split(":").filter(Boolean);
  const confs = [readText("/etc/ld.so.conf")];
  for (const name of listDir("/etc/ld.so.conf.d")) {
    if (name.endsWith(".conf")) confs.push(readText(`/etc/ld.so.conf.d/${name}`));
  }
  for (const text of confs) {
    for (const line of text.split("\n")) {
      const trimmed = line.trim();
      if (trimmed.startsWith("/")) dirs.push(trimmed);
    }
  }
  for (const base of ["/lib", "/usr/lib", "/usr/local/lib", "/lib64", "/usr/lib64"]) {
    dirs.push(base);
    for (const name of listDir(base)) {
      if (/-linux-gnu/.test(name)) dirs.push(`${base}/${name}`);
    }
  }
  return [...new Set(dirs)];
}

/** Finds a shared library the way the dynamic linker would (approximately). */
export function findLibrary(name: string): string | undefined {
  for (const dir of libraryDirs()) {
    const path = `${dir}/${name}`;
    try {
      // Symlinks count (librdkafka.so.1 usually is one).
      if (Deno.statSync(path).isFile) return path;
    } catch { /* not here */ }
  }
  return undefined;
}

/** Checks every component; each status has `path` when it was found. */
export function checkComponents(): ComponentStatus[] {
  return COMPONENTS.map(({ name, debianPackage, kind }) => {
    const path = kind === "bin" ? findExecutable(name) : findLibrary(name);
    return path === undefined ? { name, debianPackage } : { name, debianPackage, path };
  });
}

/** What the benchmarks need: etcd (scenarios 4, 5), librdkafka (the Kafka mock), collectd (5). */
export const BENCH_COMPONENTS: readonly ComponentName[] = Object.freeze([
  "etcd",
  "etcdctl",
  "librdkafka.so.1",
  "collectd",
]);

/** The Debian packages of `names`, in {@linkcode DEBIAN_PACKAGES} order. */
export function packagesOf(names: readonly ComponentName[]): string[] {
  const wanted = new Set(
    COMPONENTS.filter((c) => names.includes(c.name)).map((c) => c.debianPackage),
  );
  return DEBIAN_PACKAGES.filter((p) => wanted.has(p));
}

/** The message for missing components, with the exact install command. */
export function missingMessage(
  missing: readonly ComponentStatus[],
  who = "The tests",
  command = INSTALL_COMMAND,
): string {
  const list = missing.map((c) => `${c.name} (Debian package ${c.debianPackage})`).join(", ");
  return `${who} need real components that are not installed: ${list}. ` +
    `Install them as root with: ${command}`;
}

/**
 * Throws an Error with the install command unless every component in
 * `names` (default: all) is installed. Returns where each one was found.
 */
export function requireComponents(
  names: readonly ComponentName[] = COMPONENTS.map((c) => c.name),
): Record<string, string> {
  const statuses = checkComponents().filter((c) => names.includes(c.name));
  const missing = statuses.filter((c) => c.path === undefined);
  if (missing.length > 0) throw new Error(missingMessage(missing));
  return Object.fromEntries(statuses.map((c) => [c.name, c.path!]));
}

function isRoot(): boolean {
  const status = readText("/proc/self/status");
  const match = /^Uid:\s+(\d+)\s+(\d+)/m.exec(status);
  if (match) return match[2] === "0";
  try {
    const out = new Deno.Command("id", { args: ["-u"], stdout: "piped", stderr: "null" })
      .outputSync();
    return new TextDecoder().decode(out.stdout).trim() === "0";
  } catch {
    return false;
  }
}

async function run(command: string, args: string[]): Promise<boolean> {
  console.error(`provision: ${command} ${args.join(" ")}`);
  const child = new Deno.Command(command, {
    args,
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
    env: { DEBIAN_FRONTEND: "noninteractive" },
  }).spawn();
  const status = await child.status;
  if (!status.success) {
    console.error(`provision: ${command} ${args[0]} failed (exit ${status.code})`);
  }
  return status.success;
}

/** Seams of {@linkcode provision}; each defaults to the real system. */
export interface ProvisionOptions {
  /** Checks the components. Default {@linkcode checkComponents}. */
  check?: () => ComponentStatus[];
  /** Where apt-get is, or undefined when it is not installed. Default: looked up on PATH. */
  findAptGet?: () => string | undefined;
  /** Whether this process runs as root. Default: from /proc/self/status or `id -u`. */
  isRoot?: () => boolean;
  /** Runs a command, resolving true when it succeeded. Default: spawns it with inherited output. */
  run?: (command: string, args: string[]) => Promise<boolean>;
  /** Prints a line for the user. Default `console.error`. */
  log?: (line: string) => void;
  /** The components to provide (default: every one) and who needs them, for messages. */
  components?: readonly ComponentName[];
  /** Who needs them, for messages (default "The tests"). */
  who?: string;
}

/**
 * Installs missing components when possible. Returns the process exit
 * status: 0 when everything is installed, 1 otherwise (after printing why
 * and the exact install command).
 */
export async function provision(options: ProvisionOptions = {}): Promise<number> {
  const names = options.components ?? COMPONENTS.map((c) => c.name);
  const packages = packagesOf(names);
  const command = installCommand(packages);
  const who = options.who ?? "The tests";
  const check = () => (options.check ?? checkComponents)().filter((c) => names.includes(c.name));
  const log = options.log ?? ((line: string) => console.error(line));
  const runCommand = options.run ?? run;
  let missing = check().filter((c) => c.path === undefined);
  if (missing.length === 0) return 0;
  const aptGet = (options.findAptGet ?? (() => findExecutable("apt-get")))();
  if (aptGet === undefined || !(options.isRoot ?? isRoot)()) {
    const why = aptGet === undefined
      ? "apt-get was not found (not a Debian system): install them with your package manager; on Debian:"
      : "not running as root: run as root";
    log(`provision: ${missingMessage(missing, who, command)}`);
    log(`provision: ${why} ${command}`);
    return 1;
  }
  log(`provision: ${missingMessage(missing, who, command)}; installing them now.`);
  const ok = await runCommand(aptGet, ["update"]) &&
    await runCommand(aptGet, ["install", "-y", ...packages]);
  missing = check().filter((c) => c.path === undefined);
  if (!ok || missing.length > 0) {
    if (missing.length > 0) log(`provision: ${missingMessage(missing, who, command)}`);
    log(`provision: installation failed; run as root: ${command}`);
    return 1;
  }
  log("provision: every component is installed.");
  return 0;
}

if (import.meta.main) {
  // `--for bench`: only what `deno task bench` needs.
  const bench = Deno.args.join(" ") === "--for bench";
  if (Deno.args.length > 0 && !bench) {
    console.error(
      `provision: unknown arguments ${Deno.args.join(" ")}; expected none or --for bench`,
    );
    Deno.exit(2);
  }
  Deno.exit(
    await provision(bench ? { components: BENCH_COMPONENTS, who: "The benchmarks" } : {}),
  );
}
