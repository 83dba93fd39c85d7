/**
 * Test harness: a Kafka mock cluster from librdkafka (Debian `librdkafka1`),
 * started in this process through Deno FFI. It speaks the real Kafka protocol
 * on loopback TCP ports, so kafkajs and kcat talk to it like to a real
 * cluster, and it offers fault injection (brokers taken down and brought back).
 *
 * Needs `--allow-ffi`; only tests use it, never product code.
 *
 * @module
 */

/** Options of {@linkcode startKafkaMock}. */
export interface KafkaMockOptions {
  /** Number of brokers (ids 1..brokers). Default 3. */
  brokers?: number;
  /**
   * librdkafka log level of the mock's own handle (syslog levels, 0-7).
   * Default 3 (errors only), which keeps test output clean.
   */
  logLevel?: number;
}

/** A running mock cluster. */
export interface KafkaMock {
  /** Bootstrap addresses, `host:port`, one per broker. */
  readonly bootstrap: string[];
  /** Number of brokers; their ids are 1..brokerCount. */
  readonly brokerCount: number;
  /** Disconnects broker `id` (1-based) and refuses new connections until {@linkcode KafkaMock.brokerUp}. */
  brokerDown(id: number): void;
  /** Lets broker `id` accept connections again. */
  brokerUp(id: number): void;
  /**
   * Creates a topic directly in the mock (the mock refuses CreateTopics from
   * clients, but auto-creates topics with 4 partitions on first use).
   */
  createTopic(name: string, partitions: number, replicationFactor?: number): void;
  /**
   * Makes broker `brokerId` the leader of `topic`'s partition `partition`
   * (clients learn it from a NOT_LEADER error and refresh their metadata).
   */
  setLeader(topic: string, partition: number, brokerId: number): void;
  /** Partitions of an auto-created topic in the mock. */
  readonly defaultPartitions: number;
  /** Destroys the cluster and closes the library. Idempotent. */
  stop(): void;
}

/** The command that installs the library the mock cluster needs. */
export const LIBRDKAFKA_INSTALL_COMMAND = "apt-get install -y librdkafka1";

const SYMBOLS = {
  rd_kafka_conf_new: { parameters: [], result: "pointer" },
  rd_kafka_conf_set: {
    parameters: ["pointer", "buffer", "buffer", "buffer", "usize"],
    result: "i32",
  },
  rd_kafka_conf_destroy: { parameters: ["pointer"], result: "void" },
  rd_kafka_new: { parameters: ["i32", "pointer", "buffer", "usize"], result: "pointer" },
  rd_kafka_destroy: { parameters: ["pointer"], result: "void" },
  rd_kafka_err2str: { parameters: ["i32"], result: "pointer" },
  rd_kafka_mock_cluster_new: { parameters: ["pointer", "i32"], result: "pointer" },
  rd_kafka_mock_cluster_bootstraps: { parameters: ["pointer"], result: "pointer" },
  rd_kafka_mock_cluster_destroy: { parameters: ["pointer"], result: "void" },
  rd_kafka_mock_broker_set_down: { parameters: ["pointer", "i32"], result: "i32" },
  rd_kafka_mock_broker_set_up: { parameters: ["pointer", "i32"], result: "i32" },
  rd_kafka_mock_partition_set_leader: {
    parameters: ["pointer", "buffer", "i32", "i32"],
    result: "i32",
  },
  rd_kafka_mock_topic_create: {
    parameters: ["pointer", "buffer", "i32", "i32"],
    result: "i32",
  },
} as const satisfies Deno.ForeignLibraryInterface;

type Lib = Deno.DynamicLibrary<typeof SYMBOLS>;

/** rd_kafka_type_t RD_KAFKA_PRODUCER. */
const RD_KAFKA_PRODUCER = 0;
/** rd_kafka_conf_res_t RD_KAFKA_CONF_OK. */
const RD_KAFKA_CONF_OK = 0;

const encoder = new TextEncoder();
const cString = (s: string) => encoder.encode(s + "\0");

function readCString(buffer: Uint8Array): string {
  const end = buffer.indexOf(0);
  return new TextDecoder().decode(buffer.subarray(0, end < 0 ? buffer.length : end));
}

function openLibrary(): Lib {
  try {
    return Deno.dlopen("librdkafka.so.1", SYMBOLS);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(
      `The Kafka mock cluster needs librdkafka.so.1 (Debian package librdkafka1), ` +
        `which could not be loaded (${reason}). Install it with: ${LIBRDKAFKA_INSTALL_COMMAND}`,
      { cause: error },
    );
  }
}

/**
 * Starts a librdkafka mock cluster with `brokers` brokers on loopback ports.
 * Call `stop()` in a `finally`.
 */
export function startKafkaMock(options: KafkaMockOptions = {}): Promise<KafkaMock> {
  const brokerCount = options.brokers ?? 3;
  if (!Number.isInteger(brokerCount) || brokerCount < 1) {
    return Promise.reject(
      new RangeError(`startKafkaMock: brokers must be a positive integer, got ${brokerCount}`),
    );
  }
  const lib = openLibrary();
  try {
    const mock = createCluster(lib, brokerCount, options.logLevel ?? 3);
    return Promise.resolve(mock);
  } catch (error) {
    lib.close();
    return Promise.reject(error);
  }
}

function createCluster(lib: Lib, brokerCount: number, logLevel: number): KafkaMock {
  const s = lib.symbols;
  const errstr = new Uint8Array(512);
  const conf = s.rd_kafka_conf_new();
  if (conf === null) throw new Error("rd_kafka_conf_new failed");
  // The handle only hosts the mock cluster; it never connects anywhere itself.
  for (const [name, value] of [["log_level", String(logLevel)], ["client.id", "kafka-mock"]]) {
    const res = s.rd_kafka_conf_set(
      conf,
      cString(name),
      cString(value),
      errstr,
      BigInt(errstr.length),
    );
    if (res !== RD_KAFKA_CONF_OK) {
      s.rd_kafka_conf_destroy(conf);
      throw new Error(`rd_kafka_conf_set(${name}) failed: ${readCString(errstr)}`);
    }
  }
  // rd_kafka_new takes ownership of conf on success only.
  const rk = s.rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, BigInt(errstr.length));
  if (rk === null) {
    s.rd_kafka_conf_destroy(conf);
    throw new Error(`rd_kafka_new failed: ${readCString(errstr)}`);
  }
  const cluster = s.rd_kafka_mock_cluster_new(rk, brokerCount);
  if (cluster === null) {
    s.rd_kafka_destroy(rk);
    throw new Error(`rd_kafka_mock_cluster_new(${brokerCount}) failed`);
  }
  const bootstrapPtr = s.rd_kafka_mock_cluster_bootstraps(cluster);
  if (bootstrapPtr === null) {
    s.rd_kafka_mock_cluster_destroy(cluster);
    s.rd_kafka_destroy(rk);
    throw new Error("rd_kafka_mock_cluster_bootstraps returned NULL");
  }
  const bootstrap = new Deno.UnsafePointerView(bootstrapPtr).getCString().split(",");

  let stopped = false;
  const errName = (code: number) => {
    const p = s.rd_kafka_err2str(code);
    return p === null ? `error ${code}` : new Deno.UnsafePointerView(p).getCString();
  };
  const checkAlive = (what: string) => {
    if (stopped) throw new Error(`kafka mock: ${what} after stop()`);
  };
  const checkBroker = (id: number, what: string) => {
    checkAlive(what);
    if (!Number.isInteger(id) || id < 1 || id > brokerCount) {
      throw new RangeError(`kafka mock: ${what}: broker id must be 1..${brokerCount}, got ${id}`);
    }
  };
  const check = (code: number, what: string) => {
    if (code !== 0) throw new Error(`kafka mock: ${what} failed: ${errName(code)}`);
  };

  return {
    bootstrap,
    brokerCount,
    brokerDown(id) {
      checkBroker(id, "brokerDown");
      check(s.rd_kafka_mock_broker_set_down(cluster, id), `brokerDown(${id})`);
    },
    brokerUp(id) {
      checkBroker(id, "brokerUp");
      check(s.rd_kafka_mock_broker_set_up(cluster, id), `brokerUp(${id})`);
    },
    createTopic(name, partitions, replicationFactor = Math.min(3, brokerCount)) {
      checkAlive("createTopic");
      check(
        s.rd_kafka_mock_topic_create(cluster, cString(name), partitions, replicationFactor),
        `createTopic(${name})`,
      );
    },
    setLeader(topic, partition, brokerId) {
      checkBroker(brokerId, "setLeader");
      check(
        s.rd_kafka_mock_partition_set_leader(cluster, cString(topic), partition, brokerId),
        `setLeader(${topic}[${partition}], ${brokerId})`,
      );
    },
    defaultPartitions: 4,
    stop() {
      if (stopped) return;
      stopped = true;
      s.rd_kafka_mock_cluster_destroy(cluster);
      s.rd_kafka_destroy(rk);
      lib.close();
    },
  };
}
