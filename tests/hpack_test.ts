/**
 * HPACK (`lib/health/hpack.ts`) against RFC 7541's own examples (Appendix C), its Huffman table, and
 * malformed blocks.
 */
import assert from "node:assert/strict";
import {
  encodeField,
  encodeInteger,
  HpackDecoder,
  HpackError,
  huffmanCode,
} from "../lib/health/hpack.ts";

const hex = (text: string) => Uint8Array.from(text.match(/../g)!.map((h) => parseInt(h, 16)));

function decodeAll(decoder: HpackDecoder, block: Uint8Array): [string, string][] {
  const fields: [string, string][] = [];
  decoder.decode(block, (name, value) => fields.push([name, value]));
  return fields;
}

Deno.test("the Huffman code rebuilt from the lengths matches RFC 7541 Appendix B", () => {
  assert.deepEqual(huffmanCode(0), [0x1ff8, 13]);
  assert.deepEqual(huffmanCode(" ".charCodeAt(0)), [0x14, 6]);
  assert.deepEqual(huffmanCode("0".charCodeAt(0)), [0x0, 5]);
  assert.deepEqual(huffmanCode("a".charCodeAt(0)), [0x3, 5]);
  assert.deepEqual(huffmanCode("t".charCodeAt(0)), [0x9, 5]);
  assert.deepEqual(huffmanCode("~".charCodeAt(0)), [0x1ffd, 13]);
  assert.deepEqual(huffmanCode(255), [0x3ffffee, 26]);
  assert.deepEqual(huffmanCode(256), [0x3fffffff, 30]); // EOS
});

Deno.test("integers are encoded as RFC 7541 C.1 shows", () => {
  assert.deepEqual(encodeInteger(10, 5), [0x0a]);
  assert.deepEqual(encodeInteger(1337, 5), [0x1f, 0x9a, 0x0a]);
  assert.deepEqual(encodeInteger(42, 8), [0x2a]);
});

Deno.test("requests of RFC 7541 C.4 (Huffman, dynamic table) decode in order", () => {
  const decoder = new HpackDecoder();
  assert.deepEqual(decodeAll(decoder, hex("828684418cf1e3c2e5f23a6ba0ab90f4ff")), [
    [":method", "GET"],
    [":scheme", "http"],
    [":path", "/"],
    [":authority", "www.example.com"],
  ]);
  assert.equal(decoder.tableLength, 1);
  assert.deepEqual(decodeAll(decoder, hex("828684be5886a8eb10649cbf")), [
    [":method", "GET"],
    [":scheme", "http"],
    [":path", "/"],
    [":authority", "www.example.com"],
    ["cache-control", "no-cache"],
  ]);
  assert.deepEqual(
    decodeAll(decoder, hex("828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf")),
    [
      [":method", "GET"],
      [":scheme", "https"],
      [":path", "/index.html"],
      [":authority", "www.example.com"],
      ["custom-key", "custom-value"],
    ],
  );
  assert.equal(decoder.tableLength, 3);
});

Deno.test("the table evicts the oldest entries past its size, and a size update shrinks it", () => {
  // Each entry below is 32 + 1 + 1 = 34 octets: a table of 80 holds two.
  const decoder = new HpackDecoder(80);
  const field = (name: string) => [0x40, 1, name.charCodeAt(0), 1, 0x76];
  decodeAll(decoder, Uint8Array.from([...field("a"), ...field("b"), ...field("c")]));
  assert.equal(decoder.tableLength, 2);
  // Index 62 is the newest (c), 63 the one before (b); a is gone.
  assert.deepEqual(decodeAll(decoder, Uint8Array.from([0xbe, 0xbf])), [["c", "v"], ["b", "v"]]);
  assert.throws(() => decodeAll(decoder, Uint8Array.from([0xc0])), HpackError);
  decodeAll(decoder, Uint8Array.from([0x20])); // size update to 0
  assert.equal(decoder.tableLength, 0);
});

Deno.test("what the probe sends decodes back to the same fields", () => {
  const fields: [string, string][] = [
    [":method", "POST"],
    [":scheme", "https"],
    [":path", "/grpc.health.v1.Health/Check"],
    [":authority", "127.0.0.1:50051"],
    ["content-type", "application/grpc"],
    ["te", "trailers"],
    ["grpc-timeout", "500m"],
    ["x-long", "v".repeat(300)],
  ];
  const block = Uint8Array.from(fields.flatMap(([name, value]) => encodeField(name, value)));
  const decoder = new HpackDecoder(0);
  assert.deepEqual(decodeAll(decoder, block), fields);
  assert.equal(decoder.tableLength, 0);
  assert.throws(() => encodeField("x", "é"), /not ASCII/);
});

Deno.test("literal strings decode exactly, short or long, repeated or not, octets as Latin-1", () => {
  // Raw (not Huffman) literals without indexing, new names (§6.2.2): bytes as they are.
  const literal = (name: number[], value: number[]) => [
    0x00,
    ...encodeInteger(name.length, 7),
    ...name,
    ...encodeInteger(value.length, 7),
    ...value,
  ];
  const latin1 = (octets: number[]) => String.fromCharCode(...octets);
  const cases: number[][] = [
    [],
    [0x61],
    Array.from({ length: 64 }, (_, i) => 0x20 + i), // the longest remembered
    Array.from({ length: 65 }, (_, i) => 0x20 + i), // one more
    Array.from({ length: 256 }, (_, i) => i), // every octet, 0x80-0xff as Latin-1
    Array.from({ length: 10_000 }, (_, i) => 0x41 + (i % 26)), // in pieces
  ];
  // Over a thousand distinct short strings, then the same again: a string seen before and one
  // that replaced it in the decoder's memory both come back right.
  for (let i = 0; i < 1_200; i++) cases.push([...new TextEncoder().encode(`v${i}`)]);
  const decoder = new HpackDecoder(0);
  for (let round = 0; round < 2; round++) {
    for (const value of cases) {
      const block = Uint8Array.from(literal([0x78], value));
      assert.deepEqual(decodeAll(decoder, block), [["x", latin1(value)]]);
    }
  }
});

Deno.test("malformed blocks throw HpackError, never a wrong field", () => {
  const cases: [string, Uint8Array, RegExp][] = [
    ["index 0", hex("80"), /index 0/],
    ["an index past both tables", hex("be"), /not in the table/],
    ["a string past the end", hex("000561"), /past the end/],
    ["an integer cut short", hex("1fff"), /inside an integer/],
    // "a" is 00011 (5 bits): three padding bits of 0 instead of 1.
    ["Huffman padding of zeros", Uint8Array.from([0x00, 1, 0x61, 0x81, 0x18]), /padding/],
    // A whole octet of ones after a symbol: padding longer than 7 bits.
    ["Huffman padding over 7 bits", Uint8Array.from([0x00, 1, 0x61, 0x82, 0x1f, 0xff]), /padding/],
    // 30 ones: EOS inside the string.
    ["EOS in a string", Uint8Array.from([0x00, 1, 0x61, 0x84, 0xff, 0xff, 0xff, 0xfc]), /EOS/],
    ["a table size update over the limit", hex("3fe11f"), /over the 0 allowed/],
    ["a table size update after a field", hex("8220"), /after a header field/],
  ];
  for (const [what, block, message] of cases) {
    const decoder = new HpackDecoder(0);
    assert.throws(() => decodeAll(decoder, block), (error: unknown) => {
      assert.ok(error instanceof HpackError, what);
      assert.match(error.message, message, what);
      return true;
    });
  }
});
