/**
 * A precompiled protobuf codec of `proto/monitoring.proto`: the agent's side
 * encodes `AgentMessage` and decodes `BrokerMessage`, the broker's side
 * (services/rpc/server.ts) decodes `AgentMessage` and encodes
 * `BrokerMessage`. The agent uses it instead of loading the .proto file with
 * `@grpc/proto-loader` at start (protobufjs and the parsed schema cost about
 * 5.6 MiB of the agent's memory and most of its start-up time spent in
 * gRPC); the broker because it runs per message (it was protobufjs's
 * decoder, its object conversion and the oneof clean-up per batch).
 *
 * The .proto file stays the one source of the protocol: `codec_test.ts`
 * checks this codec against protobufjs loading that file, message by
 * message, in both directions, so a change to the file that this codec does
 * not follow fails there.
 *
 * Decoded messages have the shapes of messages.ts as proto-loader gives them
 * (`keepCase`, `longs: Number`, `defaults: true`, the `oneof body` as one
 * optional field): fields left out on the wire get their defaults, unknown
 * fields are skipped.
 *
 * ```ts
 * const bytes = encodeAgentMessage({ batch: { seq: 1, samples: [], alerts: [] } });
 * console.log(bytes.length); // 2
 * ```
 *
 * @module
 */
import type {
  Ack,
  AgentMessage,
  Batch,
  BrokerMessage,
  Close,
  CommandResult,
  Hello,
  Welcome,
  WireAlert,
  WireCommand,
  WireSample,
} from "./messages.ts";

/** The gRPC method path of `monitoring.v1.Monitoring.Connect`. */
export const CONNECT_PATH = "/monitoring.v1.Monitoring/Connect";

// Wire types.
const VARINT = 0;
const FIXED64 = 1;
const BYTES = 2;
const FIXED32 = 5;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Bytes of the slabs that encoded messages are cut from. */
const SLAB_BYTES = 16 * 1024;
let slab = new Uint8Array(SLAB_BYTES);
let slabUsed = 0;

/**
 * `n` fresh bytes. Cut from a shared slab: allocating a small Uint8Array
 * costs about 1 µs in Deno (its own ArrayBuffer), about as much as encoding
 * an ack. A slab is never written again once cut, so views stay valid.
 */
function allocate(n: number): Uint8Array {
  if (n > SLAB_BYTES / 4) return new Uint8Array(n);
  if (slabUsed + n > SLAB_BYTES) {
    slab = new Uint8Array(SLAB_BYTES);
    slabUsed = 0;
  }
  const out = slab.subarray(slabUsed, slabUsed + n);
  slabUsed += n;
  return out;
}

/**
 * A growable byte buffer with the protobuf primitives. One is reused by
 * every encode (encoding is synchronous); {@linkcode Writer.finish} copies
 * the result out.
 */
class Writer {
  #buf = new Uint8Array(1024);
  #view = new DataView(this.#buf.buffer);
  length = 0;

  #room(n: number) {
    if (this.length + n <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.#buf.subarray(0, this.length));
    this.#buf = next;
    this.#view = new DataView(next.buffer);
  }

  /** An unsigned integer up to 2^53 as a varint. */
  varint(value: number) {
    this.#room(10);
    let v = value;
    while (v >= 0x80) {
      this.#buf[this.length++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.#buf[this.length++] = v;
  }

  tag(field: number, wire: number) {
    this.varint(field * 8 + wire);
  }

  double(field: number, value: number) {
    if (value === 0 && !Object.is(value, -0)) return;
    this.tag(field, FIXED64);
    this.#room(8);
    this.#view.setFloat64(this.length, value, true);
    this.length += 8;
  }

  uint(field: number, value: number) {
    if (!value) return;
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new RangeError(`field ${field}: expected an unsigned integer, found ${value}`);
    }
    this.tag(field, VARINT);
    this.varint(value);
  }

  string(field: number, value: string) {
    if (!value) return;
    this.tag(field, BYTES);
    if (value.length <= 32) {
      // Short ASCII (metric names, ids): written without a TextEncoder call.
      let ascii = true;
      for (let i = 0; i < value.length; i++) {
        if (value.charCodeAt(i) >= 0x80) {
          ascii = false;
          break;
        }
      }
      if (ascii) {
        this.varint(value.length);
        this.#room(value.length);
        for (let i = 0; i < value.length; i++) this.#buf[this.length++] = value.charCodeAt(i);
        return;
      }
    }
    const bytes = encoder.encode(value);
    this.varint(bytes.length);
    this.#room(bytes.length);
    this.#buf.set(bytes, this.length);
    this.length += bytes.length;
  }

  /**
   * A nested message, always written (an empty message still selects a oneof
   * case), in place: one byte is kept for its length, and the body moved
   * when the length needs more.
   */
  message(field: number, write: (w: Writer) => void) {
    this.tag(field, BYTES);
    this.#room(1);
    const at = this.length++;
    write(this);
    const length = this.length - at - 1;
    if (length < 0x80) {
      this.#buf[at] = length;
      return;
    }
    let size = 1;
    for (let v = length; v >= 0x80; v = Math.floor(v / 0x80)) size++;
    this.#room(size - 1);
    this.#buf.copyWithin(at + size, at + 1, this.length);
    this.length = at;
    this.varint(length);
    this.length = at + size + length;
  }

  /** Starts a new message (the writer is shared). */
  reset(): this {
    this.length = 0;
    return this;
  }

  /** A copy of what was written. */
  finish(): Uint8Array {
    const out = allocate(this.length);
    out.set(this.#buf.subarray(0, this.length));
    return out;
  }
}

/** The writer every encode uses (see {@linkcode Writer}). */
const shared = new Writer();

/** Reads protobuf primitives from `bytes`; every failure names what it was reading. */
class Reader {
  #pos: number;
  #end: number;
  #view: DataView;
  /** Where {@linkcode Reader.enter} went (names and indexes), for error messages only. */
  #path: Array<string | number> = [];

  constructor(
    readonly buf: Uint8Array,
    start = 0,
    end = buf.length,
    readonly what = "message",
    view?: DataView,
  ) {
    this.#pos = start;
    this.#end = end;
    this.#view = view ?? new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  get done(): boolean {
    return this.#pos >= this.#end;
  }

  #fail(why: string): never {
    let where = this.what;
    for (const part of this.#path) where += typeof part === "number" ? `[${part}]` : `.${part}`;
    throw new Error(`${where}: ${why} at byte ${this.#pos}`);
  }

  /**
   * Reads a length-delimited field's length and reads inside it until
   * {@linkcode Reader.exit} (same reader: no allocation per nested message).
   * `name` and `index` name it in errors. Returns the outer end for exit.
   */
  enter(name: string, index?: number): number {
    const length = this.varint();
    const outer = this.#end;
    if (this.#pos + length > outer) this.#fail("length-delimited field runs past the end");
    this.#end = this.#pos + length;
    this.#path.push(name);
    if (index !== undefined) this.#path.push(index);
    return outer;
  }

  /** Leaves what {@linkcode Reader.enter} entered (skipping what was not read). */
  exit(outer: number, indexed = false) {
    this.#pos = this.#end;
    this.#end = outer;
    this.#path.pop();
    if (indexed) this.#path.pop();
  }

  varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.#pos >= this.#end) this.#fail("truncated varint");
      const byte = this.buf[this.#pos++];
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 0x80;
    }
    this.#fail("varint longer than 10 bytes");
  }

  double(): number {
    if (this.#pos + 8 > this.#end) this.#fail("truncated double");
    const value = this.#view.getFloat64(this.#pos, true);
    this.#pos += 8;
    return value;
  }

  /** Start and end of a length-delimited field. */
  span(): [number, number] {
    const length = this.varint();
    const start = this.#pos;
    if (start + length > this.#end) this.#fail("length-delimited field runs past the end");
    this.#pos += length;
    return [start, start + length];
  }

  string(): string {
    const [start, end] = this.span();
    if (end - start <= 32) {
      // Short ASCII (metric names, ids): without a TextDecoder call.
      let ascii = "";
      let i = start;
      for (; i < end; i++) {
        const byte = this.buf[i];
        if (byte >= 0x80) break;
        ascii += String.fromCharCode(byte);
      }
      if (i === end) return ascii;
    }
    try {
      return decoder.decode(this.buf.subarray(start, end));
    } catch {
      this.#fail("string is not valid UTF-8");
    }
  }

  /** A nested message's reader. */
  nested(what: string): Reader {
    const [start, end] = this.span();
    return new Reader(this.buf, start, end, `${this.what}.${what}`, this.#view);
  }

  skip(wire: number) {
    switch (wire) {
      case VARINT:
        this.varint();
        return;
      case FIXED64:
        if (this.#pos + 8 > this.#end) this.#fail("truncated fixed64");
        this.#pos += 8;
        return;
      case BYTES:
        this.span();
        return;
      case FIXED32:
        if (this.#pos + 4 > this.#end) this.#fail("truncated fixed32");
        this.#pos += 4;
        return;
      default:
        this.#fail(`unsupported wire type ${wire}`);
    }
  }

  /** Skips the field of `tag` (its number and wire type), checking the number. */
  skipField(tag: number) {
    if (tag < 8) this.#fail("field number 0");
    this.skip(tag % 8);
  }

  /** Calls `field(number, wire)` for each field; `field` returns false to skip it. */
  fields(field: (number: number, wire: number) => boolean) {
    while (!this.done) {
      const key = this.varint();
      const number = Math.floor(key / 8);
      const wire = key % 8;
      if (number === 0) this.#fail("field number 0");
      if (!field(number, wire)) this.skip(wire);
    }
  }
}

function writeMap(w: Writer, field: number, map: Record<string, number> | undefined) {
  for (const [name, value] of Object.entries(map ?? {})) {
    w.message(field, (entry) => {
      entry.string(1, name);
      entry.double(2, value);
    });
  }
}

function writeSample(w: Writer, sample: WireSample) {
  w.double(1, sample.timestamp);
  writeMap(w, 2, sample.metrics);
  writeMap(w, 3, sample.counters);
  w.double(4, sample.interval ?? 0);
  w.double(5, sample.keepalive ?? 0);
}

function writeAlert(w: Writer, alert: WireAlert) {
  w.string(1, alert.metric);
  w.double(2, alert.value);
  w.double(3, alert.threshold);
  w.string(4, alert.state);
  w.double(5, alert.timestamp);
}

/** Encodes an `AgentMessage` (exactly one of `hello`, `batch`, `result`). */
export function encodeAgentMessage(message: AgentMessage): Uint8Array {
  const w = shared.reset();
  if (message.hello) {
    const hello = message.hello;
    w.message(1, (m) => {
      m.string(1, hello.agent_id);
      m.string(2, hello.hostname);
      m.string(3, hello.version);
      m.string(4, hello.token);
      m.string(5, hello.instance_id ?? "");
    });
  } else if (message.batch) {
    const batch = message.batch;
    w.message(2, (m) => {
      m.uint(1, batch.seq);
      for (const sample of batch.samples ?? []) m.message(2, (s) => writeSample(s, sample));
      for (const alert of batch.alerts ?? []) m.message(3, (a) => writeAlert(a, alert));
    });
  } else if (message.result) {
    const result = message.result;
    w.message(3, (m) => {
      m.string(1, result.command_id);
      m.string(2, result.status);
      m.string(3, result.output_json);
      m.double(4, result.timestamp);
    });
  } else {
    throw new TypeError("AgentMessage: expected one of hello, batch, result");
  }
  return w.finish();
}

/** Reads scalar fields into `out` by field number: `[name, kind]`. */
function readScalars<T>(
  r: Reader,
  out: T,
  spec: Record<number, [keyof T & string, "string" | "double" | "uint"]>,
): T {
  const target = out as Record<string, unknown>;
  r.fields((number, wire) => {
    const field = spec[number];
    if (!field) return false;
    const [name, kind] = field;
    const expected = kind === "string" ? BYTES : kind === "double" ? FIXED64 : VARINT;
    if (wire !== expected) return false;
    target[name] = kind === "string" ? r.string() : kind === "double" ? r.double() : r.varint();
    return true;
  });
  return out;
}

/** Decodes a `BrokerMessage`; throws naming the field when the bytes are not one. */
export function decodeBrokerMessage(bytes: Uint8Array): BrokerMessage {
  const r = new Reader(bytes, 0, bytes.length, "BrokerMessage");
  let out: BrokerMessage = {};
  r.fields((number, wire) => {
    if (wire !== BYTES || number < 1 || number > 4) return false;
    // A oneof: the last case on the wire wins, as in protobufjs.
    switch (number) {
      case 1:
        out = {
          welcome: readScalars<Welcome>(r.nested("welcome"), {
            broker_version: "",
            max_batch_samples: 0,
          }, { 1: ["broker_version", "string"], 2: ["max_batch_samples", "uint"] }),
        };
        break;
      case 2:
        out = { ack: readScalars<Ack>(r.nested("ack"), { seq: 0 }, { 1: ["seq", "uint"] }) };
        break;
      case 3:
        out = {
          command: readScalars<WireCommand>(r.nested("command"), {
            command_id: "",
            command_type: "",
            args_json: "",
            timestamp: 0,
          }, {
            1: ["command_id", "string"],
            2: ["command_type", "string"],
            3: ["args_json", "string"],
            4: ["timestamp", "double"],
          }),
        };
        break;
      case 4:
        out = {
          close: readScalars<Close>(r.nested("close"), { reason: "" }, {
            1: ["reason", "string"],
          }),
        };
        break;
    }
    return true;
  });
  return out;
}

// The broker's side: decodes `AgentMessage`, encodes `BrokerMessage` (services/rpc/server.ts).

/**
 * `BrokerMessage{ack{seq}}`, the message sent per batch, written directly:
 * tag 2, length, then (unless seq is 0, the default) tag 1 and the varint.
 */
function encodeAck(seq: number): Uint8Array {
  if (!Number.isSafeInteger(seq) || seq < 0) {
    throw new RangeError(`ack.seq: expected an unsigned integer, found ${seq}`);
  }
  if (seq === 0) {
    const empty = allocate(2);
    empty[0] = 2 * 8 + BYTES;
    empty[1] = 0;
    return empty;
  }
  let size = 1;
  for (let v = seq; v >= 0x80; v = Math.floor(v / 0x80)) size++;
  const out = allocate(3 + size);
  out[0] = 2 * 8 + BYTES;
  out[1] = 1 + size;
  out[2] = 1 * 8 + VARINT;
  let at = 3;
  let v = seq;
  while (v >= 0x80) {
    out[at++] = (v % 0x80) | 0x80;
    v = Math.floor(v / 0x80);
  }
  out[at] = v;
  return out;
}

/** Encodes a `BrokerMessage` (exactly one of `welcome`, `ack`, `command`, `close`). */
export function encodeBrokerMessage(message: BrokerMessage): Uint8Array {
  if (message.ack) return encodeAck(message.ack.seq);
  const w = shared.reset();
  if (message.welcome) {
    const welcome = message.welcome;
    w.message(1, (m) => {
      m.string(1, welcome.broker_version);
      m.uint(2, welcome.max_batch_samples);
    });
  } else if (message.command) {
    const command = message.command;
    w.message(3, (m) => {
      m.string(1, command.command_id);
      m.string(2, command.command_type);
      m.string(3, command.args_json);
      m.double(4, command.timestamp);
    });
  } else if (message.close) {
    const close = message.close;
    w.message(4, (m) => m.string(1, close.reason));
  } else {
    throw new TypeError("BrokerMessage: expected one of welcome, ack, command, close");
  }
  return w.finish();
}

/**
 * One `map<string, double>` entry (entered) into `into`: a missing key is
 * "", a missing value 0, as protobufjs.
 */
function readMapEntry(r: Reader, into: Record<string, number>) {
  let key = "";
  let value = 0;
  while (!r.done) {
    const tag = r.varint();
    if (tag === 1 * 8 + BYTES) key = r.string();
    else if (tag === 2 * 8 + FIXED64) value = r.double();
    else r.skipField(tag);
  }
  into[key] = value;
}

/** One Sample (entered): the message read per sample, without closures or nested readers. */
function readSample(r: Reader): WireSample {
  const metrics: Record<string, number> = {};
  const counters: Record<string, number> = {};
  const sample = { timestamp: 0, metrics, counters, interval: 0, keepalive: 0 };
  let entries = 0;
  while (!r.done) {
    const tag = r.varint();
    switch (tag) {
      case 1 * 8 + FIXED64:
        sample.timestamp = r.double();
        break;
      case 2 * 8 + BYTES:
      case 3 * 8 + BYTES: {
        const metric = tag === 2 * 8 + BYTES;
        const outer = r.enter(metric ? "metrics" : "counters", entries++);
        readMapEntry(r, metric ? metrics : counters);
        r.exit(outer, true);
        break;
      }
      case 4 * 8 + FIXED64:
        sample.interval = r.double();
        break;
      case 5 * 8 + FIXED64:
        sample.keepalive = r.double();
        break;
      default:
        r.skipField(tag);
    }
  }
  return sample;
}

function readAlert(r: Reader): WireAlert {
  return readScalars<WireAlert>(r, {
    metric: "",
    value: 0,
    threshold: 0,
    state: "",
    timestamp: 0,
  }, {
    1: ["metric", "string"],
    2: ["value", "double"],
    3: ["threshold", "double"],
    4: ["state", "string"],
    5: ["timestamp", "double"],
  });
}

/** A Batch (entered). */
function readBatch(r: Reader): Batch {
  const batch: Batch = { seq: 0, samples: [], alerts: [] };
  while (!r.done) {
    const tag = r.varint();
    if (tag === 1 * 8 + VARINT) batch.seq = r.varint();
    else if (tag === 2 * 8 + BYTES) {
      const outer = r.enter("samples", batch.samples.length);
      batch.samples.push(readSample(r));
      r.exit(outer, true);
    } else if (tag === 3 * 8 + BYTES) {
      batch.alerts.push(readAlert(r.nested(`alerts[${batch.alerts.length}]`)));
    } else r.skipField(tag);
  }
  return batch;
}

/**
 * Decodes an `AgentMessage` (the broker's side); throws naming the field
 * when the bytes are not one. Shapes as proto-loader gives them, see the
 * module's description; bytes with no case set decode to `{}`.
 */
export function decodeAgentMessage(bytes: Uint8Array): AgentMessage {
  const r = new Reader(bytes, 0, bytes.length, "AgentMessage");
  let out: AgentMessage = {};
  r.fields((number, wire) => {
    if (wire !== BYTES || number < 1 || number > 3) return false;
    // A oneof: the last case on the wire wins, as in protobufjs.
    switch (number) {
      case 1:
        out = {
          hello: readScalars<Hello>(r.nested("hello"), {
            agent_id: "",
            hostname: "",
            version: "",
            token: "",
            instance_id: "",
          }, {
            1: ["agent_id", "string"],
            2: ["hostname", "string"],
            3: ["version", "string"],
            4: ["token", "string"],
            5: ["instance_id", "string"],
          }),
        };
        break;
      case 2: {
        const outer = r.enter("batch");
        out = { batch: readBatch(r) };
        r.exit(outer);
        break;
      }
      case 3:
        out = {
          result: readScalars<CommandResult>(r.nested("result"), {
            command_id: "",
            status: "",
            output_json: "",
            timestamp: 0,
          }, {
            1: ["command_id", "string"],
            2: ["status", "string"],
            3: ["output_json", "string"],
            4: ["timestamp", "double"],
          }),
        };
        break;
    }
    return true;
  });
  return out;
}
