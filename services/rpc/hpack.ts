/**
 * HPACK (RFC 7541), as much as the broker's HTTP/2 server needs: a full
 * decoder (static and dynamic table, table size updates, Huffman strings)
 * and an encoder that writes every field as a literal without indexing and
 * without Huffman coding (valid HPACK any decoder reads, and it never
 * touches the peer's dynamic table). No I/O; internal to services/rpc.
 *
 * Header blocks arrive once per stream (an agent opens one stream per
 * connection), so the decoder is written for clarity, not speed.
 *
 * ```ts
 * const encoded = encodeHeaders([["grpc-status", "0"]]);
 * const decoder = new HpackDecoder(4096);
 * console.log(decoder.decode(encoded)); // [["grpc-status", "0"]]
 * ```
 *
 * @module
 */
import { HUFFMAN_CODES, HUFFMAN_LENGTHS, STATIC_TABLE } from "./hpack_tables.ts";

/** A header field: name (lower case) and value. */
export type HeaderField = [name: string, value: string];

/** Thrown when a header block is not valid HPACK (an HTTP/2 COMPRESSION_ERROR). */
export class HpackError extends Error {
  /** @param message what was wrong, in words */
  constructor(message: string) {
    super(`HPACK: ${message}`);
    this.name = "HpackError";
  }
}

/** Bytes an entry takes in the dynamic table (RFC 7541 §4.1). */
function entrySize(name: string, value: string): number {
  return utf8Length(name) + utf8Length(value) + 32;
}

function utf8Length(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    n += c < 0x80 ? 1 : c < 0x800 ? 2 : c >= 0xd800 && c < 0xdc00 ? (i++, 4) : 3;
  }
  return n;
}

/** Huffman decoding tree: node i's children at 2i (bit 0) and 2i+1 (bit 1); leaves hold -(symbol+1). */
const huffmanTree: Int32Array = (() => {
  // Upper bound: 257 codes of at most 30 bits.
  const tree = new Int32Array(2 * 257 * 31).fill(0);
  let next = 1;
  for (let symbol = 0; symbol < 257; symbol++) {
    const code = HUFFMAN_CODES[symbol];
    const length = HUFFMAN_LENGTHS[symbol];
    let node = 0;
    for (let bit = length - 1; bit >= 0; bit--) {
      const slot = 2 * node + ((code >>> bit) & 1);
      if (bit === 0) tree[slot] = -(symbol + 1);
      else {
        if (tree[slot] === 0) tree[slot] = next++;
        node = tree[slot];
      }
    }
  }
  return tree;
})();

const latin1 = new TextDecoder("latin1");
const utf8 = new TextDecoder();

/** Decodes a Huffman-coded string (RFC 7541 §5.2: padding of at most 7 one-bits, no EOS). */
export function huffmanDecode(bytes: Uint8Array): Uint8Array {
  const out: number[] = [];
  let node = 0;
  let depth = 0;
  let allOnes = true;
  for (const byte of bytes) {
    for (let bit = 7; bit >= 0; bit--) {
      const b = (byte >>> bit) & 1;
      const child = huffmanTree[2 * node + b];
      depth++;
      allOnes &&= b === 1;
      if (child < 0) {
        const symbol = -child - 1;
        if (symbol === 256) throw new HpackError("a Huffman string contains EOS");
        out.push(symbol);
        node = 0;
        depth = 0;
        allOnes = true;
      } else if (child === 0) {
        throw new HpackError("a Huffman string has an invalid code");
      } else node = child;
    }
  }
  if (depth > 7 || !allOnes) {
    throw new HpackError("a Huffman string ends with padding that is not at most 7 one-bits");
  }
  return Uint8Array.from(out);
}

/** Reads HPACK integers and strings from one header block. */
class Reader {
  at = 0;
  constructor(readonly bytes: Uint8Array) {}

  get done(): boolean {
    return this.at >= this.bytes.length;
  }

  /** An integer with an N-bit prefix (§5.1); the prefix byte is the current one. */
  integer(prefixBits: number): number {
    if (this.done) throw new HpackError("the header block ends inside an integer");
    const max = (1 << prefixBits) - 1;
    let value = this.bytes[this.at++] & max;
    if (value < max) return value;
    let shift = 0;
    for (;;) {
      if (this.done) throw new HpackError("the header block ends inside an integer");
      const byte = this.bytes[this.at++];
      value += (byte & 0x7f) * 2 ** shift;
      shift += 7;
      if (value > 0x7fffffff) throw new HpackError("an integer is larger than 2^31");
      if ((byte & 0x80) === 0) return value;
    }
  }

  /** A string literal (§5.2). */
  string(): string {
    if (this.done) throw new HpackError("the header block ends before a string");
    const huffman = (this.bytes[this.at] & 0x80) !== 0;
    const length = this.integer(7);
    if (this.at + length > this.bytes.length) {
      throw new HpackError(`a string of ${length} bytes runs past the end of the header block`);
    }
    const raw = this.bytes.subarray(this.at, this.at + length);
    this.at += length;
    // Header values are octets; names and ASCII values read the same either way. UTF-8
    // values (grpc-message is percent-encoded, so this is only for odd peers) stay readable.
    const bytes = huffman ? huffmanDecode(raw) : raw;
    return bytes.every((b) => b < 0x80) ? latin1.decode(bytes) : utf8.decode(bytes);
  }
}

/**
 * The decoding context of one HTTP/2 connection (its dynamic table lives as
 * long as the connection). Header blocks must be decoded in the order they
 * arrive.
 */
export class HpackDecoder {
  /** Dynamic table, newest first. */
  #table: HeaderField[] = [];
  #size = 0;
  #maxSize: number;
  readonly #limit: number;

  /** @param maxTableSize SETTINGS_HEADER_TABLE_SIZE this side announced (default 4096) */
  constructor(maxTableSize = 4096) {
    this.#maxSize = maxTableSize;
    this.#limit = maxTableSize;
  }

  /** Entries in the dynamic table (for tests). */
  get tableLength(): number {
    return this.#table.length;
  }

  /**
   * Decodes one complete header block. Throws {@linkcode HpackError} when it
   * is not valid HPACK (the connection cannot continue: its table is now
   * unknown). `maxListBytes` bounds the decoded list (names + values + 32
   * per field, as SETTINGS_MAX_HEADER_LIST_SIZE counts).
   */
  decode(block: Uint8Array, maxListBytes = Infinity): HeaderField[] {
    const reader = new Reader(block);
    const fields: HeaderField[] = [];
    let listBytes = 0;
    let fieldSeen = false;
    while (!reader.done) {
      const byte = block[reader.at];
      let field: HeaderField;
      if (byte & 0x80) {
        // Indexed header field (§6.1).
        field = this.#entry(reader.integer(7));
      } else if (byte & 0x40) {
        // Literal with incremental indexing (§6.2.1).
        field = this.#literal(reader, 6);
        this.#add(field);
      } else if (byte & 0x20) {
        // Dynamic table size update (§6.3): only at the start of a block.
        if (fieldSeen) {
          throw new HpackError("a dynamic table size update after a header field");
        }
        const size = reader.integer(5);
        if (size > this.#limit) {
          throw new HpackError(
            `a dynamic table size update to ${size} exceeds the announced ${this.#limit}`,
          );
        }
        this.#maxSize = size;
        this.#evict(0);
        continue;
      } else {
        // Literal without indexing (0000) or never indexed (0001) (§6.2.2, §6.2.3).
        field = this.#literal(reader, 4);
      }
      fieldSeen = true;
      listBytes += field[0].length + field[1].length + 32;
      if (listBytes > maxListBytes) {
        throw new HpackError(`the header list is larger than ${maxListBytes} bytes`);
      }
      fields.push(field);
    }
    return fields;
  }

  #literal(reader: Reader, prefixBits: number): HeaderField {
    const index = reader.integer(prefixBits);
    const name = index === 0 ? reader.string() : this.#entry(index)[0];
    return [name, reader.string()];
  }

  #entry(index: number): HeaderField {
    if (index === 0) throw new HpackError("index 0 is not a table entry");
    if (index < STATIC_TABLE.length) {
      const [name, value] = STATIC_TABLE[index];
      return [name, value];
    }
    const entry = this.#table[index - STATIC_TABLE.length];
    if (!entry) {
      throw new HpackError(
        `index ${index} is past the table (${
          STATIC_TABLE.length - 1
        } static + ${this.#table.length} dynamic entries)`,
      );
    }
    return [entry[0], entry[1]];
  }

  #add(field: HeaderField) {
    const size = entrySize(field[0], field[1]);
    this.#evict(size);
    // An entry larger than the table empties it and is not added (§4.4).
    if (size > this.#maxSize) return;
    this.#table.unshift(field);
    this.#size += size;
  }

  /** Evicts oldest entries until `room` more bytes fit. */
  #evict(room: number) {
    while (this.#table.length > 0 && this.#size + room > this.#maxSize) {
      const [name, value] = this.#table.pop()!;
      this.#size -= entrySize(name, value);
    }
  }
}

/** Static-table index of names the server sends (a literal may name its field by index). */
const STATIC_NAME_INDEX = new Map<string, number>();
for (let i = STATIC_TABLE.length - 1; i >= 1; i--) STATIC_NAME_INDEX.set(STATIC_TABLE[i][0], i);

const encoder = new TextEncoder();

function pushInteger(out: number[], value: number, prefixBits: number, firstByte: number) {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(firstByte | value);
    return;
  }
  out.push(firstByte | max);
  value -= max;
  while (value >= 0x80) {
    out.push((value & 0x7f) | 0x80);
    value = Math.floor(value / 0x80);
  }
  out.push(value);
}

/**
 * Encodes header fields as literals without indexing (§6.2.2), no Huffman;
 * `:status: 200` as its static entry. Names must be lower case.
 */
export function encodeHeaders(fields: ReadonlyArray<readonly [string, string]>): Uint8Array {
  const out: number[] = [];
  for (const [name, value] of fields) {
    if (name === ":status" && value === "200") {
      out.push(0x88); // static entry 8
      continue;
    }
    const index = STATIC_NAME_INDEX.get(name);
    if (index !== undefined) pushInteger(out, index, 4, 0x00);
    else {
      out.push(0x00);
      const nameBytes = encoder.encode(name);
      pushInteger(out, nameBytes.length, 7, 0x00);
      for (const b of nameBytes) out.push(b);
    }
    const valueBytes = encoder.encode(value);
    pushInteger(out, valueBytes.length, 7, 0x00);
    for (const b of valueBytes) out.push(b);
  }
  return Uint8Array.from(out);
}
