import assert from "node:assert/strict";
import { chooseGroup, DEFAULT_GROUP, INTERACTIVE_GROUP_PREFIX } from "./group.ts";

Deno.test("analysis group: supervised and headless share the default; interactive gets its own; --group wins", () => {
  const unique = () => "c0ffee00";
  assert.deepEqual(chooseGroup({ supervised: true, interactive: false }, unique), {
    group: DEFAULT_GROUP,
    own: false,
  });
  assert.deepEqual(chooseGroup({ supervised: false, interactive: false }, unique), {
    group: DEFAULT_GROUP,
    own: false,
  });
  assert.deepEqual(chooseGroup({ supervised: false, interactive: true }, unique), {
    group: `${INTERACTIVE_GROUP_PREFIX}c0ffee00`,
    own: true,
  });
  assert.deepEqual(
    chooseGroup({ configured: "ops", supervised: false, interactive: true }, unique),
    { group: "ops", own: false },
  );
  // Two interactive analyses never share a group by default.
  const a = chooseGroup({ supervised: false, interactive: true }).group;
  const b = chooseGroup({ supervised: false, interactive: true }).group;
  assert.notEqual(a, b);
});
