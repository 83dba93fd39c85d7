/**
 * Simulated agents for the benchmarks, run as a subprocess so that they do
 * not share the broker's event loop: many agents per process, each over its
 * own real gRPC stream (`services/rpc`), saying Hello like an agent, sending
 * batches and answering commands at once.
 *
 * Driven by JSON lines on stdin, answering one JSON line on stdout per
 * request:
 * - `{"op":"connect","address":"host:port","count":N,"prefix":"sim"}`: opens N streams to the
 *   broker at `address` (ids `<prefix>-<i>`), waits for every Welcome. With
 *   `"addresses":["a:1","b:2",...]` instead, each agent picks its broker as a real agent does
 *   (rendezvous order of its id, services/agent/broker_choice.ts) and, refused before its
 *   Welcome (e.g. RESOURCE_EXHAUSTED at a broker's stream ceiling), tries the next one.
 * - `{"op":"throughput","ms":D,"samples":S,"window":W}`: every agent keeps W batches of S samples
 *   unacknowledged for D ms; counts acknowledged batches and samples.
 * - `{"op":"rate","ms":D,"perSecond":R}`: every agent sends R batches of one sample per second,
 *   spread evenly; counts sent and acknowledged batches.
 * - `{"op":"close"}`: closes every stream and exits.
 *
 * Sample timestamps are the send time (Unix seconds), so a consumer can
 * measure agent → consumer latency. Run by bench/*.ts only.
 *
 * @module
 */
import { type AgentStream, openAgentStream, RpcStatus } from "../services/rpc/agent_mod.ts";
import { preferenceOrder } from "../services/agent/broker_choice.ts";
import { sleep, waitUntil } from "../services/common/async.ts";
import { lines, percentile, randomMetrics } from "./support.ts";

interface SimAgent {
  id: string;
  stream: AgentStream;
  seq: number;
  /** Unacknowledged batches: seq -> sample count and send time (performance.now()). */
  inflight: Map<number, { samples: number; at: number }>;
  welcomed: boolean;
  closed: boolean;
  /** Connection attempts repeated after an UNAVAILABLE failure before the Welcome. */
  connectRetries: number;
  /** Called on each ack (throughput mode refills the window). */
  onAck?: (samples: number) => void;
}

/** Broker addresses, set by the connect requests. */
let addresses: string[] = [];
/** Agents refused by a broker before their Welcome that moved on to the next. */
let movedOn = 0;
/** Connections that failed UNAVAILABLE before their Welcome and were tried again. */
let retried = 0;
/** Tries per agent after an UNAVAILABLE failure before the Welcome. */
const CONNECT_RETRIES = 3;

const agents: SimAgent[] = [];
let acked = { batches: 0, samples: 0 };
let commandsAnswered = 0;
/** Send → ack times (ms) while a rate run records them. */
let ackTimes: number[] | undefined;

function sendBatch(agent: SimAgent, samples: number): boolean {
  const seq = ++agent.seq;
  const now = Date.now() / 1000;
  const list = [];
  for (let i = 0; i < samples; i++) list.push({ timestamp: now, metrics: randomMetrics() });
  agent.inflight.set(seq, { samples, at: performance.now() });
  return agent.stream.send({ batch: { seq, samples: list, alerts: [] } });
}

function open(id: string): SimAgent {
  const agent: SimAgent = {
    id,
    stream: undefined as unknown as AgentStream,
    seq: 0,
    inflight: new Map(),
    welcomed: false,
    closed: false,
    connectRetries: 0,
  };
  attach(agent, preferenceOrder(id, addresses), 0);
  return agent;
}

/** Opens the agent's stream to the `attempt`-th broker of its order. */
function attach(agent: SimAgent, order: string[], attempt: number) {
  const { id } = agent;
  const stream = openAgentStream({ address: order[attempt], connectTimeoutMs: 30_000 });
  agent.stream = stream;
  stream.onMessage((m) => {
    if (m.welcome) agent.welcomed = true;
    else if (m.ack) {
      const sent = agent.inflight.get(m.ack.seq);
      if (sent === undefined) return;
      agent.inflight.delete(m.ack.seq);
      acked.batches++;
      acked.samples += sent.samples;
      if (ackTimes) ackTimes.push(performance.now() - sent.at);
      agent.onAck?.(sent.samples);
    } else if (m.command) {
      commandsAnswered++;
      stream.send({
        result: {
          command_id: m.command.command_id,
          status: "ok",
          output_json: JSON.stringify({ pong: true, agent_id: id }),
          timestamp: Date.now() / 1000,
        },
      });
    }
  });
  stream.onClose((error) => {
    if (!agent.welcomed && attempt + 1 < order.length) {
      movedOn++;
      attach(agent, order, attempt + 1);
      return;
    }
    if (
      !agent.welcomed && error?.code === RpcStatus.UNAVAILABLE &&
      agent.connectRetries < CONNECT_RETRIES
    ) {
      // The connection failed before the Welcome (e.g. reset in a burst of connections):
      // try the order again after a jittered pause, as an agent reconnects with backoff.
      agent.connectRetries++;
      retried++;
      setTimeout(() => attach(agent, order, 0), 250 + Math.random() * 750);
      return;
    }
    agent.closed = true;
    if (error) console.error(`agent_sim: stream of ${id} ended: ${error.message}`);
  });
  stream.send({ hello: { agent_id: id, hostname: `${id}.bench`, version: "bench", token: "" } });
}

async function connect(count: number, prefix: string): Promise<Record<string, unknown>> {
  const started = performance.now();
  const fresh: SimAgent[] = [];
  for (let i = 0; i < count; i++) {
    fresh.push(open(`${prefix}-${agents.length + i}`));
    // Opening thousands at once starves the event loop; let Welcomes in now and then.
    if (i % 200 === 199) await sleep(5);
  }
  agents.push(...fresh);
  await waitUntil(
    () => fresh.every((a) => a.welcomed || a.closed),
    60_000 + count * 10,
    `Welcome on ${count} streams`,
  );
  const failed = fresh.filter((a) => a.closed).length;
  return { agents: agents.length, failed, movedOn, retried, ms: performance.now() - started };
}

function live(): SimAgent[] {
  return agents.filter((a) => !a.closed);
}

async function drain(ms: number): Promise<boolean> {
  try {
    await waitUntil(() => live().every((a) => a.inflight.size === 0), ms, "outstanding acks", {
      intervalMs: 10,
    });
    return true;
  } catch {
    return false;
  }
}

async function throughput(ms: number, samples: number, window: number) {
  const running = live();
  acked = { batches: 0, samples: 0 };
  let stop = false;
  for (const agent of running) {
    agent.onAck = () => {
      if (!stop) sendBatch(agent, samples);
    };
  }
  const started = performance.now();
  for (const agent of running) for (let i = 0; i < window; i++) sendBatch(agent, samples);
  await sleep(ms);
  stop = true;
  const elapsed = performance.now() - started;
  const result = { batches: acked.batches, samples: acked.samples, ms: elapsed };
  for (const agent of running) agent.onAck = undefined;
  const drained = await drain(30_000);
  return { ...result, drained };
}

async function rate(ms: number, perSecond: number) {
  const running = live();
  acked = { batches: 0, samples: 0 };
  ackTimes = [];
  let sent = 0;
  const periodMs = 1000 / perSecond;
  const tickMs = 10;
  const started = performance.now();
  // Agent i sends at offset (i / n) * period within every period.
  const next = running.map((_, i) => started + (i / running.length) * periodMs);
  let behind = 0;
  while (performance.now() - started < ms) {
    const now = performance.now();
    for (let i = 0; i < running.length; i++) {
      if (next[i] <= now) {
        if (now - next[i] > periodMs) behind++;
        sendBatch(running[i], 1);
        sent++;
        next[i] += periodMs;
      }
    }
    await sleep(tickMs);
  }
  const elapsed = performance.now() - started;
  const drained = await drain(30_000);
  const times = ackTimes;
  ackTimes = undefined;
  return {
    sent,
    acked: acked.batches,
    behind,
    ms: elapsed,
    drained,
    ackP50: percentile(times, 50),
    ackP99: percentile(times, 99),
  };
}

function reply(value: Record<string, unknown>) {
  console.log(JSON.stringify(value));
}

for await (const line of lines(Deno.stdin.readable)) {
  if (!line.trim()) continue;
  const request = JSON.parse(line) as Record<string, unknown>;
  try {
    switch (request.op) {
      case "connect":
        if (Array.isArray(request.addresses) && request.addresses.length > 0) {
          addresses = request.addresses.map(String);
        } else if (typeof request.address === "string" && request.address) {
          addresses = [request.address];
        } else {
          throw new Error(
            "connect: expected the broker address (host:port) in `address`, or a list in `addresses`",
          );
        }
        reply({
          ok: "connect",
          ...(await connect(Number(request.count), String(request.prefix ?? "sim"))),
        });
        break;
      case "throughput":
        reply({
          ok: "throughput",
          ...(await throughput(
            Number(request.ms),
            Number(request.samples ?? 10),
            Number(request.window ?? 1),
          )),
        });
        break;
      case "rate":
        reply({
          ok: "rate",
          ...(await rate(Number(request.ms), Number(request.perSecond ?? 1))),
        });
        break;
      case "stats":
        reply({ ok: "stats", live: live().length, commandsAnswered });
        break;
      case "close":
        // Exits without cancelling stream by stream: the connection closes with the process.
        // (Cancelling a few hundred streams at once crashed the broker in the runner's
        // process with a segfault in Deno's node:http2.)
        reply({ ok: "close" });
        await sleep(20);
        Deno.exit(0);
        break;
      default:
        reply({ error: `agent_sim: unknown op ${JSON.stringify(request.op)}` });
    }
  } catch (error) {
    reply({ error: `agent_sim: ${request.op} failed: ${String(error)}` });
  }
}
