/**
 * Test harness: several "hosts" on one machine, each a Linux network
 * namespace (`ip netns`) with its own address, joined by veth pairs to a
 * bridge in the root namespace (which gets an address too, so the test
 * process can reach every host). A host's link can be cut and restored.
 *
 * Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN). Everything is named with a
 * random suffix, so parallel runs do not collide, and removed by
 * {@linkcode Network.destroy} or, if the test process dies first, by an
 * `unload` handler. Not product code.
 *
 * @module
 */

/** One simulated host. */
export interface Host {
  /** Short name given by the test, e.g. `a`. */
  readonly name: string;
  /** Namespace name (`ip netns exec <netns> ...`). */
  readonly netns: string;
  /** The host's IPv4 address on the shared network. */
  readonly address: string;
  /** `ip netns exec <netns> <command> <args>` as the arguments of `ip`. */
  execArgs(command: string, ...args: string[]): string[];
}

/** The simulated network. */
export interface Network {
  readonly hosts: Map<string, Host>;
  /** Address of the root namespace (the test process) on the network. */
  readonly rootAddress: string;
  /** The host named `name` (throws naming the known hosts otherwise). */
  host(name: string): Host;
  /** Takes the host's link down: it can reach nobody and nobody can reach it. */
  cut(name: string): Promise<void>;
  /** Brings the host's link back up. */
  restore(name: string): Promise<void>;
  /** Kills every process left in the namespaces and removes namespaces, links and bridge. */
  destroy(): Promise<void>;
}

async function ip(...args: string[]): Promise<string> {
  const out = await new Deno.Command("ip", { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(
      `ip ${args.join(" ")} failed (exit ${out.code}): ${
        new TextDecoder().decode(out.stderr).trim()
      }`,
    );
  }
  return new TextDecoder().decode(out.stdout);
}

function ipSync(...args: string[]): string {
  const out = new Deno.Command("ip", { args, stdout: "piped", stderr: "piped" }).outputSync();
  return out.success ? new TextDecoder().decode(out.stdout) : "";
}

/** Fails with what is needed when the test cannot create namespaces. */
async function requireRoot(): Promise<void> {
  if (Deno.uid() !== 0) {
    throw new Error(
      "the multi-host test builds network namespaces with `ip netns` and must run as root",
    );
  }
  try {
    await ip("-V");
  } catch (error) {
    throw new Error(
      `the multi-host test needs the ip command (Debian: apt-get install -y iproute2): ${error}`,
      { cause: error },
    );
  }
}

/** A free 10.x.y.0/24 subnet (one not on any interface). */
async function freeSubnet(): Promise<string> {
  const used = await ip("-o", "-4", "addr", "show");
  for (let tries = 0; tries < 50; tries++) {
    const x = 200 + Math.floor(Math.random() * 50);
    const y = 1 + Math.floor(Math.random() * 250);
    const prefix = `10.${x}.${y}`;
    if (!used.includes(` ${prefix}.`)) return prefix;
  }
  throw new Error("no free 10.x.y.0/24 subnet found for the test network");
}

const live = new Set<() => void>();
let unloadHooked = false;

/**
 * Creates the hosts `names` (addresses `.1`, `.2`, ... in their order; the
 * root namespace is `.254`), each with loopback up.
 */
export async function createNetwork(names: string[]): Promise<Network> {
  await requireRoot();
  const id = crypto.randomUUID().slice(0, 6);
  const subnet = await freeSubnet();
  const bridge = `mbr${id}`;
  const hosts = new Map<string, Host>();
  const rootSides = new Map<string, string>();
  const namespaces: string[] = [];
  const removeSync = () => {
    for (const ns of namespaces) {
      for (const pid of ipSync("netns", "pids", ns).split(/\s+/).filter(Boolean)) {
        try {
          Deno.kill(Number(pid), "SIGKILL");
        } catch { /* gone */ }
      }
      ipSync("netns", "del", ns);
    }
    ipSync("link", "del", bridge);
  };
  live.add(removeSync);
  if (!unloadHooked) {
    unloadHooked = true;
    globalThis.addEventListener("unload", () => {
      for (const remove of live) remove();
    });
  }
  try {
    await ip("link", "add", bridge, "type", "bridge");
    await ip("addr", "add", `${subnet}.254/24`, "dev", bridge);
    await ip("link", "set", bridge, "up");
    for (const [i, name] of names.entries()) {
      const netns = `mon-${id}-${name}`;
      const rootSide = `mv${id}${i}`;
      const hostSide = `mh${id}${i}`;
      const address = `${subnet}.${i + 1}`;
      await ip("netns", "add", netns);
      namespaces.push(netns);
      await ip("link", "add", rootSide, "type", "veth", "peer", "name", hostSide);
      await ip("link", "set", hostSide, "netns", netns);
      await ip("link", "set", rootSide, "master", bridge);
      await ip("link", "set", rootSide, "up");
      await ip("-n", netns, "addr", "add", `${address}/24`, "dev", hostSide);
      await ip("-n", netns, "link", "set", hostSide, "up");
      await ip("-n", netns, "link", "set", "lo", "up");
      rootSides.set(name, rootSide);
      hosts.set(name, {
        name,
        netns,
        address,
        execArgs: (command, ...args) => ["netns", "exec", netns, command, ...args],
      });
    }
  } catch (error) {
    removeSync();
    live.delete(removeSync);
    throw error;
  }
  const host = (name: string) => {
    const found = hosts.get(name);
    if (!found) throw new Error(`no host ${name}; hosts: ${[...hosts.keys()].join(", ")}`);
    return found;
  };
  let destroyed = false;
  return {
    hosts,
    rootAddress: `${subnet}.254`,
    host,
    async cut(name) {
      host(name);
      await ip("link", "set", rootSides.get(name)!, "down");
    },
    async restore(name) {
      host(name);
      await ip("link", "set", rootSides.get(name)!, "up");
    },
    destroy() {
      if (destroyed) return Promise.resolve();
      destroyed = true;
      removeSync();
      live.delete(removeSync);
      return Promise.resolve();
    },
  };
}
