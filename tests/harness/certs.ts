/**
 * Test certificates made with the `openssl` command line, the way the
 * README's "Transport security" section tells a user (a private CA, a broker
 * certificate with the broker's addresses, agent certificates), plus the bad
 * ones tests need: expired, and signed by a CA nobody trusts. Not product
 * code.
 *
 * @module
 */
import { join } from "node:path";

/** Command that installs openssl on Debian when it is missing. */
export const OPENSSL_INSTALL_COMMAND = "apt-get install -y openssl";

/** A certificate and its key (PEM file paths). */
export interface CertFiles {
  cert: string;
  key: string;
}

/** Everything {@linkcode makeTestPki} writes. */
export interface TestPki {
  dir: string;
  /** The CA the broker and the agents trust (`ca.pem`). */
  ca: string;
  /** Broker certificate (default: for IP 127.0.0.1 and DNS localhost), signed by the CA. */
  broker: CertFiles;
  /** Agent certificate (CN agent-1), signed by the CA. */
  agent: CertFiles;
  /** Agent certificate (CN agent-old) signed by the CA, valid only in January 2020. */
  expiredAgent: CertFiles;
  /** Broker certificate signed by the CA, valid only in January 2020. */
  expiredBroker: CertFiles;
  /** A CA nobody configured (`rogue-ca.pem`). */
  rogueCa: string;
  /** Agent certificate (CN intruder) signed by the rogue CA. */
  rogueAgent: CertFiles;
  /** Broker certificate for 127.0.0.1/localhost signed by the rogue CA. */
  rogueBroker: CertFiles;
}

async function openssl(dir: string, args: string[]): Promise<void> {
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command("openssl", {
      args,
      cwd: dir,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(`openssl is not installed; install it with: ${OPENSSL_INSTALL_COMMAND}`);
    }
    throw error;
  }
  if (!output.success) {
    throw new Error(
      `openssl ${args.join(" ")} failed (exit ${output.code}): ${
        new TextDecoder().decode(output.stderr)
      }`,
    );
  }
}

const KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/** A self-signed CA. */
async function makeCa(dir: string, name: string, cn: string): Promise<void> {
  await openssl(dir, [
    "req",
    "-x509",
    ...KEY,
    "-keyout",
    `${name}-key.pem`,
    "-out",
    `${name}.pem`,
    "-days",
    "2",
    "-subj",
    `/CN=${cn}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
}

/**
 * A key and a certificate signed by CA `ca`. With `window` the certificate
 * is valid only between those dates (`openssl ca`, which can backdate).
 */
async function issue(
  dir: string,
  ca: string,
  name: string,
  cn: string,
  extensions: string,
  window?: { start: string; end: string },
): Promise<CertFiles> {
  await openssl(dir, [
    "req",
    ...KEY,
    "-keyout",
    `${name}-key.pem`,
    "-out",
    `${name}.csr`,
    "-subj",
    `/CN=${cn}`,
  ]);
  await Deno.writeTextFile(join(dir, `${name}.ext`), extensions);
  if (!window) {
    await openssl(dir, [
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      `${ca}.pem`,
      "-CAkey",
      `${ca}-key.pem`,
      "-CAcreateserial",
      "-out",
      `${name}.pem`,
      "-days",
      "2",
      "-extfile",
      `${name}.ext`,
    ]);
  } else {
    const db = join(dir, `${ca}-db`);
    await Deno.mkdir(db, { recursive: true });
    await Deno.writeTextFile(join(db, "index.txt"), "", { append: true });
    await Deno.writeTextFile(join(db, "serial"), `${crypto.randomUUID().replace(/-/g, "")}\n`);
    await Deno.writeTextFile(
      join(dir, `${name}.cnf`),
      [
        "[ca]",
        "default_ca = test",
        "[test]",
        `database = ${join(db, "index.txt")}`,
        `new_certs_dir = ${db}`,
        `serial = ${join(db, "serial")}`,
        "default_md = sha256",
        "policy = any",
        "unique_subject = no",
        "[any]",
        "commonName = supplied",
        "[ext]",
        extensions,
        "",
      ].join("\n"),
    );
    await openssl(dir, [
      "ca",
      "-batch",
      "-config",
      `${name}.cnf`,
      "-cert",
      `${ca}.pem`,
      "-keyfile",
      `${ca}-key.pem`,
      "-in",
      `${name}.csr`,
      "-out",
      `${name}.pem`,
      "-startdate",
      window.start,
      "-enddate",
      window.end,
      "-extensions",
      "ext",
      "-notext",
    ]);
  }
  return { cert: join(dir, `${name}.pem`), key: join(dir, `${name}-key.pem`) };
}

const CLIENT_EXT = "extendedKeyUsage = clientAuth\n";
const JANUARY_2020 = { start: "20200101000000Z", end: "20200201000000Z" };

/**
 * Writes the test PKI into `dir` (which must exist).
 * @param brokerAltNames subject alternative names of the broker's certificates
 */
export async function makeTestPki(
  dir: string,
  brokerAltNames = "IP:127.0.0.1, DNS:localhost",
): Promise<TestPki> {
  const serverExt = `subjectAltName = ${brokerAltNames}\nextendedKeyUsage = serverAuth\n`;
  await makeCa(dir, "ca", "Monitor Test CA");
  await makeCa(dir, "rogue-ca", "Rogue CA");
  // One at a time: certificates of one CA share its serial file and database.
  const broker = await issue(dir, "ca", "broker", "broker", serverExt);
  const agent = await issue(dir, "ca", "agent", "agent-1", CLIENT_EXT);
  const expiredAgent = await issue(dir, "ca", "agent-old", "agent-old", CLIENT_EXT, JANUARY_2020);
  const expiredBroker = await issue(
    dir,
    "ca",
    "broker-old",
    "broker-old",
    serverExt,
    JANUARY_2020,
  );
  const rogueAgent = await issue(dir, "rogue-ca", "intruder", "intruder", CLIENT_EXT);
  const rogueBroker = await issue(dir, "rogue-ca", "rogue-broker", "broker", serverExt);
  return {
    dir,
    ca: join(dir, "ca.pem"),
    broker,
    agent,
    expiredAgent,
    expiredBroker,
    rogueCa: join(dir, "rogue-ca.pem"),
    rogueAgent,
    rogueBroker,
  };
}
