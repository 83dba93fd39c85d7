/**
 * The benchmark helpers that decide what the table says: medians and
 * percentiles, merged permission flags, the printed table, the generated
 * collectd.conf, /proc readings through `cat`, and the runner's option
 * parsing (through the real `deno task bench` launcher).
 */
import assert from "node:assert/strict";
import { formatMarkdown, formatTable, median, percentile, procUsage } from "../bench/support.ts";
import { collectdConfig } from "../bench/footprint.ts";
import { mergePermissionFlags } from "../services/common/permissions.ts";

Deno.test("median of odd and even counts; NaN for none", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.ok(Number.isNaN(median([])));
});

Deno.test("percentiles by nearest rank", () => {
  const values = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(percentile(values, 50), 50);
  assert.equal(percentile(values, 95), 95);
  assert.equal(percentile(values, 99), 99);
  assert.equal(percentile(values, 100), 100);
  assert.equal(percentile([7], 99), 7);
});

Deno.test("permission flags of several builders are merged per flag (the permission module's merge, which bench uses)", () => {
  assert.deepEqual(
    mergePermissionFlags(
      ["--no-prompt", "--allow-read=/a,/b", "--allow-net=127.0.0.1:1"],
      ["--allow-read=/b,/c", "--no-prompt", "--allow-write=/c"],
    ),
    [
      "--no-prompt",
      "--allow-read=/a,/b,/c",
      "--allow-net=127.0.0.1:1",
      "--allow-write=/c",
    ],
  );
});

Deno.test("the table shows n/a for figures that could not be measured", () => {
  const rows = [
    { scenario: "1 x", measure: "rate", value: 1234.567, unit: "samples/s", note: "n" },
    { scenario: "1 x", measure: "ratio", value: 0.12345, unit: "×" },
    { scenario: "2 y", measure: "collectd", unit: "", note: "not installed" },
  ];
  const text = formatTable(rows).split("\n");
  assert.match(text[0], /^scenario\s+measure\s+value\s+unit\s+note$/);
  assert.match(text[2], /1235\s+samples\/s\s+n$/);
  assert.match(text[3], /0\.123\s+×$/);
  assert.match(text[4], /n\/a\s+not installed$/);
  assert.ok(formatMarkdown(rows).includes("| 2 y | collectd | n/a |  | not installed |"));
});

Deno.test("collectd.conf loads the four plugins at the interval, CSV in the directory", () => {
  const conf = collectdConfig("/tmp/x", 1);
  for (const plugin of ["cpu", "memory", "disk", "interface", "csv"]) {
    assert.match(conf, new RegExp(`^LoadPlugin ${plugin}$`, "m"));
  }
  assert.match(conf, /^Interval 1$/m);
  assert.match(conf, /^ {2}DataDir "\/tmp\/x\/csv"$/m);
});

Deno.test("CPU time and peak RSS of a live process from /proc", async () => {
  const usage = await procUsage(Deno.pid);
  assert.ok(usage.cpuSeconds > 0, `cpu seconds ${usage.cpuSeconds}`);
  assert.ok(usage.peakRssBytes >= usage.rssBytes && usage.rssBytes > 0);
  await assert.rejects(procUsage(2 ** 22 + 12345), /cannot read \/proc\/\d+\/stat/);
});

Deno.test("deno task bench refuses an unknown scenario, naming the known ones", async () => {
  const out = await new Deno.Command("deno", {
    args: ["task", "bench", "--only", "nonesuch"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 2);
  const stderr = new TextDecoder().decode(out.stderr);
  assert.match(
    stderr,
    /--only: unknown scenario nonesuch; expected one of throughput, latency, commands, config, footprint, plugins/,
  );
});
