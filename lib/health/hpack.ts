/**
 * HPACK (RFC 7541), the header compression of HTTP/2, for the balancer's health probe
 * (`lib/health/health_probe.ts`): a complete decoder (static and dynamic table, Huffman strings, table
 * size updates), and the one representation the probe sends (literal without indexing, so it
 * keeps no encoder state).
 *
 * The decoder takes a whole header block (HEADERS plus its CONTINUATIONs) and calls back per
 * field; a malformed block throws {@linkcode HpackError}, which HTTP/2 makes a connection error
 * (COMPRESSION_ERROR): the caller drops the connection, since the table is then out of step.
 *
 * @module
 */
import { Buffer } from "node:buffer";

/** A header block that does not decode (a COMPRESSION_ERROR in HTTP/2). */
export class HpackError extends Error {
  override name = "HpackError";
}

/** The static table (RFC 7541 Appendix A), index 1 first. */
const STATIC_TABLE: readonly (readonly [string, string])[] = [
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"],
  ["accept-language", ""],
  ["accept-ranges", ""],
  ["accept", ""],
  ["access-control-allow-origin", ""],
  ["age", ""],
  ["allow", ""],
  ["authorization", ""],
  ["cache-control", ""],
  ["content-disposition", ""],
  ["content-encoding", ""],
  ["content-language", ""],
  ["content-length", ""],
  ["content-location", ""],
  ["content-range", ""],
  ["content-type", ""],
  ["cookie", ""],
  ["date", ""],
  ["etag", ""],
  ["expect", ""],
  ["expires", ""],
  ["from", ""],
  ["host", ""],
  ["if-match", ""],
  ["if-modified-since", ""],
  ["if-none-match", ""],
  ["if-range", ""],
  ["if-unmodified-since", ""],
  ["last-modified", ""],
  ["link", ""],
  ["location", ""],
  ["max-forwards", ""],
  ["proxy-authenticate", ""],
  ["proxy-authorization", ""],
  ["range", ""],
  ["referer", ""],
  ["refresh", ""],
  ["retry-after", ""],
  ["server", ""],
  ["set-cookie", ""],
  ["strict-transport-security", ""],
  ["transfer-encoding", ""],
  ["user-agent", ""],
  ["vary", ""],
  ["via", ""],
  ["www-authenticate", ""],
];

/**
 * Bit lengths of the Huffman code of each octet 0-255, then of EOS (RFC 7541 Appendix B). The
 * code is canonical: sorted by (length, symbol), each code is the previous one plus one,
 * shifted left when the length grows. So the lengths define it, and {@linkcode HUFFMAN}
 * rebuilds the codes (tests/hpack_test.ts checks them against the RFC's examples).
 */
// deno-fmt-ignore
const HUFFMAN_LENGTHS = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
  30,
];
const EOS = 256;
const MAX_CODE_BITS = 30;

/**
 * The canonical decoding tables: per length L, the first code of that length (`first[L]`), how
 * many codes have it (`count[L]`), and where its symbols start in `symbols` (`offset[L]`).
 */
const HUFFMAN = (() => {
  const count = new Uint16Array(MAX_CODE_BITS + 1);
  for (const length of HUFFMAN_LENGTHS) count[length]++;
  const symbols = HUFFMAN_LENGTHS.map((length, symbol) => ({ length, symbol }))
    .sort((a, b) => a.length - b.length || a.symbol - b.symbol)
    .map((entry) => entry.symbol);
  const first = new Uint32Array(MAX_CODE_BITS + 1);
  const offset = new Uint16Array(MAX_CODE_BITS + 1);
  let code = 0;
  let index = 0;
  for (let length = 1; length <= MAX_CODE_BITS; length++) {
    first[length] = code;
    offset[length] = index;
    code = (code + count[length]) * 2;
    index += count[length];
  }
  return { count, first, offset, symbols: Uint16Array.from(symbols) };
})();

/** The Huffman code of each symbol (for tests), as `[code, bits]`. */
export function huffmanCode(symbol: number): [number, number] {
  const length = HUFFMAN_LENGTHS[symbol];
  const rank = HUFFMAN.symbols.indexOf(symbol) - HUFFMAN.offset[length];
  return [HUFFMAN.first[length] + rank, length];
}

/** Room a dynamic table entry takes (RFC 7541 §4.1). */
function entrySize(name: string, value: string): number {
  return name.length + value.length + 32;
}

/** Decodes header blocks of one HTTP/2 connection (one decoder per connection). */
export class HpackDecoder {
  /** Newest entry last. */
  #dynamic: [string, string][] = [];
  #size = 0;
  /** Largest size the peer may set (our SETTINGS_HEADER_TABLE_SIZE in force). */
  #limit: number;
  /** The size the peer set last (at most `#limit`). */
  #maxSize: number;
  #scratch = new Uint8Array(256);
  /** Where {@linkcode decode} reads next in its block. */
  #at = 0;

  /** A decoder whose peer may use a table of up to `limit` octets (4,096 by default). */
  constructor(limit = 4_096) {
    this.#limit = limit;
    this.#maxSize = limit;
  }

  /**
   * Our SETTINGS_HEADER_TABLE_SIZE is now in force (the peer acknowledged it): the peer may use
   * at most `limit` octets, and the table shrinks to that at once.
   */
  setLimit(limit: number): void {
    this.#limit = limit;
    if (this.#maxSize > limit) {
      this.#maxSize = limit;
      this.#evict(0);
    }
  }

  /** Entries in the dynamic table (for tests). */
  get tableLength(): number {
    return this.#dynamic.length;
  }

  /** Calls `onField` per header field of `block`, in order. Throws {@linkcode HpackError}. */
  decode(block: Uint8Array, onField: (name: string, value: string) => void): void {
    // The offset read next: a field rather than returned pairs, so that decoding a block of
    // fields seen before allocates nothing (see INTERNED).
    this.#at = 0;
    let fields = 0;
    while (this.#at < block.length) {
      const byte = block[this.#at];
      if (byte & 0x80) {
        // Indexed header field (§6.1).
        const entry = this.#entry(this.#readInteger(block, 7));
        onField(entry[0], entry[1]);
      } else if (byte & 0x40 || (byte & 0xe0) === 0x00) {
        // Literal with incremental indexing (§6.2.1: 6-bit prefix), without indexing (§6.2.2:
        // 0000, 4-bit) or never indexed (§6.2.3: 0001, 4-bit).
        const indexing = (byte & 0x40) !== 0;
        const index = this.#readInteger(block, indexing ? 6 : 4);
        const name = index === 0 ? this.#readString(block) : this.#entry(index)[0];
        const value = this.#readString(block);
        if (indexing) this.#insert(name, value);
        onField(name, value);
      } else {
        // Dynamic table size update (§6.3: 001, 5-bit); only at the start of a block (§4.2).
        if (fields > 0) throw new HpackError("a table size update after a header field");
        const size = this.#readInteger(block, 5);
        if (size > this.#limit) {
          throw new HpackError(`a table size update to ${size}, over the ${this.#limit} allowed`);
        }
        this.#maxSize = size;
        this.#evict(0);
        continue;
      }
      fields++;
    }
  }

  #entry(index: number): readonly [string, string] {
    if (index === 0) throw new HpackError("header field index 0");
    if (index <= STATIC_TABLE.length) return STATIC_TABLE[index - 1];
    const entry = this.#dynamic[this.#dynamic.length - (index - STATIC_TABLE.length)];
    if (entry === undefined) {
      throw new HpackError(`header field index ${index} is not in the table`);
    }
    return entry;
  }

  #insert(name: string, value: string): void {
    const size = entrySize(name, value);
    this.#evict(size);
    // An entry larger than the table empties it and is not added (§4.4).
    if (size <= this.#maxSize) {
      this.#dynamic.push([name, value]);
      this.#size += size;
    }
  }

  /** Evicts the oldest entries until `room` more octets fit. */
  #evict(room: number): void {
    let drop = 0;
    while (this.#size + room > this.#maxSize && drop < this.#dynamic.length) {
      const [name, value] = this.#dynamic[drop++];
      this.#size -= entrySize(name, value);
    }
    if (drop > 0) this.#dynamic.splice(0, drop);
  }

  /** The string literal (§5.2) at `#at`, as text (octets as Latin-1); `#at` moves past it. */
  #readString(block: Uint8Array): string {
    if (this.#at >= block.length) throw new HpackError("the block ends before a string");
    const huffman = (block[this.#at] & 0x80) !== 0;
    const length = this.#readInteger(block, 7);
    const start = this.#at;
    const end = start + length;
    if (end > block.length) throw new HpackError("a string runs past the end of the block");
    this.#at = end;
    return huffman ? this.#huffmanDecode(block, start, end) : latin1(block, start, end);
  }

  /** The integer with a `prefixBits`-bit prefix (§5.1) at `#at`; `#at` moves past it. */
  #readInteger(block: Uint8Array, prefixBits: number): number {
    let at = this.#at;
    if (at >= block.length) throw new HpackError("the block ends before an integer");
    const mask = (1 << prefixBits) - 1;
    let value = block[at++] & mask;
    if (value === mask) {
      let shift = 0;
      for (;;) {
        if (at >= block.length) throw new HpackError("the block ends inside an integer");
        const byte = block[at++];
        value += (byte & 0x7f) * 2 ** shift;
        shift += 7;
        if ((byte & 0x80) === 0) break;
        // Header blocks here are bounded far below 2^28; a longer integer is malformed.
        if (shift > 28) throw new HpackError("an integer too large");
      }
    }
    this.#at = at;
    return value;
  }

  #huffmanDecode(block: Uint8Array, start: number, end: number): string {
    // Each symbol takes at least 5 bits, so the text is at most 8/5 of the octets.
    const most = Math.ceil(((end - start) * 8) / 5);
    if (this.#scratch.length < most) this.#scratch = new Uint8Array(most);
    const out = this.#scratch;
    let written = 0;
    let code = 0;
    let length = 0;
    for (let i = start; i < end; i++) {
      const byte = block[i];
      for (let bit = 7; bit >= 0; bit--) {
        code = code * 2 + ((byte >> bit) & 1);
        length++;
        const rank = code - HUFFMAN.first[length];
        if (rank >= 0 && rank < HUFFMAN.count[length]) {
          const symbol = HUFFMAN.symbols[HUFFMAN.offset[length] + rank];
          if (symbol === EOS) throw new HpackError("a Huffman string holds EOS");
          out[written++] = symbol;
          code = 0;
          length = 0;
        } else if (length >= MAX_CODE_BITS) {
          throw new HpackError("an invalid Huffman code");
        }
      }
    }
    // Padding (§5.2): fewer than 8 bits, all ones (the start of EOS).
    if (length > 7 || code !== (1 << length) - 1) {
      throw new HpackError("a Huffman string with invalid padding");
    }
    return latin1(out, 0, written);
  }
}

/**
 * Strings decoded recently, by a hash of their octets. A probe's answers repeat the same few
 * header fields on every connection (its SETTINGS turn the dynamic table off, so each answer
 * spells them out), and decoding them into new strings at 1,000 answers a second was the
 * balancer's largest source of garbage at 1,000 servers (docs/DEVELOPING.md). A string found
 * here is returned as it is: decoding allocates nothing for it.
 */
const INTERNED = new Array<string | undefined>(512).fill(undefined);
/** Longer strings are not interned (`grpc-message` texts, mostly: rare, and varied). */
const MAX_INTERNED = 64;

/** The octets `bytes[start..end)` as Latin-1 text, a string seen before if it was interned. */
function latin1(bytes: Uint8Array, start: number, end: number): string {
  const length = end - start;
  if (length > MAX_INTERNED) return latin1Text(bytes, start, end);
  let hash = 0x811c9dc5; // FNV-1a
  for (let i = start; i < end; i++) hash = Math.imul(hash ^ bytes[i], 0x01000193);
  const slot = (hash >>> 0) & (INTERNED.length - 1);
  const seen = INTERNED[slot];
  if (seen !== undefined && seen.length === length) {
    let i = 0;
    while (i < length && seen.charCodeAt(i) === bytes[start + i]) i++;
    if (i === length) return seen;
  }
  const text = latin1Text(bytes, start, end);
  INTERNED[slot] = text;
  return text;
}

function latin1Text(bytes: Uint8Array, start: number, end: number): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset + start, end - start).toString("latin1");
}

/** Octets of an integer with a `prefixBits`-bit prefix whose other bits are `flags` (§5.1). */
export function encodeInteger(value: number, prefixBits: number, flags = 0): number[] {
  const mask = (1 << prefixBits) - 1;
  if (value < mask) return [flags | value];
  const out = [flags | mask];
  value -= mask;
  while (value >= 0x80) {
    out.push((value % 0x80) | 0x80);
    value = Math.floor(value / 0x80);
  }
  out.push(value);
  return out;
}

/** A string literal, not Huffman-coded (§5.2); ASCII only (what the probe sends). */
function encodeString(text: string): number[] {
  const out = encodeInteger(text.length, 7);
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code > 0x7f) throw new RangeError(`Cannot send '${text}' in a header: not ASCII`);
    out.push(code);
  }
  return out;
}

/** The static table index of the name `name` (first match), or 0. */
function staticNameIndex(name: string): number {
  return STATIC_TABLE.findIndex(([entryName]) => entryName === name) + 1;
}

/**
 * A header field as a literal without indexing (§6.2.2): the decoder keeps nothing, so the
 * sender needs no table of its own. An exact static table match (name and value) is sent as its
 * index instead (§6.1), which also keeps no state.
 */
export function encodeField(name: string, value: string): number[] {
  const exact = STATIC_TABLE.findIndex(([n, v]) => n === name && v === value) + 1;
  if (exact > 0 && value !== "") return encodeInteger(exact, 7, 0x80);
  const nameIndex = staticNameIndex(name);
  if (nameIndex > 0) return [...encodeInteger(nameIndex, 4), ...encodeString(value)];
  return [0x00, ...encodeString(name), ...encodeString(value)];
}
