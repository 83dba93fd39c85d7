/**
 * URL plugins in a real agent-like subprocess that has only the narrow
 * permissions the supervisor grants an agent: `--unstable-worker-options`,
 * read/write on the module cache, net to the module hosts, plus whatever
 * the plugins declare. Failures are reported and the process lives on.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  agentPluginPermissions,
  pinPlugin,
  type PluginPin,
} from "../services/plugin_loader/mod.ts";
import type { Site } from "./fixtures/url_plugins/site.ts";
import { AGENT_CHILD, childSetup, runAgentChild } from "./fixtures/url_plugins/run_child.ts";
import { withSite } from "./fixtures/url_plugins/store.ts";

interface ChildOutcome {
  ok?: { timestamp: number; metrics: Record<string, number> };
  error?: string;
  message?: string;
  alive?: boolean;
}

async function runChild(
  site: Site,
  pin: PluginPin,
  extraRead: string[] = [],
): Promise<{ code: number; outcome: ChildOutcome; stderr: string }> {
  const setup = await childSetup(site, pin);
  assert.deepEqual(setup.needs.write, [setup.cacheDir]);
  assert.deepEqual(setup.needs.flags, ["--unstable-worker-options"]);
  const { code, stdout, stderr } = await runAgentChild(setup, { extraRead });
  let outcome: ChildOutcome = {};
  try {
    outcome = JSON.parse(stdout.split("\n").at(-1) ?? "");
  } catch {
    assert.fail(`the child printed no outcome (exit ${code}):\n${stdout}\n${stderr}`);
  }
  return { code, outcome, stderr };
}

Deno.test("an agent process with only the computed permissions fetches, verifies and runs a URL plugin", async () => {
  await withSite(async (site, store) => {
    const { pin } = await pinPlugin(store, "/monitor", "scale", {
      url: site.url("/scale@1.0.0/mod.ts"),
      config: { factor: 4 },
    });
    assert.deepEqual(agentPluginPermissions([pin], "/state").net, [site.host]);
    const { code, outcome } = await runChild(site, pin);
    assert.equal(code, 0);
    assert.deepEqual(outcome, {
      ok: { timestamp: 1, metrics: { cpu: 8, interval: 5 } },
      alive: true,
    });
  });
});

Deno.test("a sandbox violation in an agent process is reported and the process lives on", async () => {
  await withSite(async (site, store) => {
    const files = await site.tempDir();
    const secret = join(files, "secret.txt");
    await Deno.writeTextFile(secret, "secret");
    const { pin } = await pinPlugin(store, "/monitor", "snoop", {
      url: site.url("/snoop@1.0.0/mod.ts"),
      config: { action: "read", path: secret },
    });
    // The agent itself may read the file; the plugin was not granted it.
    const { code, outcome } = await runChild(site, pin, [secret]);
    assert.equal(code, 0);
    assert.equal(outcome.alive, true);
    assert.equal(outcome.error, "PluginPermissionError");
    assert.ok(
      outcome.message?.includes(
        `run() needed read access to "${secret}", which it was not granted`,
      ),
      String(outcome.message),
    );
  });
});

Deno.test("a plugin declaring more than the agent was granted does not start, with a clear error", async () => {
  await withSite(async (site, store) => {
    const { pin } = await pinPlugin(store, "/monitor", "snoop", {
      url: site.url("/snoop@1.0.0/mod.ts"),
      permissions: { env: ["PLUGIN_URL_TEST_TOKEN"] },
    });
    assert.deepEqual(agentPluginPermissions([pin], "/x").env, ["PLUGIN_URL_TEST_TOKEN"]);
    // This agent is started without the env permission the plugin declares.
    const dir = await site.tempDir();
    const pinFile = join(dir, "pin.json");
    await Deno.writeTextFile(pinFile, JSON.stringify(pin));
    const cacheDir = join(dir, "plugin-cache");
    const output = await new Deno.Command("deno", {
      args: [
        "run",
        "--unstable-worker-options",
        `--allow-read=${pinFile},${cacheDir}`,
        `--allow-write=${cacheDir}`,
        `--allow-net=${site.host}`,
        AGENT_CHILD,
        pinFile,
        cacheDir,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(60_000),
    }).output();
    assert.equal(output.code, 0);
    const outcome = JSON.parse(new TextDecoder().decode(output.stdout).trim()) as ChildOutcome;
    assert.equal(outcome.alive, true);
    assert.equal(outcome.error, "PluginPermissionError");
    assert.match(outcome.message ?? "", /plugin "snoop" cannot start: the agent process lacks/);
    assert.match(outcome.message ?? "", /env: PLUGIN_URL_TEST_TOKEN/);
  });
});
