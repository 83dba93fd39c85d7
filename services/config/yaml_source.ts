/**
 * A YAML document parsed with source positions (npm:yaml `parseDocument` and
 * `LineCounter`): its plain value, its syntax errors as {@linkcode ConfigIssue}s,
 * and the line and column of any key path such as `agents.default.plugins[1].name`,
 * so that issues found on the plain value can name where they are.
 *
 * @module
 */
import {
  isAlias,
  isMap,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  type Pair,
  parseDocument,
  type Scalar,
  type YAMLMap,
} from "yaml";
import { type ConfigIssue, describeValue } from "./issues.ts";

/**
 * Most levels of nested mappings and lists in a document. A monitor.yaml needs
 * a handful; the limit keeps every recursive step (parsing, conversion,
 * validation) far from the stack's end.
 */
export const MAX_NESTING_DEPTH = 64;

/** Most alias expansions in one document (guards against "billion laughs"). */
const MAX_ALIAS_COUNT = 100;

/** Where an issue points at: the key of the entry or its value. */
export type IssueAnchor = "key" | "value";

/** A parsed YAML text. */
export interface YamlSource {
  /** The plain value (`undefined` when the text has syntax errors or is empty). */
  value: unknown;
  /** Syntax errors with their positions (empty when the text parsed). */
  syntaxIssues: ConfigIssue[];
  /**
   * Line and column (1-based) of the node at `path`. For a path that does not
   * exist (a missing key) the key of its deepest existing ancestor is given.
   * @param path dotted key path, `[n]` for list items
   * @param anchor point at the entry's key (unknown keys) or its value (default)
   */
  locate(path: string, anchor?: IssueAnchor): { line: number; column: number } | undefined;
}

interface Found {
  /** Deepest node reached. */
  node: Node | null | undefined;
  /** Key node of the map entry that holds `node`, when it is a map value. */
  key?: Node;
  /** True when the whole path was walked. */
  complete: boolean;
}

function keyText(key: unknown): string | undefined {
  if (isScalar(key)) return String((key as Scalar).value);
  return undefined;
}

/**
 * Parses YAML text keeping positions.
 * @param text the document
 */
export function parseYamlSource(text: string): YamlSource {
  const lineCounter = new LineCounter();
  // Duplicate keys are found by checkStructure in one pass (yaml's uniqueKeys compares each key
  // with every earlier one: quadratic in the size of a mapping).
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: false });
  const position = (offset: number) => {
    const { line, col } = lineCounter.linePos(offset);
    return { line, column: col };
  };

  const resolve = (node: unknown): Node | null | undefined => {
    let current = node;
    for (let i = 0; i < 32 && isAlias(current); i++) current = current.resolve(doc);
    return current as Node | null | undefined;
  };

  const walk = (path: string): Found => {
    let node = resolve(doc.contents);
    let key: Node | undefined;
    let rest = path;
    while (rest !== "") {
      if (rest.startsWith("[")) {
        const match = /^\[(\d+)\]\.?/.exec(rest);
        if (!match || !isSeq(node)) return { node, key, complete: false };
        const item = node.items[Number(match[1])];
        if (item === undefined) return { node, key, complete: false };
        node = resolve(item);
        key = undefined;
        rest = rest.slice(match[0].length);
        continue;
      }
      if (!isMap(node)) return { node, key, complete: false };
      // Keys may contain dots ("plugins.duplicate_filter.DuplicateFilterPlugin"): longest match,
      // looked up by each prefix of the path that ends before a "." or "[" (no scan of the map).
      const index = keyIndex(node);
      let best: { key: Node; value: unknown; length: number } | undefined;
      for (let end = rest.length; end > 0; end--) {
        const next = rest.charAt(end);
        if (next !== "" && next !== "." && next !== "[") continue;
        const pair = index.get(rest.slice(0, end));
        if (pair) {
          best = { key: pair.key as Node, value: pair.value, length: end };
          break;
        }
      }
      if (!best) return { node, key, complete: false };
      key = best.key;
      node = resolve(best.value);
      rest = rest.slice(best.length);
      if (rest.startsWith(".")) rest = rest.slice(1);
    }
    return { node, key, complete: true };
  };

  const locate = (path: string, anchor: IssueAnchor = "value") => {
    const found = walk(path);
    const keyRange = found.key?.range;
    const nodeRange = found.node?.range;
    if (found.complete && anchor === "value" && nodeRange && hasExtent(found.node, nodeRange)) {
      return position(nodeRange[0]);
    }
    if (keyRange) return position(keyRange[0]);
    if (nodeRange) return position(nodeRange[0]);
    return undefined;
  };

  const structure = checkStructure(doc.contents);
  if (structure.tooDeep) {
    // Deeper documents may have overflowed the parser's stack: that error says nothing useful.
    const { path, node } = structure.tooDeep;
    const range = node.range;
    return {
      value: undefined,
      syntaxIssues: [{
        path,
        expected: `at most ${MAX_NESTING_DEPTH} levels of nested mappings and lists`,
        found: "deeper nesting",
        ...(range ? position(range[0]) : { line: 1, column: 1 }),
      }],
      locate,
    };
  }
  const syntaxIssues: ConfigIssue[] = doc.errors.map((error) => {
    if (error.code === "MULTIPLE_DOCS") {
      return {
        path: "",
        expected: "one YAML document",
        found: "a second document (after ---)",
        ...position(error.pos[0]),
      };
    }
    const firstLine = error.message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "");
    return {
      path: pathAt(doc.contents, error.pos[0], resolve),
      expected: "valid YAML",
      found: firstLine.replace(/\.$/, ""),
      ...position(error.pos[0]),
    };
  });

  const duplicates = structure.duplicates.sort((a, b) =>
    (a.key.range?.[0] ?? 0) - (b.key.range?.[0] ?? 0)
  );
  for (const { path, key, first } of duplicates) {
    const where = key.range ? position(key.range[0]) : undefined;
    const firstAt = first.range ? position(first.range[0]) : undefined;
    syntaxIssues.push({
      path,
      expected: "each key once in a mapping",
      found: `${JSON.stringify(keyText(key))} again${
        firstAt ? ` (first at line ${firstAt.line})` : ""
      }`,
      ...where,
    });
  }
  let value: unknown;
  if (syntaxIssues.length === 0) {
    try {
      value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
    } catch (error) {
      syntaxIssues.push({
        path: "",
        expected: `a YAML document with at most ${MAX_ALIAS_COUNT} alias expansions`,
        found: describeError(error),
        line: 1,
        column: 1,
      });
    }
  }
  return { value, syntaxIssues, locate };
}

interface Structure {
  /** The first node nested deeper than {@linkcode MAX_NESTING_DEPTH}, with its path. */
  tooDeep?: { path: string; node: Node };
  /** Keys that repeat an earlier key of the same mapping. */
  duplicates: { path: string; key: Node; first: Node }[];
}

/**
 * One iterative pass over the parsed tree (no recursion, so any depth is
 * safe): nesting depth and duplicate keys, building each mapping's key index
 * on the way. Aliases are not followed (their targets are walked where they are).
 */
function checkStructure(root: unknown): Structure {
  const duplicates: Structure["duplicates"] = [];
  const stack: { node: unknown; path: string; depth: number }[] = [{
    node: root,
    path: "",
    depth: 1,
  }];
  while (stack.length > 0) {
    const { node, path, depth } = stack.pop()!;
    if (!isMap(node) && !isSeq(node)) continue;
    if (depth > MAX_NESTING_DEPTH) return { tooDeep: { path, node: node as Node }, duplicates };
    if (isSeq(node)) {
      node.items.forEach((item, i) =>
        stack.push({ node: item, path: `${path}[${i}]`, depth: depth + 1 })
      );
      continue;
    }
    const index = new Map<string, Pair>();
    for (const pair of node.items) {
      if (!isPair(pair)) continue;
      const k = keyText(pair.key);
      const childPath = k === undefined ? path : path ? `${path}.${k}` : k;
      if (k !== undefined) {
        const first = index.get(k);
        if (first) {
          duplicates.push({ path: childPath, key: pair.key as Node, first: first.key as Node });
        } else index.set(k, pair);
      }
      stack.push({ node: pair.value, path: childPath, depth: depth + 1 });
    }
    keyIndexes.set(node, index);
  }
  return { duplicates };
}

const keyIndexes = new WeakMap<object, Map<string, Pair>>();

/** The entries of a mapping by key text (the first of duplicates), built once per mapping. */
function keyIndex(map: YAMLMap): Map<string, Pair> {
  let index = keyIndexes.get(map);
  if (!index) {
    index = new Map();
    for (const pair of map.items) {
      if (!isPair(pair)) continue;
      const k = keyText(pair.key);
      if (k !== undefined && !index.has(k)) index.set(k, pair);
    }
    keyIndexes.set(map, index);
  }
  return index;
}

/** An empty value (`key:` with nothing after it) has no extent; its key is a better place. */
function hasExtent(node: Node | null | undefined, range: [number, number, number]): boolean {
  if (node === null || node === undefined) return false;
  if (isScalar(node) && node.value === null) return range[1] > range[0];
  return true;
}

function describeError(error: unknown): string {
  return error instanceof Error ? error.message : describeValue(error);
}

/** Key path of the innermost entry whose source covers `offset` (for syntax errors). */
function pathAt(
  root: unknown,
  offset: number,
  resolve: (node: unknown) => Node | null | undefined,
): string {
  let path = "";
  let node = resolve(root);
  for (let depth = 0; depth < 64; depth++) {
    let next: Node | null | undefined;
    if (isMap(node)) {
      // The last entry starting before the offset (an empty value's extent ends at its key).
      let entry: { key: string; value: unknown } | undefined;
      for (const pair of node.items) {
        if (!isPair(pair)) continue;
        const k = keyText(pair.key);
        const start = (pair.key as Node | null)?.range?.[0];
        if (k === undefined || start === undefined || start > offset) continue;
        entry = { key: k, value: pair.value };
      }
      if (entry) {
        path = path ? `${path}.${entry.key}` : entry.key;
        next = resolve(entry.value);
      }
    } else if (isSeq(node)) {
      node.items.forEach((item, i) => {
        const range = (item as Node | null)?.range;
        if (!next && range && offset >= range[0] && offset <= range[2]) {
          path = `${path}[${i}]`;
          next = resolve(item);
        }
      });
    }
    if (!next) break;
    node = next;
  }
  return path;
}
