import assert from "node:assert/strict";
import {
  isSha512Integrity,
  packageEntry,
  parseNpmUrl,
  sha512Integrity,
  splitBareSpecifier,
  untarGz,
} from "./npm.ts";

/** A ustar archive of `entries` (name -> text; a name over 100 bytes gets a pax header). */
async function tgz(entries: Record<string, string>): Promise<Uint8Array> {
  const encoder = new TextEncoder();
  const blocks: Uint8Array[] = [];
  const header = (name: string, size: number, type: string) => {
    const h = new Uint8Array(512);
    h.set(encoder.encode(name.slice(0, 100)), 0);
    h.set(encoder.encode(size.toString(8).padStart(11, "0")), 124);
    h[156] = type.charCodeAt(0);
    h.set(encoder.encode("ustar"), 257);
    return h;
  };
  const body = (bytes: Uint8Array) => {
    const padded = new Uint8Array(Math.ceil(bytes.length / 512) * 512);
    padded.set(bytes);
    return padded;
  };
  for (const [name, text] of Object.entries(entries)) {
    const data = encoder.encode(text);
    if (name.length > 100) {
      const record = ` path=${name}\n`;
      const pax = encoder.encode(`${record.length + String(record.length + 2).length}${record}`);
      blocks.push(header("PaxHeader", pax.length, "x"), body(pax));
    }
    blocks.push(header(name, data.length, "0"), body(data));
  }
  blocks.push(new Uint8Array(1024));
  const tar = new Uint8Array(blocks.reduce((n, b) => n + b.length, 0));
  let at = 0;
  for (const block of blocks) {
    tar.set(block, at);
    at += block.length;
  }
  const stream = new Blob([tar]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

Deno.test("untarGz returns the files without the top directory, long names included", async () => {
  const long = `package/${"d".repeat(60)}/${"f".repeat(60)}.js`;
  const files = await untarGz(
    await tgz({ "package/package.json": "{}", "package/dist/index.js": "x", [long]: "y" }),
    "t.tgz",
  );
  assert.deepEqual([...files.keys()].sort(), [
    `${"d".repeat(60)}/${"f".repeat(60)}.js`,
    "dist/index.js",
    "package.json",
  ]);
  assert.equal(new TextDecoder().decode(files.get("dist/index.js")), "x");
  await assert.rejects(
    untarGz(await tgz({ "package/../evil.js": "z" }), "t.tgz"),
    /t\.tgz: unsafe path "package\/\.\.\/evil\.js"/,
  );
  await assert.rejects(untarGz(new TextEncoder().encode("plain"), "t.tgz"), /not a gzip archive/);
});

Deno.test("packageEntry follows exports conditions, patterns and main", () => {
  const files = new Map(
    ["dist/index.js", "dist/node.js", "dist/sub/a.js", "lib/main.js", "index.js"].map((p) => [
      p,
      new Uint8Array(),
    ]),
  );
  const where = "npm package p@1.0.0";
  assert.equal(packageEntry({ exports: "./dist/index.js" }, ".", files, where), "dist/index.js");
  const conditional = {
    exports: {
      ".": { types: "./x.d.ts", require: "./x.cjs", import: "./dist/index.js" },
      "./sub/*": { default: "./dist/sub/*.js" },
    },
  };
  assert.equal(packageEntry(conditional, ".", files, where), "dist/index.js");
  assert.equal(packageEntry(conditional, "./sub/a", files, where), "dist/sub/a.js");
  assert.throws(() => packageEntry(conditional, "./other", files, where), /no ES module entry/);
  assert.equal(
    packageEntry({ exports: { node: "./dist/node.js", default: "./x.js" } }, ".", files, where),
    "dist/node.js",
  );
  assert.equal(packageEntry({ main: "lib/main" }, ".", files, where), "lib/main.js");
  assert.equal(packageEntry({}, ".", files, where), "index.js");
  assert.throws(() => packageEntry({ main: "gone.js" }, ".", files, where), /not in the package/);
});

Deno.test("npm module URLs and bare specifiers are split into package and path", async () => {
  assert.deepEqual(parseNpmUrl("npm:/@s/name@1.2.3/dist/x.js"), {
    name: "@s/name",
    version: "1.2.3",
    path: "dist/x.js",
  });
  assert.deepEqual(parseNpmUrl("npm:/left@0.1.0"), { name: "left", version: "0.1.0", path: "" });
  assert.equal(parseNpmUrl("https://example.com/a.js"), undefined);
  assert.deepEqual(splitBareSpecifier("@s/name/sub/x"), { name: "@s/name", subpath: "./sub/x" });
  assert.deepEqual(splitBareSpecifier("name"), { name: "name", subpath: "." });
  const integrity = await sha512Integrity(new TextEncoder().encode("abc"));
  assert.ok(isSha512Integrity(integrity), integrity);
  assert.equal(integrity.slice(0, 20), "sha512-3a81oZNherrMQ");
});
