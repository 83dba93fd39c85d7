import assert from "node:assert/strict";
import {
  applyRewrites,
  dependencyOrder,
  localPathOf,
  materializeModule,
  planLayout,
  relativeSpecifier,
} from "./layout.ts";
import type { PinnedModule } from "./types.ts";

function module(url: string, deps: [string, string][] = [], media = "TypeScript"): PinnedModule {
  return {
    url,
    integrity: "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    size: 0,
    media_type: media,
    dependencies: deps.map(([specifier, url]) => ({ specifier, url })),
  };
}

Deno.test("applyRewrites replaces every import form of a specifier, and nothing else", () => {
  const source = [
    `import { a } from "./a.ts";`,
    `import { b } from './a.ts';`,
    `import"./a.ts";`,
    `export * from "./a.ts";`,
    `export { c } from\n  "./a.ts";`,
    `const lazy = () => import( "./a.ts" );`,
    `const text = "./a.ts"; // a plain string stays`,
    `obj.import("./a.ts"); // a method named import stays`,
    `import { x } from "./a.tsx";`,
  ].join("\n");
  const { text, counts } = applyRewrites(source, new Map([["./a.ts", "blob:null/1"]]));
  assert.equal(counts.get("./a.ts"), 6);
  assert.equal(
    text,
    [
      `import { a } from "blob:null/1";`,
      `import { b } from 'blob:null/1';`,
      `import"blob:null/1";`,
      `export * from "blob:null/1";`,
      `export { c } from\n  "blob:null/1";`,
      `const lazy = () => import( "blob:null/1" );`,
      `const text = "./a.ts"; // a plain string stays`,
      `obj.import("./a.ts"); // a method named import stays`,
      `import { x } from "./a.tsx";`,
    ].join("\n"),
  );
});

Deno.test("materializeModule keeps the exact bytes of a module without imports and refuses an import it cannot find", () => {
  const bytes = new TextEncoder().encode("export const x = 1;\n");
  assert.equal(materializeModule(module("https://h/x.ts"), bytes, () => "never"), bytes);
  // Written with an escape, the specifier's text is not the one Deno's graph names.
  const hidden = new TextEncoder().encode('import { y } from "./\\u0079.ts";\n');
  assert.throws(
    () =>
      materializeModule(module("https://h/x.ts", [["./y.ts", "https://h/y.ts"]]), hidden, (u) => u),
    /module https:\/\/h\/x\.ts: cannot find the import of "\.\/y\.ts"/,
  );
  const node = new TextEncoder().encode('import fs from "node:fs";\n');
  assert.equal(
    materializeModule(module("https://h/x.ts", [["node:fs", "node:fs"]]), node, () => "never"),
    node,
  );
});

Deno.test("applyRewrites: an import behind a comment is found; import-like text in strings, comments and templates stays", () => {
  const source = [
    `import { y } from /* why */ "./y.ts";`,
    `// import { z } from "./y.ts";`,
    `/* export * from "./y.ts"; */`,
    `const s = 'import("./y.ts")';`,
    `const t = \`import { w } from "./y.ts"\`;`,
    `const re = /from "\\.\\/y\\.ts"/;`,
    `function id<T extends string>(x: T): T { return x; }`,
    `const later = await import("./y.ts");`,
  ].join("\n");
  const { text, counts } = applyRewrites(source, new Map([["./y.ts", "blob:null/2"]]));
  assert.equal(counts.get("./y.ts"), 2);
  assert.equal(
    text,
    source.replace(`/* why */ "./y.ts"`, `/* why */ "blob:null/2"`)
      .replace(`await import("./y.ts")`, `await import("blob:null/2")`),
  );
});

Deno.test("local paths mirror URLs, carry the extension of the media type, and refuse escapes", () => {
  assert.equal(
    localPathOf("https://plugins.example.com/spike@1.2.0/mod.ts", "TypeScript"),
    "https/plugins.example.com/spike@1.2.0/mod.ts",
  );
  assert.equal(
    localPathOf("http://127.0.0.1:8080/a/b.js", "JavaScript"),
    "http/127.0.0.1_8080/a/b.js",
  );
  assert.equal(localPathOf("https://h/mod", "TypeScript"), "https/h/mod.ts");
  assert.equal(localPathOf("https://h/dir/", "JavaScript"), "https/h/dir/index.js");
  assert.match(
    localPathOf("https://h/x.js?v=2", "JavaScript"),
    /^https\/h\/x\.js\.q[0-9a-f]{8}\.js$/,
  );
  assert.equal(localPathOf("https://h/a%20b.ts", "TypeScript"), "https/h/a b.ts");
  assert.throws(
    () => localPathOf("https://h/a%2F..%2F..%2Fetc/x.ts", "TypeScript"),
    /cannot be stored/,
  );
  assert.throws(() => localPathOf("https://h/a//b.ts", "TypeScript"), /cannot be stored/);
  assert.throws(() => localPathOf("https://h/x.wasm", "Wasm"), /unsupported media type Wasm/);
  assert.throws(
    () => planLayout([module("https://h/x.ts"), module("https://h/x", [], "TypeScript")]),
    /would share the local file https\/h\/x\.ts/,
  );
});

Deno.test("relative specifiers between local copies resolve to the right file", () => {
  assert.equal(
    relativeSpecifier("https/h/a/b/mod.ts", "https/h/a/dep.ts"),
    "../dep.ts",
  );
  assert.equal(
    relativeSpecifier("https/h/mod.ts", "https/other_8443/lib/x.ts"),
    "../other_8443/lib/x.ts",
  );
  assert.equal(relativeSpecifier("https/h/mod.ts", "https/h/x y.ts"), "./x%20y.ts");
  assert.equal(relativeSpecifier("https/h/mod.ts", "https/h/it's.ts"), "./it%27s.ts");
});

Deno.test("dependencyOrder puts dependencies first and names a cycle", () => {
  const a = module("https://h/a.ts", [["./b.ts", "https://h/b.ts"], ["./c.ts", "https://h/c.ts"]]);
  const b = module("https://h/b.ts", [["./c.ts", "https://h/c.ts"]]);
  const c = module("https://h/c.ts", [["node:fs", "node:fs"]]);
  assert.deepEqual(dependencyOrder([a, b, c], a.url).map((m) => m.url), [c.url, b.url, a.url]);
  const loop = module("https://h/c.ts", [["./a.ts", "https://h/a.ts"]]);
  assert.throws(
    () => dependencyOrder([a, b, loop], a.url),
    /circular imports are not supported: https:\/\/h\/a\.ts -> https:\/\/h\/b\.ts -> https:\/\/h\/c\.ts -> https:\/\/h\/a\.ts/,
  );
});
