/**
 * End-to-end scenarios on the embedded backends (one SQLite file in the
 * state directory): broker and agents as subprocesses.
 */
import { join } from "node:path";
import { tempDir } from "./broker_support.ts";
import { registerScenarios } from "./e2e_scenarios.ts";

registerScenarios({
  name: "embedded",
  async backends() {
    const dir = await tempDir("monitor-e2e-");
    const path = join(dir, "monitor.db");
    return {
      name: "embedded",
      stateDir: dir,
      store: { backend: "embedded", endpoints: [], prefix: "/monitor", path },
      bus: { backend: "embedded", brokers: [], path },
      flags: ["--store-backend", "embedded", "--bus-backend", "embedded", "--state-dir", dir],
      cleanup: () => Deno.remove(dir, { recursive: true }),
    };
  },
});
