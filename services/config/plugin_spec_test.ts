import assert from "node:assert/strict";
import { ConfigError } from "./issues.ts";
import { decodePin } from "../plugin_loader/pin_codec.ts";
import { isNetPermission, parsePluginsSection, versionFromUrl } from "./plugin_spec.ts";

Deno.test("versionFromUrl reads name@version segments and v-prefixed folders", () => {
  assert.equal(versionFromUrl("https://example.com/spike@1.2.0/mod.ts"), "1.2.0");
  assert.equal(
    versionFromUrl("https://example.com/x/spike@v2.0.0-beta.1/src/mod.ts"),
    "v2.0.0-beta.1",
  );
  assert.equal(versionFromUrl("https://example.com/spike/v1.4.2/mod.ts"), "v1.4.2");
  assert.equal(versionFromUrl("https://example.com/%40scope/pkg@3.1.0/mod.ts"), "3.1.0");
  assert.equal(versionFromUrl("https://example.com/spike/mod.ts"), undefined);
  assert.equal(versionFromUrl("https://example.com/spike@latest/mod.ts"), undefined);
  assert.equal(versionFromUrl("not a url"), undefined);
});

Deno.test("net permissions are hosts with an optional port", () => {
  for (
    const ok of [
      "api.example.com",
      "api.example.com:443",
      "127.0.0.1:8080",
      "[::1]:80",
      "localhost",
    ]
  ) {
    assert.ok(isNetPermission(ok), ok);
  }
  for (const bad of ["http://x", "x:99999", "*.example.com", "", "a b", "x:"]) {
    assert.ok(!isNetPermission(bad), bad);
  }
});

Deno.test("parsePluginsSection accepts the documented form and reports every mistake with its key", () => {
  const specs = parsePluginsSection({
    spike: {
      url: "https://plugins.example.com/spike@1.2.0/mod.ts",
      permissions: { net: ["api.example.com"], read: "/var/log/app", env: ["B", "A", "A"] },
      config: { factor: 3 },
    },
    local: { url: "file:///opt/plugins/local/mod.ts", version: 7 },
  });
  assert.deepEqual(specs.get("spike"), {
    url: "https://plugins.example.com/spike@1.2.0/mod.ts",
    permissions: { net: ["api.example.com"], read: ["/var/log/app"], env: ["A", "B"] },
    config: { factor: 3 },
  });
  assert.equal(specs.get("local")?.version, "7");

  const error = (() => {
    try {
      parsePluginsSection({
        "bad name!": { url: "https://h/x@1.0.0/mod.ts" },
        a: "https://h/x@1.0.0/mod.ts",
        b: { url: "https://h/mod.ts" },
        c: { url: "https://h/x@1.0.0/mod.ts", perms: {} },
      }, "monitor.yaml");
    } catch (e) {
      return e;
    }
  })();
  assert.ok(error instanceof ConfigError);
  const lines = error.message.split("\n");
  assert.equal(lines.length, 4, error.message);
  assert.match(lines[0], /^monitor\.yaml: plugins\.bad name!: expected a plugin name/);
  assert.match(lines[1], /^monitor\.yaml: plugins\.a: expected a mapping with url/);
  assert.match(lines[2], /^monitor\.yaml: plugins\.b\.version: expected a version/);
  assert.match(
    lines[3],
    /^monitor\.yaml: plugins\.c\.perms: expected one of url, version, permissions, config/,
  );
});

Deno.test("decodePin names the key and the field of a damaged pin", () => {
  assert.throws(
    () => decodePin("{nope", "/monitor/plugins/x"),
    (e: Error) =>
      e instanceof ConfigError &&
      /^\/monitor\/plugins\/x: \(top level\): expected a JSON plugin pin/.test(e.message),
  );
  assert.throws(
    () =>
      decodePin(
        JSON.stringify({
          format: 1,
          name: "x",
          url: "https://h/x@1/m.ts",
          entry: "https://h/x@1/m.ts",
          version: "1",
        }),
        "/monitor/plugins/x",
      ),
    (e: Error) =>
      e instanceof ConfigError &&
      /\/monitor\/plugins\/x: integrity: expected a sha256-<base64>/.test(e.message) &&
      /modules: expected a non-empty list/.test(e.message),
  );
});
