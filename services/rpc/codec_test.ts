import assert from "node:assert/strict";
import * as protoLoader from "@grpc/proto-loader";
import { Buffer } from "node:buffer";
import { CONNECT_PATH, decodeBrokerMessage, encodeAgentMessage } from "./codec.ts";
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
