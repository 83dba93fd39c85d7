import assert from "node:assert/strict";
import os from "node:os";
import { METRIC_NAMES, type MetricName } from "../services/common/messages.ts";
import {
  cpuTimes,
  createCollector,
  memoryPercent,
  parseDf,
  parseDiskstats,
  parseMeminfo,
  parseNetDev,
  parseProcStatCpu,
  runCommand,
} from "../services/agent/metrics.ts";
import { parseReaderAnswer, ProcReader } from "../services/agent/proc_reader.ts";

const PERCENT = new Set(["cpu", "memory", "disk"]);

function assertInRange(metrics: Record<string, number>, names: readonly string[]) {
  assert.deepEqual(Object.keys(metrics).sort(), [...names].sort());
  for (const [name, value] of Object.entries(metrics)) {
    assert.ok(Number.isFinite(value), `${name} is finite: ${value}`);
    assert.ok(value >= 0, `${name} >= 0: ${value}`);
    if (PERCENT.has(name)) assert.ok(value <= 100, `${name} <= 100: ${value}`);
  }
}

Deno.test("metrics (native): every metric of this machine, in range, first sample from the baseline", async () => {
  const collector = createCollector("native");
  assert.equal(collector.source, "native");
  await collector.configure(METRIC_NAMES);
  const first = await collector.collect();
  assert.deepEqual(first.errors, {});
  assertInRange(first.metrics, METRIC_NAMES);
  // Writing a file moves no counter backwards; a second round is measured from the first.
  const second = await collector.collect();
  assert.deepEqual(second.errors, {});
  assertInRange(second.metrics, METRIC_NAMES);
  assert.ok(second.timestamp > first.timestamp);
  // The raw cumulative counters behind the rates come along, and never go backwards here.
  const rates = ["disk read", "disk write", "net in", "net out"];
  assert.deepEqual(Object.keys(first.counters).sort(), rates.sort());
  for (const name of rates) {
    assert.ok(first.counters[name] >= 0, `${name} counter ${first.counters[name]}`);
    assert.ok(second.counters[name] >= first.counters[name], `${name} counter grows`);
  }
  // memory as the system reports it
  const info = Deno.systemMemoryInfo();
  const expected = (info.total - info.available) / info.total * 100;
  assert.ok(
    Math.abs(second.metrics.memory - expected) < 5,
    `${second.metrics.memory} ~ ${expected}`,
  );
  await collector.close();
});

Deno.test("metrics (native): only the metrics asked for are read; a busy cpu shows", async () => {
  const collector = createCollector("native");
  await collector.configure(["cpu"]);
  const until = performance.now() + 400;
  while (performance.now() < until) { /* keep one core busy */ }
  const sample = await collector.collect();
  assertInRange(sample.metrics, ["cpu"]);
  // At least one of the cores was busy for the whole window.
  assert.ok(sample.metrics.cpu >= 100 / os.cpus().length * 0.5, `cpu ${sample.metrics.cpu}`);
  await collector.configure(["memory", "net in"]);
  assertInRange((await collector.collect()).metrics, ["memory", "net in"]);
  await collector.close();
});

Deno.test("metrics (native): one long-lived /proc reader asked only for the files needed, in one request per collection, restarted if it dies", async () => {
  const asked: string[] = [];
  class RecordingReader extends ProcReader {
    override read(files: readonly string[]) {
      asked.push(files.join(" "));
      return super.read(files);
    }
  }
  const reader = new RecordingReader();
  const started: string[] = [];
  const collector = createCollector("native", {
    procReader: reader,
    runCommand: (command, args) => {
      started.push([command, ...args].join(" "));
      return runCommand(command, args);
    },
  });
  try {
    const round = async (metrics: MetricName[]) => {
      await collector.configure(metrics);
      asked.length = 0;
      started.length = 0;
      const sample = await collector.collect();
      assert.deepEqual(sample.errors, {});
      assertInRange(sample.metrics, metrics);
      return [...asked];
    };
    assert.deepEqual(await round(["cpu"]), ["/proc/stat:1"], "cpu: the first line of /proc/stat");
    assert.deepEqual(await round(["memory"]), ["/proc/meminfo:3"], "memory: no baseline to take");
    assert.deepEqual(await round(["cpu", "memory"]), ["/proc/stat:1 /proc/meminfo:3"]);
    assert.deepEqual(await round(["disk"]), [], "disk is df's");
    assert.deepEqual(await round(["net in"]), ["/proc/net/dev"]);
    assert.deepEqual(await round(["disk write"]), ["/proc/diskstats"]);
    assert.deepEqual(await round(["disk read", "net out"]), ["/proc/diskstats /proc/net/dev"]);
    assert.deepEqual(await round([...METRIC_NAMES]), [
      "/proc/stat:1 /proc/meminfo:3 /proc/diskstats /proc/net/dev",
    ]);
    assert.deepEqual(started, ["df -kP /"], "df is the only process started per collection");
    // A configuration change reads the new baselines with one request too.
    await collector.configure(["memory"]);
    asked.length = 0;
    await collector.configure(["cpu", "disk read", "net in"]);
    assert.deepEqual(asked, ["/proc/stat:1 /proc/diskstats /proc/net/dev"]);
    assert.equal(reader.starts, 1, "one reader process for every collection so far");
    // Killed between collections: the next collection starts a new one and loses nothing.
    const pid = reader.pid!;
    Deno.kill(pid, "SIGKILL");
    const after = await collector.collect();
    assert.deepEqual(after.errors, {});
    assertInRange(after.metrics, ["cpu", "disk read", "net in"]);
    assert.equal(reader.starts, 2);
    assert.notEqual(reader.pid, pid);
  } finally {
    await collector.close();
    await reader.close();
  }
});

Deno.test("proc reader: each file as cat prints it, a missing file named, the same values as cat", async () => {
  const reader = new ProcReader();
  try {
    const [netDev, missing, loadavg] = await reader.read([
      "/proc/net/dev",
      "/proc/no-such-file",
      "/proc/loadavg",
    ]);
    assert.ok(typeof netDev === "string" && netDev.startsWith("Inter-|"), String(netDev));
    assert.ok(missing instanceof Error);
    assert.match(missing.message, /cannot read \/proc\/no-such-file/);
    assert.ok(
      typeof loadavg === "string" && loadavg.endsWith("\n") && loadavg.split("\n").length === 2,
    );
    // Byte for byte what cat prints (a file that does not change between the two reads).
    const [version] = await reader.read(["/proc/version"]);
    const cat = await new Deno.Command("cat", { args: ["/proc/version"], stdout: "piped" })
      .output();
    assert.equal(version, new TextDecoder().decode(cat.stdout));
    await assert.rejects(() => reader.read(["relative/path"]), /not a plain absolute path/);
    await assert.rejects(() => reader.read(["/proc/stat:0"]), /not a plain absolute path/);
    // `:N`: the first N lines only, and a missing file named without its `:N`.
    const [head, whole, gone] = await reader.read([
      "/proc/self/status:2",
      "/proc/self/status",
      "/proc/no-such-file:1",
    ]);
    assert.equal(head, (whole as string).split("\n").slice(0, 2).map((l) => `${l}\n`).join(""));
    assert.match(String(gone), /cannot read \/proc\/no-such-file$/);
    assert.equal(reader.starts, 1);
  } finally {
    await reader.close();
  }
  await assert.rejects(() => reader.read(["/proc/loadavg"]), /closed/);
});

Deno.test("proc reader: answer parsing", () => {
  const files = ["/proc/a", "/proc/b", "/proc/c"];
  const parsed = parseReaderAnswer("x 1\ny 2\n\x1eEOF\n\x1eERR\n\x1eEOF\n\x1eEND\n", files);
  assert.deepEqual(parsed.slice(0, 1), ["x 1\ny 2\n"]);
  assert.match(String(parsed[1]), /cannot read \/proc\/b/);
  assert.equal(parsed[2], "");
  assert.throws(
    () => parseReaderAnswer("\x1eEOF\n\x1eEND\n", files),
    /answered 1 file\(s\) for 3 asked/,
  );
  assert.match(
    String(parseReaderAnswer("\x1eERR\n\x1eEND\n", ["/proc/stat:1"])[0]),
    /cannot read \/proc\/stat$/,
  );
});

Deno.test("metrics: cpu and memory from /proc/stat and /proc/meminfo agree with os.cpus() and Deno.systemMemoryInfo()", async () => {
  assert.deepEqual(
    parseProcStatCpu("cpu  100 5 30 800 7 2 9 0 0 0\ncpu0 50 2 15 400 3 1 4 0 0 0\n"),
    { busy: 137, total: 937 },
  );
  assert.throws(() => parseProcStatCpu("intr 1 2 3\n"), /unexpected first line of \/proc\/stat/);
  assert.equal(
    parseMeminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 250 kB\n"),
    75,
  );
  assert.throws(() => parseMeminfo("MemTotal: 1000 kB\nMemFree: 100 kB\n"), /MemAvailable/);
  // The same figures as Deno's own readers on this machine.
  const reader = new ProcReader();
  try {
    const [stat, meminfo] = await reader.read(["/proc/stat:1", "/proc/meminfo:3"]);
    const info = Deno.systemMemoryInfo();
    const memory = parseMeminfo(meminfo as string);
    assert.ok(Math.abs(memory - memoryPercent(info)) < 2, `${memory} ~ ${memoryPercent(info)}`);
    const fromProc = parseProcStatCpu(stat as string);
    const fromOs = cpuTimes(os.cpus());
    // os.cpus() gives ms, /proc/stat clock ticks (USER_HZ 100): the same busy share.
    assert.ok(
      Math.abs(fromProc.busy / fromProc.total - fromOs.busy / fromOs.total) < 0.01,
      `${JSON.stringify(fromProc)} ~ ${JSON.stringify(fromOs)}`,
    );
  } finally {
    await reader.close();
  }
});

Deno.test("metrics (systeminformation): every metric of this machine, in range", async () => {
  const collector = createCollector("systeminformation");
  const names: MetricName[] = [...METRIC_NAMES];
  await collector.configure(names);
  const sample = await collector.collect();
  assert.deepEqual(sample.errors, {});
  assertInRange(sample.metrics, names);
  const native = createCollector("native");
  await native.configure(["memory", "disk"]);
  const n = await native.collect();
  assert.ok(
    Math.abs(n.metrics.memory - sample.metrics.memory) < 10,
    "both sources agree on memory",
  );
  assert.ok(Math.abs(n.metrics.disk - sample.metrics.disk) < 2, "both sources agree on disk");
  await collector.close();
  await native.close();
});

Deno.test("metrics: a missing permission is reported per metric, naming the flag", async () => {
  const dir = await Deno.makeTempDir({ prefix: "agent-metrics-" });
  const script = `${dir}/probe.ts`;
  await Deno.writeTextFile(
    script,
    `import { createCollector } from "${
      new URL("../services/agent/metrics.ts", import.meta.url).href
    }";
     const c = createCollector("native");
     await c.configure(["cpu", "memory", "disk", "disk read", "net in"]);
     console.log(JSON.stringify(await c.collect()));
     await c.close();`,
  );
  // No permission flags at all: every metric must fail with a message, none may crash.
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      "--no-config",
      `--import-map=${new URL("../deno.json", import.meta.url).pathname}`,
      script,
    ],
    stdout: "piped",
    stderr: "piped",
  });
  const output = await child.output();
  const text = new TextDecoder().decode(output.stdout);
  assert.ok(output.success, new TextDecoder().decode(output.stderr));
  const collected = JSON.parse(text);
  assert.deepEqual(collected.metrics, {});
  assert.match(collected.errors.cpu, /needs --allow-run=awk/);
  assert.match(collected.errors.disk, /needs --allow-run=df/);
  assert.match(collected.errors["net in"], /needs --allow-run=awk/);
  assert.match(collected.errors["disk read"], /needs --allow-run=awk/);
  assert.match(collected.errors.memory, /needs --allow-run=awk/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("metrics: parsers of /proc/diskstats, /proc/net/dev and df", () => {
  const diskstats = [
    "   7       0 loop0 10 0 80 0 0 0 0 0 0 0 0",
    " 254       0 vda 100 0 1000 0 50 0 2000 0 0 0 0",
    " 254       1 vda1 90 0 900 0 40 0 1800 0 0 0 0",
    " 259       0 nvme0n1 10 0 10 0 5 0 20 0 0 0 0",
    " 259       1 nvme0n1p1 10 0 10 0 5 0 20 0 0 0 0",
    " 253       0 dm-0 10 0 10 0 5 0 20 0 0 0 0",
  ].join("\n");
  assert.deepEqual(
    Object.fromEntries(parseDiskstats(diskstats)),
    { "vda#in": 512000, "vda#out": 1024000, "nvme0n1#in": 5120, "nvme0n1#out": 10240 },
  );
  const netdev = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 2922805   23108    0    0    0     0          0         0  2922805   23108    0    0    0     0       0          0
  eth0: 122235915    4250    0    0    0     0          0         0   229694    2963    0    0    0     0       0          0`;
  assert.deepEqual(Object.fromEntries(parseNetDev(netdev)), {
    "eth0#in": 122235915,
    "eth0#out": 229694,
  });
  const df = `Filesystem     1024-blocks     Used Available Capacity Mounted on
/dev/vda         264212084 22943608  83405316      22% /`;
  assert.ok(Math.abs(parseDf(df) - 21.57) < 0.01);
  assert.throws(() => parseDf("garbage"), /unexpected df output/);
});
