/**
 * The hand encoder of `WatchServers` messages (`lib/balancer/server_list_encoder.ts`) against protobufjs,
 * what grpc-js would use: every message, decoded by the contract's own deserializer, reads back
 * exactly as protobufjs's encoding of it does.
 */
import assert from "node:assert/strict";
import { encodeServerList } from "../lib/balancer/server_list_encoder.ts";
import { contract, type ServerList, type WatchedServer } from "../lib/wire/proto.ts";

const watch = contract.LoadBalancer.service.WatchServers;
const decode = (bytes: Uint8Array) => watch.responseDeserialize(bytes as never) as ServerList;

/** A deterministic pseudo-random source (mulberry32), so a failure can be replayed. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function pick<T>(next: () => number, values: readonly T[]): T {
  return values[Math.floor(next() * values.length)];
}

const FLOATS = [0, -0, 1, 0.5, 1 / 3, 1e-45, 1e-50, 3.4e38, 1e39, -2.5, NaN, Infinity, -Infinity];
const UINTS = [0, 1, 127, 128, 300, 16_383, 16_384, 2 ** 31, 2 ** 32 - 1, 2 ** 32, -1, 2.7, NaN];
const TEXTS = ["", "127.0.0.1:50051", "[::1]:8080", "é-ü-中", "x".repeat(200)];

function server(next: () => number): WatchedServer {
  const float = () => next() < 0.5 ? pick(next, FLOATS) : next() * 10;
  const uint = () => next() < 0.5 ? pick(next, UINTS) : Math.floor(next() * 100_000);
  return {
    server_address: pick(next, TEXTS),
    weight: float(),
    has_load: next() < 0.5,
    cpu_load: float(),
    in_flight: uint(),
    qps: float(),
    eps: float(),
    report_age_ms: uint(),
    known_for_ms: uint(),
    report_seq: uint(),
  };
}

Deno.test("encodeServerList() reads back as protobufjs's encoding does, for every field's edge values", () => {
  const next = random(7);
  for (let round = 0; round < 300; round++) {
    const list: ServerList = {
      policy: pick(next, ["", "least_load", "round_robin", "é"]),
      version: pick(next, [0, 1, 127, 128, 2 ** 32, 2 ** 53 - 1, Math.floor(next() * 1e6)]),
      servers: Array.from({ length: Math.floor(next() * 20) }, () => server(next)),
    };
    const ours = decode(encodeServerList(list));
    const theirs = decode(watch.responseSerialize(list));
    assert.deepEqual(ours, theirs, `round ${round}: ${JSON.stringify(list)}`);
  }
});

Deno.test("encodeServerList() encodes a thousand servers as protobufjs would, and refuses a version it cannot", () => {
  const next = random(11);
  const list: ServerList = {
    policy: "least_load",
    version: 12_345,
    servers: Array.from({ length: 1_000 }, (_, i) => ({
      ...server(next),
      server_address: `127.0.0.1:${20_000 + i}`,
    })),
  };
  assert.deepEqual(decode(encodeServerList(list)), decode(watch.responseSerialize(list)));
  for (const version of [-1, 1.5, 2 ** 53, NaN]) {
    assert.throws(() => encodeServerList({ ...list, version }), /Cannot encode ServerList version/);
  }
});
