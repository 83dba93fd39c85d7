/**
 * Transport security between agents and the broker: TLS (the broker's
 * certificate checked by address or name), mTLS (agents without a valid
 * certificate refused UNAUTHENTICATED with the reason, and reported by the
 * broker), the agent token checked when the stream opens, the warnings of an
 * exposed plain-text listener. Certificates are made with openssl in a
 * temporary folder (tests/harness/certs.ts). gRPC is real: the rpc adapter in
 * this process, then the broker and the agent as subprocesses started from
 * monitor.yaml and flags as the README shows.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { agentPermissionFlags } from "../services/agent/permissions.ts";
import { brokerPermissionFlags } from "../services/broker/permissions.ts";
import { busPermissionFlags } from "../services/bus/permissions.ts";
import { readAgentSecurity } from "../services/agent/security.ts";
import { readBrokerSecurity, securityWarnings } from "../services/broker/security.ts";
import type { CommonFlags } from "../services/common/cli.ts";
import { readSecret } from "../services/common/secrets.ts";
import { formatIssue } from "../services/config/issues.ts";
import { checkMonitorConfig } from "../services/config/monitor_yaml.ts";
import { resolveServiceSettings } from "../services/config/service_settings.ts";
import {
  type AgentStream,
  type ClientTlsOptions,
  openAgentStream,
  RpcError,
  RpcStatus,
  type ServerTlsOptions,
  startRpcServer,
} from "../services/rpc/mod.ts";
import { storePermissionFlags } from "../services/store/permissions.ts";
import { tempDir, waitUntil, within } from "./broker_support.ts";
import { mergePermissionFlags, ServiceProcess } from "./e2e_support.ts";
import { type CertFiles, makeTestPki, type TestPki } from "./harness/certs.ts";
import { freePorts } from "./harness/free_port.ts";

const read = (path: string) => Deno.readTextFileSync(path);

/** What one connection attempt ended with. */
interface Outcome {
  /** True when the broker's Welcome arrived. */
  welcomed: boolean;
  /** `broker_version` of the Welcome (the test server puts the stream's identity there). */
  identity?: string;
  /** The error when refused. */
  error?: RpcError;
}

/** Connects, sends Hello, and waits (bounded) for Welcome or the stream's end. */
async function attempt(
  address: string,
  tls: ClientTlsOptions | undefined,
  options: { token?: string; helloToken?: string } = {},
): Promise<Outcome> {
  const stream: AgentStream = openAgentStream({
    address,
    tls,
    token: options.token,
    connectTimeoutMs: 3000,
  });
  try {
    await stream.ready();
  } catch (error) {
    stream.close();
    assert.ok(error instanceof RpcError, `ready() rejects with an RpcError: ${error}`);
    return { welcomed: false, error };
  }
  const outcome = new Promise<Outcome>((resolve) => {
    stream.onMessage((m) => {
      if (m.welcome) resolve({ welcomed: true, identity: m.welcome.broker_version });
    });
    stream.onClose((error) => resolve({ welcomed: false, error }));
  });
  stream.send({
    hello: { agent_id: "sec-agent", hostname: "h", version: "t", token: options.helloToken ?? "" },
  });
  try {
    return await within(outcome, 10_000, `Welcome or the end of the stream from ${address}`);
  } finally {
    stream.close();
  }
}

/** A TLS test server answering Hello with `<verified>/<peerName>/<token>` as its version. */
async function withServer(
  tls: ServerTlsOptions,
  fn: (address: string, refusals: string[]) => Promise<void>,
): Promise<void> {
  const refusals: string[] = [];
  const server = await startRpcServer({
    listen: "127.0.0.1:0",
    tls,
    onTlsError: (peer, reason) => refusals.push(`${peer}: ${reason}`),
    onStream(stream) {
      stream.onMessage((m) => {
        if (!m.hello) return;
        stream.send({
          welcome: {
            broker_version: `${stream.authenticatedPeer}/${stream.peerName ?? "-"}/${
              stream.token ?? "-"
            }`,
            max_batch_samples: 10,
          },
        });
      });
    },
  });
  try {
    await fn(server.address, refusals);
  } finally {
    await server.close(1000);
  }
}

function serverTls(files: CertFiles, clientCa?: string): ServerTlsOptions {
  return {
    cert: read(files.cert),
    key: read(files.key),
    ...(clientCa ? { ca: read(clientCa), requireClientCert: true } : {}),
  };
}

function clientTls(ca: string, files?: CertFiles, serverName?: string): ClientTlsOptions {
  return {
    ca: read(ca),
    ...(files ? { cert: read(files.cert), key: read(files.key) } : {}),
    ...(serverName ? { serverName } : {}),
  };
}

async function withPki(fn: (pki: TestPki) => Promise<void>): Promise<void> {
  const dir = await tempDir("monitor-pki-");
  try {
    await fn(await makeTestPki(dir));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

// After a refused connection grpc-js keeps unref'd timers of its own (subchannel
// BackoffTimeout, the SubchannelPool cleanup interval) that expire by themselves within
// seconds and cannot be cancelled from outside; Deno counts timers under both sanitizers.
// So the tests whose connections are refused during the TLS handshake turn both off (as
// services/rpc/rpc_test.ts does for a closed port) and come last in this file, so that those
// timers cannot be counted against a test that checks; every other test keeps them on.
const REFUSED_CONNECTIONS = { sanitizeOps: false, sanitizeResources: false };

Deno.test("mTLS: only agents with a certificate of the configured CA get a stream; the others are refused UNAUTHENTICATED with the reason and reported", async () => {
  await withPki(async (pki) => {
    await withServer(serverTls(pki.broker, pki.ca), async (address, refusals) => {
      const good = await attempt(address, clientTls(pki.ca, pki.agent));
      assert.equal(good.identity, "true/agent-1/-", String(good.error));
      assert.deepEqual(refusals, []);
      // The client certificate together with agent.tls.server_name (Deno's TLS gets both).
      const named = await attempt(address, clientTls(pki.ca, pki.agent, "localhost"));
      assert.equal(named.identity, "true/agent-1/-", String(named.error));
      assert.deepEqual(refusals, []);

      const none = await attempt(address, clientTls(pki.ca));
      assert.equal(none.error?.code, RpcStatus.UNAUTHENTICATED);
      assert.match(none.error?.details ?? "", /^client certificate refused: no client certificate/);

      const rogue = await attempt(address, clientTls(pki.ca, pki.rogueAgent));
      assert.equal(rogue.error?.code, RpcStatus.UNAUTHENTICATED);
      assert.match(
        rogue.error?.details ?? "",
        /certificate of "intruder" \(issued by "Rogue CA"\) does not verify against the broker's client CA/,
      );

      const expired = await attempt(address, clientTls(pki.ca, pki.expiredAgent));
      assert.equal(expired.error?.code, RpcStatus.UNAUTHENTICATED);
      assert.match(
        expired.error?.details ?? "",
        /certificate of "agent-old" \(issued by "Monitor Test CA"\) expired on 2020-02-01T00:00:00\.000Z/,
      );

      assert.equal(refusals.length, 3, refusals.join("\n"));
      assert.match(refusals[0], /^127\.0\.0\.1:\d+: no client certificate/);
      assert.match(refusals[1], /intruder/);
      assert.match(refusals[2], /agent-old.*expired/);
    });
  });
});

Deno.test("secrets: a token file is trimmed, an empty file or unset variable is an error naming the key, a readable file warns", async () => {
  const dir = await tempDir("monitor-secret-");
  try {
    const file = join(dir, "token");
    await Deno.writeTextFile(file, "  s3cret\n", { mode: 0o600 });
    await Deno.chmod(file, 0o600);
    const secret = await readSecret({ what: "agent.token", file: "token", base: dir });
    assert.deepEqual(secret, { value: "s3cret", from: `file ${file}` });
    await Deno.chmod(file, 0o644);
    const loose = await readSecret({ what: "agent.token", file, base: dir });
    assert.match(
      loose?.warning ?? "",
      /agent\.token_file .* can be read by other users \(mode 644\)/,
    );
    await Deno.writeTextFile(join(dir, "empty"), "\n");
    await assert.rejects(
      readSecret({ what: "broker.token", file: "empty", base: dir }),
      /broker\.token_file: expected a token in .*empty, found an empty file/,
    );
    await assert.rejects(
      readSecret({ what: "broker.token", file: "missing", base: dir }),
      /broker\.token_file: cannot read .*missing/,
    );
    await assert.rejects(
      readSecret({ what: "agent.token", env: "MONITOR_TEST_UNSET_TOKEN_VAR", base: dir }),
      /agent\.token_env: expected the token in \$MONITOR_TEST_UNSET_TOKEN_VAR, found it unset/,
    );
    await assert.rejects(
      readSecret({ what: "agent.token", inline: "x", file: "token", base: dir }),
      /agent\.token and agent\.token_file: expected only one source/,
    );
    assert.equal(await readSecret({ what: "agent.token", base: dir }), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("settings: monitor.yaml's security keys are checked, ca makes client certificates required, the local agent inherits the broker's token source", async () => {
  const check = (lines: string[]) =>
    checkMonitorConfig(lines.join("\n") + "\n", "m.yaml", { hostname: "h" });
  const ok = check([
    "broker:",
    "  token_file: agent-token",
    "  admin_token_env: MONITOR_ADMIN_TOKEN",
    "  tls: {cert: b.pem, key: b-key.pem, ca: ca.pem}",
    "agent:",
    "  tls: {ca: ca.pem, cert: a.pem, key: a-key.pem, server_name: broker.example}",
  ]);
  assert.deepEqual(ok.issues, []);
  assert.equal(ok.config?.broker.token_file, "agent-token");
  assert.equal(ok.config?.broker.admin_token_env, "MONITOR_ADMIN_TOKEN");
  assert.equal(ok.config?.broker.tls?.require_client_cert, true);
  assert.equal(
    ok.config?.agent.token_file,
    "agent-token",
    "the local agent uses broker.token_file",
  );
  const problems = (lines: string[]) => check(lines).issues.map((i) => formatIssue(i));
  assert.deepEqual(problems(["broker:", "  token: abc", "  token_file: t"]), [
    '3:15: broker.token_file: expected only one of token, token_file and token_env, found "t" (a string)',
  ]);
  assert.match(
    problems([
      "broker:",
      "  tls: {cert: b.pem, key: k.pem, ca: ca.pem, require_client_cert: false}",
    ])
      .join(),
    /broker\.tls\.require_client_cert: expected true \(or absent\) with ca: client certificates cannot be optional/,
  );
  assert.match(
    problems(["agent:", "  token_env: 1-bad"]).join(),
    /agent\.token_env: expected an environment variable name/,
  );

  // The resolver checks the flags with the file (one rule, one wording: a flag's issue
  // names the flag); the services' readers read what it resolved: half a pair is named,
  // the local agent inherits the broker's token, warnings for exposed listeners.
  const dir = await tempDir("monitor-settings-");
  try {
    await assert.rejects(
      resolveServiceSettings("broker", { tlsCa: join(dir, "ca.pem") } as CommonFlags, dir),
      /--tls-ca: mTLS needs TLS: expected broker\.tls\.cert and broker\.tls\.key too/,
    );
    await assert.rejects(
      resolveServiceSettings("agent", { tlsCert: join(dir, "a.pem") } as CommonFlags, dir),
      /agent\.tls\.key: expected both cert and key \(PEM files\) for mTLS, or neither/,
    );
    await Deno.writeTextFile(join(dir, "t"), "from-file\n");
    await Deno.chmod(join(dir, "t"), 0o600);
    const yaml = join(dir, "monitor.yaml");
    await Deno.writeTextFile(yaml, "broker:\n  token_file: t\n");
    const agent = await readAgentSecurity(await resolveServiceSettings("agent", { config: yaml }));
    assert.equal(agent.token?.value, "from-file");
    assert.equal(agent.tls, undefined);
    const plain = await readBrokerSecurity(await resolveServiceSettings("broker", {}, dir));
    assert.deepEqual(securityWarnings("127.0.0.1:50052", plain), []);
    assert.equal(securityWarnings("0.0.0.0:50052", plain).length, 2);
    const withToken = await readBrokerSecurity(
      await resolveServiceSettings("broker", { config: yaml }),
    );
    assert.deepEqual(
      securityWarnings("10.0.0.5:50052", withToken).map((w) => w.slice(0, 40)),
      ["the gRPC listener 10.0.0.5:50052 is reac"],
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A broker subprocess on the embedded backends of `dir`, configured by `yaml` (monitor.yaml text). */
async function startBrokerProcess(
  dir: string,
  listen: string,
  admin: string,
  yaml: string,
  files: { tls?: string[]; secrets?: string[] } = {},
): Promise<ServiceProcess> {
  const configFile = join(dir, "monitor.yaml");
  await Deno.writeTextFile(configFile, yaml);
  const path = join(dir, "monitor.db");
  const broker = new ServiceProcess(`broker on ${listen}`, [
    "--no-prompt",
    ...mergePermissionFlags(
      brokerPermissionFlags({
        stateDir: dir,
        configFile,
        listen,
        admin,
        tlsFiles: files.tls,
        secretFiles: files.secrets,
      }),
      storePermissionFlags({ backend: "embedded", endpoints: [], prefix: "/monitor", path }),
      busPermissionFlags({ backend: "embedded", brokers: [], path }),
    ),
    "services/broker/main.ts",
    "--config",
    configFile,
    "--supervised",
  ]);
  await broker.waitForLine(/^monitor:ready$/, 30_000, "monitor:ready");
  return broker;
}

Deno.test("broker and agent processes: TLS + client certificates + token file from monitor.yaml; a wrong token or missing certificate is refused and logged on both sides", async () => {
  const dir = await tempDir("monitor-secure-");
  const processes: ServiceProcess[] = [];
  try {
    const pki = await makeTestPki(dir);
    const tokenFile = join(dir, "agent-token");
    await Deno.writeTextFile(tokenFile, "correct-horse\n", { mode: 0o600 });
    await Deno.chmod(tokenFile, 0o600);
    const wrongTokenFile = join(dir, "wrong-token");
    await Deno.writeTextFile(wrongTokenFile, "battery-staple\n", { mode: 0o600 });
    await Deno.chmod(wrongTokenFile, 0o600);
    const [port, adminPort] = freePorts(2);
    const listen = `127.0.0.1:${port}`;
    const broker = await startBrokerProcess(
      dir,
      listen,
      `127.0.0.1:${adminPort}`,
      [
        `state_dir: ${dir}`,
        "broker:",
        `  listen: ${listen}`,
        `  admin: 127.0.0.1:${adminPort}`,
        "  token_file: agent-token",
        "  tls:",
        "    cert: broker.pem",
        "    key: broker-key.pem",
        "    ca: ca.pem",
        "",
      ].join("\n"),
      { tls: [pki.broker.cert, pki.broker.key, pki.ca], secrets: [tokenFile] },
    );
    processes.push(broker);
    assert.match(
      broker.output,
      /gRPC listener 127\.0\.0\.1:\d+: TLS with client certificates required \(mTLS\)/,
    );
    assert.match(broker.output, /agents must present the token from file .*agent-token/);
    assert.doesNotMatch(broker.output, /correct-horse/, "the token itself is never logged");

    // Clients from this process: the token in metadata, in Hello only, wrong, and no certificate.
    const withCert = clientTls(pki.ca, pki.agent);
    const ok = await attempt(listen, withCert, { token: "correct-horse" });
    assert.equal(ok.welcomed, true, String(ok.error));
    const helloOnly = await attempt(listen, withCert, { helloToken: "correct-horse" });
    assert.equal(helloOnly.welcomed, true, String(helloOnly.error));
    const wrong = await attempt(listen, withCert, { token: "battery-staple" });
    assert.equal(wrong.error?.code, RpcStatus.UNAUTHENTICATED);
    assert.equal(wrong.error?.details, "authorization: the agent token is not valid");
    await broker.waitForLine(/WARN .*refused a stream from 127\.0\.0\.1:\d+: wrong token/, 5000);
    const noCert = await attempt(listen, clientTls(pki.ca), { token: "correct-horse" });
    assert.equal(noCert.error?.code, RpcStatus.UNAUTHENTICATED);
    assert.match(noCert.error?.details ?? "", /client certificate refused: no client certificate/);
    await broker.waitForLine(/WARN .*refused a TLS connection from .*no client certificate/, 5000);

    // The real agent, started as the README shows.
    const agentArgs = (id: string, token: string) => [
      ...mergePermissionFlags(
        agentPermissionFlags({
          broker: listen,
          tlsFiles: [pki.ca, pki.agent.cert, pki.agent.key],
          tokenFile: token,
        }),
        storePermissionFlags({
          backend: "embedded",
          endpoints: [],
          prefix: "/monitor",
          path: join(dir, "monitor.db"),
        }),
      ),
      "services/agent/main.ts",
      "--supervised",
      "--broker",
      listen,
      "--id",
      id,
      "--store-backend",
      "embedded",
      "--state-dir",
      dir,
      "--tls-ca",
      pki.ca,
      "--tls-cert",
      pki.agent.cert,
      "--tls-key",
      pki.agent.key,
      "--token-file",
      token,
    ];
    const agent = new ServiceProcess("agent sec-ok", agentArgs("sec-ok", tokenFile));
    processes.push(agent);
    await broker.waitForLine(/agent sec-ok connected from 127\.0\.0\.1/, 30_000);
    const intruder = new ServiceProcess("agent sec-wrong", agentArgs("sec-wrong", wrongTokenFile));
    processes.push(intruder);
    await intruder.waitForLine(
      /ERROR .*the broker at 127\.0\.0\.1:\d+ refused this agent: UNAUTHENTICATED: authorization: the agent token is not valid/,
      30_000,
    );
    assert.doesNotMatch(broker.output, /agent sec-wrong connected/);
  } finally {
    for (const p of processes.reverse()) await p.stop().catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("broker process: a listener reachable from other hosts without TLS or token is started with warnings; bad TLS settings stop it naming the key", async () => {
  const dir = await tempDir("monitor-exposed-");
  const processes: ServiceProcess[] = [];
  try {
    const [port, adminPort] = freePorts(2);
    const listen = `0.0.0.0:${port}`;
    const broker = await startBrokerProcess(
      dir,
      listen,
      `127.0.0.1:${adminPort}`,
      [`state_dir: ${dir}`, "broker:", `  listen: ${listen}`, `  admin: 127.0.0.1:${adminPort}`, ""]
        .join("\n"),
    );
    processes.push(broker);
    assert.match(
      broker.output,
      /WARN .*the gRPC listener 0\.0\.0\.0:\d+ is reachable from other hosts without TLS/,
    );
    assert.match(broker.output, /WARN .*accepts any agent: set broker\.token_file/);

    const configFile = join(dir, "bad.yaml");
    await Deno.writeTextFile(configFile, "broker:\n  tls:\n    cert: broker.pem\n");
    const bad = new ServiceProcess("broker with half a TLS setting", [
      "--no-prompt",
      ...brokerPermissionFlags({ stateDir: dir, configFile }),
      "services/broker/main.ts",
      "--config",
      configFile,
      "--state-dir",
      dir,
    ]);
    processes.push(bad);
    const status = await bad.exited(30_000);
    assert.equal(status.code, 1);
    assert.match(
      bad.output,
      /bad\.yaml:2:3: broker\.tls\.key: expected the private key \(PEM file\)/,
    );
  } finally {
    for (const p of processes.reverse()) await p.stop().catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "TLS: an agent reaches the broker by IP address, by DNS name and with server_name; the broker's certificate is checked",
  ...REFUSED_CONNECTIONS,
}, async () => {
  await withPki(async (pki) => {
    await withServer(serverTls(pki.broker), async (address, refusals) => {
      const port = address.slice(address.lastIndexOf(":") + 1);
      const byIp = await attempt(address, clientTls(pki.ca), { token: "t0k" });
      assert.equal(byIp.error, undefined);
      assert.equal(byIp.identity, "false/-/t0k", "TLS without a client certificate; token seen");
      const byName = await attempt(`localhost:${port}`, clientTls(pki.ca));
      assert.equal(byName.welcomed, true, String(byName.error));
      const named = await attempt(address, clientTls(pki.ca, undefined, "localhost"));
      assert.equal(named.welcomed, true, String(named.error));

      const wrongName = await attempt(address, clientTls(pki.ca, undefined, "broker.example"));
      assert.equal(wrongName.error?.code, RpcStatus.UNAVAILABLE);
      assert.match(wrongName.error?.details ?? "", /TLS handshake failed: .*broker\.example/);
      assert.match(wrongName.error?.details ?? "", /server_name/);
      // The broker sees the handshake fail when the agent drops the connection, which may
      // be just after the agent reported it.
      await waitUntil(
        () => refusals.length > 0,
        10_000,
        "the server's report of the failed handshake",
      );
    });
    await withServer(serverTls(pki.rogueBroker), async (address) => {
      const untrusted = await attempt(address, clientTls(pki.ca));
      assert.equal(untrusted.error?.code, RpcStatus.UNAVAILABLE);
      assert.match(untrusted.error?.details ?? "", /broker's certificate is not trusted/);
      assert.match(untrusted.error?.details ?? "", /agent\.tls\.ca/);
    });
    await withServer(serverTls(pki.expiredBroker), async (address, refusals) => {
      const expired = await attempt(address, clientTls(pki.ca));
      assert.equal(expired.error?.code, RpcStatus.UNAVAILABLE);
      assert.match(expired.error?.details ?? "", /not trusted: it has expired, or/);
      await waitUntil(
        () => refusals.some((r) => /CertificateExpired/.test(r)),
        10_000,
        "the broker to see the agent's alert",
        { detail: () => refusals.join("; ") },
      );
    });
  });
});

Deno.test({
  name: "TLS: a plain-text agent cannot use a TLS broker, nor a TLS agent a plain-text one",
  ...REFUSED_CONNECTIONS,
}, async () => {
  await withPki(async (pki) => {
    await withServer(serverTls(pki.broker), async (address, refusals) => {
      const plain = await attempt(address, undefined);
      assert.equal(plain.error?.code, RpcStatus.UNAVAILABLE);
      await waitUntil(
        () => refusals.length > 0,
        10_000,
        "the server's report of the failed handshake",
      );
    });
  });
  const server = await startRpcServer({ listen: "127.0.0.1:0", onStream: () => {} });
  try {
    const dir = await tempDir("monitor-pki-");
    try {
      const pki = await makeTestPki(dir);
      const outcome = await attempt(server.address, clientTls(pki.ca));
      assert.equal(outcome.error?.code, RpcStatus.UNAVAILABLE);
      assert.match(outcome.error?.details ?? "", /TLS handshake failed/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  } finally {
    await server.close(1000);
  }
});
