/**
 * Scenario 7: `deno task validate` on large documents, in process
 * (checkMonitorConfig: parse, structure check, validation, locating every
 * issue): 20,000 unknown top-level keys, the same with 5,000 (the ratio shows
 * the growth: 4 for linear work, 16 for quadratic), and 2,000 nested mappings
 * (refused at the nesting limit).
 *
 * @module
 */
import { checkMonitorConfig } from "../services/config/monitor_yaml.ts";
import { type BenchContext, median, type Row, type Scenario } from "./support.ts";

/** A monitor.yaml with `n` unknown top-level keys. */
export function unknownKeysDocument(n: number): string {
  return Array.from({ length: n }, (_, i) => `unknown_key_${i}: ${i}\n`).join("");
}

/** A monitor.yaml with `depth` nested block mappings under agents.default.plugin_configs. */
export function nestedDocument(depth: number): string {
  const lines = ["agents:", "  default:", "    plugin_configs:"];
  for (let i = 0; i < depth; i++) lines.push(`${"  ".repeat(i + 3)}k${i}:`);
  lines.push(`${"  ".repeat(depth + 3)}x: 1`);
  return lines.join("\n") + "\n";
}

function timeCheck(text: string, runs: number): { ms: number; issues: number } {
  const times: number[] = [];
  let issues = 0;
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    issues = checkMonitorConfig(text, "bench.yaml").issues.length;
    times.push(performance.now() - started);
  }
  return { ms: median(times), issues };
}

async function run(ctx: BenchContext): Promise<Row[]> {
  const scenario = "7 validate";
  const runs = ctx.quick ? 1 : 3;
  ctx.progress("validate: 5,000 and 20,000 unknown keys, 2,000 nested mappings");
  timeCheck(unknownKeysDocument(1000), 1); // warm-up
  const small = timeCheck(unknownKeysDocument(5000), runs);
  const large = timeCheck(unknownKeysDocument(20000), runs);
  const nested = timeCheck(nestedDocument(2000), runs);
  await Promise.resolve();
  return [
    {
      scenario,
      measure: "20,000 unknown top-level keys, all reported with positions",
      value: large.ms,
      unit: "ms",
      note: `median of ${runs}; ${large.issues} issues`,
    },
    {
      scenario,
      measure: "growth from 5,000 to 20,000 unknown keys (4 = linear)",
      value: large.ms / small.ms,
      unit: "×",
      note: `${small.ms.toFixed(0)} ms → ${large.ms.toFixed(0)} ms`,
    },
    {
      scenario,
      measure: "2,000 nested mappings, refused at the nesting limit",
      value: nested.ms,
      unit: "ms",
      note: `median of ${runs}; ${nested.issues} issue`,
    },
  ];
}

/** The validate scenario. */
export const validateScenario: Scenario = { id: "validate", title: "7 validate", run };
