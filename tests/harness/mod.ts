/**
 * The public test-and-bench harness: the one entry point through which code
 * outside `tests/` (the benchmarks in `bench/`) uses the real components the
 * tests run against. Test support, not product code.
 *
 * - a real etcd on free loopback ports ({@linkcode startEtcd}, {@linkcode withEtcd});
 * - the Kafka mock cluster of librdkafka through FFI ({@linkcode startKafkaMock}; needs `--allow-ffi`);
 * - free loopback TCP ports ({@linkcode freePort}, {@linkcode freePorts});
 * - provisioning of the Debian components ({@linkcode requireComponents}, {@linkcode provision});
 * - test certificates made with `openssl` ({@linkcode makeTestPki});
 * - a headless Chromium through playwright-core ({@linkcode launchChromium}).
 *
 * Importing this module loads no client library and needs no permission:
 * every module it re-exports does its work (dlopen, spawning, reading the
 * environment) only when called, and playwright-core is imported by
 * {@linkcode launchChromium} itself, after it has set what playwright needs
 * before it loads.
 *
 * The contract suites (`store_contract.ts`, `bus_contract.ts`), their child
 * scripts, `line_process.ts`, `netns.ts` and `kafka_mock_main.ts` stay out of
 * it: only tests use them, by their own paths.
 *
 * @example Ports that were free a moment ago
 * ```ts
 * import { freePorts } from "./mod.ts";
 *
 * const [client, peer] = freePorts(2);
 * console.log(`etcd on ${client}, peers on ${peer}`);
 * ```
 *
 * @module
 */
export { CHROMIUM_ARGS, launchChromium } from "./browser.ts";
export { type CertFiles, makeTestPki, OPENSSL_INSTALL_COMMAND, type TestPki } from "./certs.ts";
export { type EtcdOptions, type EtcdServer, startEtcd, withEtcd } from "./etcd.ts";
export { freePort, freePorts } from "./free_port.ts";
export {
  type KafkaMock,
  type KafkaMockOptions,
  LIBRDKAFKA_INSTALL_COMMAND,
  startKafkaMock,
} from "./kafka_mock.ts";
export {
  BENCH_COMPONENTS,
  checkComponents,
  type ComponentName,
  type ComponentStatus,
  DEBIAN_PACKAGES,
  findExecutable,
  findLibrary,
  INSTALL_COMMAND,
  installCommand,
  missingMessage,
  packagesOf,
  provision,
  type ProvisionOptions,
  requireComponents,
} from "./provision.ts";
