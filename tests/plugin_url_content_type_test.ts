/**
 * A URL plugin written in TypeScript served by `python3 -m http.server`,
 * which sends `.ts` as `text/vnd.trolltech.linguist`: pinning fails saying
 * the content type was wrong and what to serve (not only Deno's
 * `SyntaxError: Expected ',', got ':'`); the same file served as
 * application/typescript pins.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { PinError, pinPlugin } from "../services/plugin_loader/mod.ts";
import { contentTypeProblem } from "../services/plugin_loader/content_type.ts";
import { openEmbeddedStore } from "./fixtures/url_plugins/store.ts";

const PLUGIN = `export default function make(config: Record<string, unknown>): {
  run(sample: { metrics: Record<string, number> }): typeof sample;
} {
  const factor = Number(config.factor ?? 1);
  return { run: (sample) => ({ ...sample, metrics: { cpu: (sample.metrics.cpu ?? 0) * factor } }) };
}
`;

/** `python3 -m http.server` on a free loopback port, serving `dir`. */
async function pythonServer(dir: string, handlerCode?: string) {
  const args = handlerCode
    ? ["-u", "-c", handlerCode, dir]
    : ["-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", dir];
  const child = new Deno.Command("python3", { args, stdout: "piped", stderr: "null" }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const deadline = Date.now() + 10_000;
  while (!/port (\d+)/.test(text)) {
    if (Date.now() > deadline) throw new Error(`python3 did not start: ${text}`);
    const { value, done } = await reader.read();
    if (done) throw new Error(`python3 exited: ${text}`);
    text += value;
  }
  const port = Number(/port (\d+)/.exec(text)![1]);
  return {
    url: (path: string) => `http://127.0.0.1:${port}${path}`,
    async close() {
      child.kill("SIGKILL");
      await reader.cancel().catch(() => {});
      await child.status;
    },
  };
}

/** Same server, with .ts mapped to application/typescript (the fix the README shows). */
const FIXED_SERVER = `
import http.server, sys, functools
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
handler.func.extensions_map[".ts"] = "application/typescript"
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
print("Serving on port", server.server_address[1], flush=True)
server.serve_forever()
`;

Deno.test("pinning a .ts plugin served as text/vnd.trolltech.linguist says the content type is wrong and what to serve", async () => {
  const dir = await Deno.makeTempDir({ prefix: "monitor-ctype-" });
  await Deno.mkdir(join(dir, "scale@1.0.0"));
  await Deno.writeTextFile(join(dir, "scale@1.0.0", "mod.ts"), PLUGIN);
  const store = await openEmbeddedStore(dir);
  const plain = await pythonServer(dir);
  const fixed = await pythonServer(dir, FIXED_SERVER);
  try {
    const url = plain.url("/scale@1.0.0/mod.ts");
    const served = await fetch(url);
    await served.body?.cancel();
    assert.equal(served.headers.get("content-type"), "text/vnd.trolltech.linguist");
    const error = await pinPlugin(store, "/monitor", "scale", { url }, {
      cacheDir: join(dir, "cache"),
    }).then(() => assert.fail("a module Deno cannot parse must not be pinned"), (e) => e);
    assert.ok(error instanceof PinError, String(error));
    assert.match(error.message, /plugin "scale"/);
    assert.match(error.message, /Content-Type "text\/vnd\.trolltech\.linguist"/);
    assert.match(error.message, /does not read as TypeScript/);
    assert.match(error.message, /application\/typescript/);
    assert.match(error.message, /plugins\/README\.md/);
    assert.equal(await store.get("/monitor/plugins/scale"), undefined);

    // Served as application/typescript, the same bytes pin.
    const outcome = await pinPlugin(store, "/monitor", "scale", {
      url: fixed.url("/scale@1.0.0/mod.ts"),
    }, { cacheDir: join(dir, "cache2") });
    assert.equal(outcome.action, "created");
  } finally {
    await plain.close();
    await fixed.close();
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("content type check: only a type Deno would misread is blamed", () => {
  const ts = "http://h/p@1/mod.ts";
  assert.equal(contentTypeProblem(ts, "application/typescript; charset=utf-8"), undefined);
  assert.equal(contentTypeProblem(ts, "text/plain"), undefined);
  assert.equal(contentTypeProblem(ts, "video/mp2t"), undefined);
  assert.match(contentTypeProblem(ts, "text/html")!, /"text\/html"/);
  assert.match(contentTypeProblem(ts, null)!, /"\(none\)"/);
  assert.equal(contentTypeProblem("http://h/p.js", "text/javascript"), undefined);
  assert.match(contentTypeProblem("http://h/p.js", "text/html")!, /text\/javascript/);
});
