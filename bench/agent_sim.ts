/**
 * Simulated agents for the benchmarks, run as a subprocess so that they do
 * not share the broker's event loop: many agents per process, each over its
 * own TCP connection with one gRPC bidirectional stream on it, saying Hello
 * like an agent, sending batches and answering commands at once.
 *
 * The load generator is cheap, as h2load or ghz are, so that the machine's
 * cores go to the system under test: each agent's connection is a minimal
 * HTTP/2 client written on `Deno.connect` (bench/h2_call.ts, frames in
 * services/rpc/h2_frames.ts; the request headers pre-encoded once) and messages
 * are encoded with the agent's precompiled codec (services/rpc/codec.ts).
 * The broker sees what real agents send: one connection and one `Connect`
 * stream per agent with the agent client's headers, a batch per agent per
 * send, a keep-alive PING every 10 s; nothing is batched across agents.
 * (Before, each simulated agent ran the agent's own node:http2 client,
 * services/rpc/client.ts: about 12 % of a core per 1,000 agents.)
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
 * - `{"op":"stats"}`: live streams, commands answered, agents moved on, connections retried.
 * - `{"op":"close"}`: closes every stream and exits.
 *
 * Sample timestamps are the send time (Unix seconds), so a consumer can
 * measure agent → consumer latency. Run by bench/*.ts only.
 *
 * @module
 */
import type { AgentMessage } from "../services/rpc/messages.ts";
import { CONNECT_PATH, decodeBrokerMessage, encodeAgentMessage } from "../services/rpc/codec.ts";
import { preferenceOrder } from "../services/agent/broker_choice.ts";
import { splitHostPort } from "../services/common/net.ts";
import { sleep, waitUntil } from "../services/common/async.ts";
import { type CallEnd, H2Call, requestHeaderBlock } from "./h2_call.ts";
import { lines, percentile, randomMetrics } from "./support.ts";

/** How long a connection may take to get the broker's HTTP/2 SETTINGS (ms). */
const CONNECT_TIMEOUT_MS = 30_000;
/** Bytes read from a connection at a time (acks are 17 bytes with their frame). */
const READ_BUFFER_BYTES = 8192;

/** One agent's connection: the call's protocol state and the socket under it. */
interface Link {
  call: H2Call;
  conn?: Deno.TcpConn;
  /** Bytes the call wrote while the socket was connecting or busy writing. */
  queue: Uint8Array[];
  writing: boolean;
  closed: boolean;
}

interface SimAgent {
  id: string;
  link: Link;
  seq: number;
  /** Unacknowledged batches: seq -> sample count and send time (performance.now()). */
  inflight: Map<number, { samples: number; at: number }>;
  welcomed: boolean;
  closed: boolean;
  /** Connection attempts repeated after a connection failure before the Welcome. */
  connectRetries: number;
  /** Called on each ack (throughput mode refills the window). */
  onAck?: (samples: number) => void;
}

/** Broker addresses, set by the connect requests. */
let addresses: string[] = [];
/** Agents refused by a broker before their Welcome that moved on to the next. */
let movedOn = 0;
/** Connections that failed before their Welcome and were tried again. */
let retried = 0;
/** Tries per agent after a connection failure before the Welcome. */
const CONNECT_RETRIES = 3;

const agents: SimAgent[] = [];
let acked = { batches: 0, samples: 0 };
let commandsAnswered = 0;
/** Send → ack times (ms) while a rate run records them. */
let ackTimes: number[] | undefined;
/** Request header blocks by broker address (encoded once). */
const headerBlocks = new Map<string, Uint8Array>();

function send(agent: SimAgent, message: AgentMessage): boolean {
  return agent.link.call.send(encodeAgentMessage(message));
}

function sendBatch(agent: SimAgent, samples: number): boolean {
  const seq = ++agent.seq;
  const now = Date.now() / 1000;
  const list = [];
  for (let i = 0; i < samples; i++) list.push({ timestamp: now, metrics: randomMetrics() });
  agent.inflight.set(seq, { samples, at: performance.now() });
  return send(agent, { batch: { seq, samples: list, alerts: [] } });
}

/** Writes the link's queued bytes in order, whole (a socket write may take only part). */
async function pump(link: Link): Promise<void> {
  if (link.writing || !link.conn) return;
  link.writing = true;
  try {
    while (link.queue.length > 0 && !link.closed) {
      let chunk = link.queue.length === 1 ? link.queue[0] : concat(link.queue);
      link.queue = [];
      while (chunk.length > 0) chunk = chunk.subarray(await link.conn.write(chunk));
    }
  } catch (error) {
    if (!link.closed) link.call.connectionLost(`write failed: ${(error as Error).message}`);
  } finally {
    link.writing = false;
  }
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

function closeLink(link: Link) {
  if (link.closed) return;
  link.closed = true;
  link.queue = [];
  try {
    link.conn?.close();
  } catch { /* already closed */ }
}

/** Reads until the connection ends, handing every chunk to the call (which copies what it keeps). */
async function readLoop(link: Link, conn: Deno.TcpConn): Promise<void> {
  const buffer = new Uint8Array(READ_BUFFER_BYTES);
  try {
    while (!link.closed) {
      const n = await conn.read(buffer);
      if (n === null) return link.call.connectionLost("the broker closed the connection");
      link.call.receive(buffer.subarray(0, n));
    }
  } catch (error) {
    if (!link.closed) link.call.connectionLost(`read failed: ${(error as Error).message}`);
  }
}

/** Opens a connection to `address` with one call on it (module doc). */
function openLink(
  address: string,
  onMessage: (bytes: Uint8Array) => void,
  onEnd: (end: CallEnd) => void,
): Link {
  let block = headerBlocks.get(address);
  if (!block) headerBlocks.set(address, block = requestHeaderBlock(address, CONNECT_PATH));
  const link: Link = {
    call: undefined as unknown as H2Call,
    queue: [],
    writing: false,
    closed: false,
  };
  link.call = new H2Call({
    headerBlock: block,
    write(bytes) {
      if (link.closed) return;
      link.queue.push(bytes);
      void pump(link);
    },
    onMessage,
    onEnd(end) {
      closeLink(link);
      onEnd(end);
    },
  });
  link.call.start(performance.now());
  const { host, port } = splitHostPort(address, "broker address");
  Deno.connect({ hostname: host, port }).then((conn) => {
    if (link.closed) {
      conn.close();
      return;
    }
    link.conn = conn;
    conn.setNoDelay(true);
    void pump(link);
    void readLoop(link, conn);
  }, (error: Error) => {
    link.call.connectionLost(`broker at ${address} not reachable: ${error.message}`);
  });
  return link;
}

function open(id: string): SimAgent {
  const agent: SimAgent = {
    id,
    link: undefined as unknown as Link,
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
  const onMessage = (bytes: Uint8Array) => {
    let m;
    try {
      m = decodeBrokerMessage(bytes);
    } catch (error) {
      agent.link.call.fail(
        `the broker sent a message that is not a monitoring.v1.BrokerMessage: ${
          (error as Error).message
        }`,
      );
      return;
    }
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
      send(agent, {
        result: {
          command_id: m.command.command_id,
          status: "ok",
          output_json: JSON.stringify({ pong: true, agent_id: id }),
          timestamp: Date.now() / 1000,
        },
      });
    }
  };
  const onEnd = (end: CallEnd) => {
    if (!agent.welcomed && attempt + 1 < order.length) {
      movedOn++;
      attach(agent, order, attempt + 1);
      return;
    }
    if (!agent.welcomed && end.retryable && agent.connectRetries < CONNECT_RETRIES) {
      // The connection failed before the Welcome (e.g. reset in a burst of connections):
      // try the order again after a jittered pause, as an agent reconnects with backoff.
      agent.connectRetries++;
      retried++;
      setTimeout(() => attach(agent, order, 0), 250 + Math.random() * 750);
      return;
    }
    agent.closed = true;
    console.error(
      `agent_sim: stream of ${id} to ${order[attempt]} ended: ${JSON.stringify(end.reason)}`,
    );
  };
  agent.link = openLink(order[attempt], onMessage, onEnd);
  send(agent, { hello: { agent_id: id, hostname: `${id}.bench`, version: "bench", token: "" } });
}

/** Connect timeouts and keep-alive pings of every connection, in one sweep a second. */
setInterval(() => {
  const now = performance.now();
  for (const agent of agents) {
    if (!agent.closed) agent.link.call.tick(now, CONNECT_TIMEOUT_MS);
  }
}, 1000);

async function connect(count: number, prefix: string): Promise<Record<string, unknown>> {
  const started = performance.now();
  const fresh: SimAgent[] = [];
  const first = agents.length;
  for (let i = 0; i < count; i++) {
    const agent = open(`${prefix}-${first + i}`);
    fresh.push(agent);
    agents.push(agent);
    // Opening thousands at once starves the event loop; let Welcomes in now and then.
    if (i % 200 === 199) await sleep(5);
  }
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
  // Agent i sends at offset (i / n) * period within every period, so the send times are in
  // agent order, round after round: the agents due are the run from `cursor` on, each sent
  // at most once per tick (a tick costs what it sends, not a pass over every agent).
  const n = running.length;
  const next = running.map((_, i) => started + (i / n) * periodMs);
  let cursor = 0;
  let behind = 0;
  while (performance.now() - started < ms) {
    const now = performance.now();
    for (let k = 0; k < n && next[cursor] <= now; k++) {
      if (now - next[cursor] > periodMs) behind++;
      sendBatch(running[cursor], 1);
      sent++;
      next[cursor] += periodMs;
      cursor = cursor + 1 === n ? 0 : cursor + 1;
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
        reply({ ok: "stats", live: live().length, commandsAnswered, movedOn, retried });
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
// Stdin closed (the runner is gone): the connections close with the process.
Deno.exit(0);
