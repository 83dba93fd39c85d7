import assert from "node:assert/strict";
import { didYouMean, MAX_SUGGESTION_CANDIDATES, MAX_SUGGESTION_LENGTH, someOf } from "./issues.ts";

Deno.test("didYouMean: the closest candidate within 2 edits, with bounded work per call", () => {
  assert.equal(didYouMean("intervall", ["metrics", "interval"]), "interval");
  assert.equal(didYouMean("LOG_LEVL", ["log_level"]), "log_level");
  assert.equal(didYouMean("zzz", ["interval"]), undefined);
  // Only the first candidates are compared, and very long words get no suggestion.
  const many = Array.from({ length: MAX_SUGGESTION_CANDIDATES }, (_, i) => `name-${i}-x`);
  assert.equal(didYouMean("target", [...many, "targets"]), undefined);
  assert.equal(didYouMean("target", ["targets", ...many]), "targets");
  const long = "k".repeat(MAX_SUGGESTION_LENGTH + 1);
  assert.equal(didYouMean(long, [long + "x"]), undefined);
});

Deno.test("someOf: lists at most a few names and counts the rest", () => {
  assert.equal(someOf(["a", "b"]), "a, b");
  assert.equal(someOf(["a", "b", "c"], 2), "a, b and 1 more");
});
