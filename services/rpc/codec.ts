/**
 * A precompiled protobuf codec of the agent's side of `proto/monitoring.proto`:
 * encodes `AgentMessage`, decodes `BrokerMessage`. The agent uses it instead
 * of loading the .proto file with `@grpc/proto-loader` at start (protobufjs
 * and the parsed schema cost about 5.6 MiB of the agent's memory and most of
 * its start-up time spent in gRPC).
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
  BrokerMessage,
  Close,
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

/** A growable byte buffer with the protobuf primitives. */
class Writer {
  #buf = new Uint8Array(256);
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
    this.bytes(field, encoder.encode(value));
  }

  bytes(field: number, value: Uint8Array) {
    this.tag(field, BYTES);
    this.varint(value.length);
    this.#room(value.length);
    this.#buf.set(value, this.length);
    this.length += value.length;
  }

  /** A nested message, always written (an empty message still selects a oneof case). */
  message(field: number, write: (w: Writer) => void) {
    const inner = new Writer();
    write(inner);
    this.bytes(field, inner.finish());
  }

  finish(): Uint8Array {
    return this.#buf.subarray(0, this.length);
  }
}

/** Reads protobuf primitives from `bytes`; every failure names what it was reading. */
class Reader {
  #pos: number;
  #end: number;
  #view: DataView;

  constructor(readonly buf: Uint8Array, start = 0, end = buf.length, readonly what = "message") {
    this.#pos = start;
    this.#end = end;
    this.#view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  get done(): boolean {
    return this.#pos >= this.#end;
  }

  #fail(why: string): never {
    throw new Error(`${this.what}: ${why} at byte ${this.#pos}`);
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
    try {
      return decoder.decode(this.buf.subarray(start, end));
    } catch {
      this.#fail("string is not valid UTF-8");
    }
  }

  /** A nested message's reader. */
  nested(what: string): Reader {
    const [start, end] = this.span();
    return new Reader(this.buf, start, end, `${this.what}.${what}`);
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
  const w = new Writer();
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
