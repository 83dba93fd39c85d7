import assert from "node:assert/strict";
import * as protoLoader from "@grpc/proto-loader";
import { Buffer } from "node:buffer";
import {
  CONNECT_PATH,
  decodeAgentMessage,
  decodeBrokerMessage,
  encodeAgentMessage,
  encodeBrokerMessage,
} from "./codec.ts";
import type { AgentMessage, BrokerMessage } from "./messages.ts";
import { PROTO_PATH, stripOneof } from "./proto.ts";

/** The method as protobufjs builds it from the .proto file (the one source of the protocol). */
function connectMethod() {
  const definition = protoLoader.loadSync(PROTO_PATH, {
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    arrays: true,
    oneofs: true,
  });
  const service = definition["monitoring.v1.Monitoring"] as Record<
    string,
    protoLoader.MethodDefinition<unknown, unknown>
  >;
  return service.Connect;
}

const agentMessages: AgentMessage[] = [
  {
    hello: {
      agent_id: "web-1",
      hostname: "web-1.example",
      version: "1.2.3",
      token: "s3cret",
      instance_id: "",
    },
  },
  { hello: { agent_id: "a", hostname: "", version: "", token: "", instance_id: "" } },
  {
    hello: {
      agent_id: "a",
      hostname: "h",
      version: "1",
      token: "",
      instance_id: "0b7e3f6c-6f3e-4c55-9d0e-2f1d4c7c9a11",
    },
  },
  {
    batch: {
      seq: 1_796_503_596_743, // above 2^32, as the agent's seq (start time in ms)
      samples: [
        {
          timestamp: 1796503596.743,
          metrics: { cpu: 12.5, memory: 40.1, "disk read": 0, "net in": 1e12, "ünï": -3.25 },
          counters: { "disk read": 123456789012, "net in": 0 },
          interval: 1,
          keepalive: 60,
        },
        { timestamp: 0, metrics: {}, counters: {}, interval: 0, keepalive: 0 },
      ],
      alerts: [
        { metric: "cpu", value: 95, threshold: 80, state: "firing", timestamp: 1796503597.5 },
      ],
    },
  },
  { batch: { seq: 0, samples: [], alerts: [] } },
  { batch: { seq: 2 ** 53 - 1, samples: [], alerts: [] } },
  {
    result: {
      command_id: "c-1",
      status: "ok",
      output_json: JSON.stringify({ text: "line\nwith ✓" }),
      timestamp: 1796503598.25,
    },
  },
];

const brokerMessages: BrokerMessage[] = [
  { welcome: { broker_version: "0.9.0", max_batch_samples: 1000 } },
  { welcome: { broker_version: "", max_batch_samples: 0 } },
  { ack: { seq: 1_796_503_596_743 } },
  { ack: { seq: 0 } },
  {
    command: {
      command_id: "test1",
      command_type: "status",
      args_json: '{"verbose":true}',
      timestamp: 1234567890.5,
    },
  },
  { close: { reason: "replaced by a newer connection" } },
  { close: { reason: "" } },
];

Deno.test("codec: the method path is the .proto file's", () => {
  assert.equal(connectMethod().path, CONNECT_PATH);
});

Deno.test("codec: every AgentMessage decodes with protobufjs to what was encoded", () => {
  const method = connectMethod();
  for (const message of agentMessages) {
    const bytes = encodeAgentMessage(message);
    const decoded = stripOneof<AgentMessage>(method.requestDeserialize(Buffer.from(bytes)));
    assert.deepEqual(decoded, message);
  }
  assert.throws(() => encodeAgentMessage({}), /expected one of hello, batch, result/);
  assert.throws(
    () => encodeAgentMessage({ batch: { seq: -1, samples: [], alerts: [] } }),
    /expected an unsigned integer/,
  );
});

Deno.test("codec: every BrokerMessage protobufjs encodes decodes to the same shape as proto-loader's", () => {
  const method = connectMethod();
  for (const message of brokerMessages) {
    const bytes = method.responseSerialize(message);
    const expected = stripOneof<BrokerMessage>(method.responseDeserialize(bytes));
    assert.deepEqual(decodeBrokerMessage(new Uint8Array(bytes)), expected);
    assert.deepEqual(expected, message);
  }
  // Unknown fields (a newer broker) are skipped, in the message and inside a case.
  const ack = method.responseSerialize({ ack: { seq: 7 } });
  const unknown = new Uint8Array([...ack, 0x48, 0x05, 0x55, 1, 2, 3, 4]); // field 9 varint, field 10 fixed32
  assert.deepEqual(decodeBrokerMessage(unknown), { ack: { seq: 7 } });
  // Bytes that are not a BrokerMessage fail naming where.
  assert.throws(
    () => decodeBrokerMessage(new Uint8Array([0x12, 0x05, 0x08])),
    /BrokerMessage: .*past the end/,
  );
  assert.throws(
    () => decodeBrokerMessage(new Uint8Array([0x22, 0x03, 0x0a, 0x01, 0xff])),
    /BrokerMessage.close: string is not valid UTF-8/,
  );
});

Deno.test("codec (broker side): every BrokerMessage encoded decodes with protobufjs to what was encoded", () => {
  const method = connectMethod();
  const acks = [1, 127, 128, 300, 2 ** 32, 2 ** 53 - 1].map((seq) => ({ ack: { seq } }));
  for (const message of [...brokerMessages, ...acks]) {
    const bytes = encodeBrokerMessage(message);
    const decoded = stripOneof<BrokerMessage>(method.responseDeserialize(Buffer.from(bytes)));
    assert.deepEqual(decoded, message);
  }
  // The ack (sent per batch, written by hand): byte for byte what protobufjs writes.
  for (const message of acks) {
    assert.deepEqual([...encodeBrokerMessage(message)], [...method.responseSerialize(message)]);
  }
  assert.throws(() => encodeBrokerMessage({}), /expected one of welcome, ack, command, close/);
  assert.throws(() => encodeBrokerMessage({ ack: { seq: -1 } }), /ack.seq: expected an unsigned/);
  assert.throws(() => encodeBrokerMessage({ ack: { seq: 1.5 } }), /ack.seq: expected an unsigned/);
});

Deno.test("codec (broker side): every AgentMessage protobufjs encodes decodes to the same shape as proto-loader's", () => {
  const method = connectMethod();
  const extra: AgentMessage[] = [
    // Defaults on the wire (nothing written) and a map entry without key or value.
    { batch: { seq: 5, samples: [{ timestamp: 0, metrics: { "": 0 } }], alerts: [] } },
    { result: { command_id: "", status: "", output_json: "", timestamp: 0 } },
  ];
  for (const message of [...agentMessages, ...extra]) {
    const bytes = method.requestSerialize(message);
    const expected = stripOneof<AgentMessage>(method.requestDeserialize(bytes));
    assert.deepEqual(decodeAgentMessage(new Uint8Array(bytes)), expected);
  }
  // Non-finite doubles arrive as they are (the broker's validation refuses them, naming the field).
  const nan = decodeAgentMessage(
    encodeAgentMessage({
      batch: { seq: 1, samples: [{ timestamp: 1, metrics: { cpu: NaN } }], alerts: [] },
    }),
  );
  assert.ok(Number.isNaN(nan.batch?.samples[0].metrics.cpu));
  // Unknown fields (a newer agent) are skipped, in the message and inside a case.
  const hello = method.requestSerialize({ hello: { agent_id: "a" } });
  const unknown = new Uint8Array([...hello, 0x48, 0x05, 0x55, 1, 2, 3, 4]);
  assert.deepEqual(decodeAgentMessage(unknown), expectedHello("a"));
  // No case set: an empty object (the broker refuses it: "expected exactly one of ...").
  assert.deepEqual(decodeAgentMessage(new Uint8Array()), {});
  // Bytes that are not an AgentMessage fail naming where.
  assert.throws(
    () => decodeAgentMessage(new Uint8Array([0x12, 0x05, 0x08])),
    /AgentMessage: .*past the end/,
  );
  assert.throws(
    () => decodeAgentMessage(new Uint8Array([0x0a, 0x03, 0x0a, 0x01, 0xff])),
    /AgentMessage.hello: string is not valid UTF-8/,
  );
  assert.throws(
    () => decodeAgentMessage(new Uint8Array([0x12, 0x04, 0x12, 0x02, 0x09, 0x00])),
    /AgentMessage.batch.samples\[0\]: truncated double/,
  );
});

function expectedHello(agentId: string): AgentMessage {
  return { hello: { agent_id: agentId, hostname: "", version: "", token: "", instance_id: "" } };
}

Deno.test("codec: long fields (multi-byte lengths, beyond a slab) and many encodes in a row stay exact", () => {
  const method = connectMethod();
  const long = "x".repeat(300) + "é".repeat(10_000);
  const result: AgentMessage = {
    result: { command_id: "c", status: "ok", output_json: long, timestamp: 1 },
  };
  const decoded = stripOneof<AgentMessage>(
    method.requestDeserialize(Buffer.from(encodeAgentMessage(result))),
  );
  assert.deepEqual(decoded, result);
  // Encodings cut from shared slabs are not overwritten by later ones.
  const acks = Array.from({ length: 5000 }, (_, i) => encodeBrokerMessage({ ack: { seq: i + 1 } }));
  acks.forEach((bytes, i) => assert.deepEqual(decodeBrokerMessage(bytes), { ack: { seq: i + 1 } }));
  const command = encodeBrokerMessage({
    command: { command_id: "k", command_type: "t", args_json: long, timestamp: 2 },
  });
  assert.equal(decodeBrokerMessage(command).command?.args_json, long);
});
