/**
 * The `ServerList` message of `WatchServers` (proto/load_balancer.proto), encoded by hand into
 * one buffer. protobufjs (what grpc-js's serializer uses) copies the message and builds an
 * operation object per field before writing: at 1,000 servers that was ~1.4 MiB of garbage and
 * several ms per message, for ~40 KB of output. Same wire format, checked against protobufjs in
 * tests/server_list_encoder_test.ts; fields at their default (0, false, "") are left out, as proto3
 * allows and every decoder reads back as the default.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import type { ServerList, WatchedServer } from "./proto.ts";

// Wire types (protobuf encoding): varint, 32-bit, length-delimited.
const VARINT = 0;
const LENGTH = 2;
const FIXED32 = 5;

const tag = (field: number, wireType: number) => (field << 3) | wireType;

/** Whether a float field is written: all but +0 (-0 and NaN are kept as they are). */
const present = (value: number) => !Object.is(value, 0);

/** `value` as protobufjs writes a `uint32`: converted with `>>> 0`. */
const uint32 = (value: number) => value >>> 0;

/** Bytes of `value` (a non-negative integer below 2^53) as a varint. */
function varintSize(value: number): number {
  let size = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 0x80);
    size++;
  }
  return size;
}

/** Encodes `list` (a `WatchServers` message) in protobuf's wire format. */
export function encodeServerList(list: ServerList): Buffer {
  const version = list.version;
  if (!Number.isSafeInteger(version) || version < 0) {
    throw new RangeError(`Cannot encode ServerList version ${version}: not a uint64 below 2^53`);
  }
  const policyBytes = Buffer.byteLength(list.policy);
  let size = 0;
  if (policyBytes > 0) size += 1 + varintSize(policyBytes) + policyBytes;
  const servers = list.servers;
  const serverSizes = new Array<number>(servers.length);
  for (let i = 0; i < servers.length; i++) {
    const bytes = serverSize(servers[i]);
    serverSizes[i] = bytes;
    size += 1 + varintSize(bytes) + bytes;
  }
  if (version > 0) size += 1 + varintSize(version);

  const out = Buffer.allocUnsafe(size);
  let at = 0;
  const writeVarint = (value: number) => {
    while (value >= 0x80) {
      out[at++] = (value % 0x80) | 0x80;
      value = Math.floor(value / 0x80);
    }
    out[at++] = value;
  };
  const writeString = (field: number, text: string, bytes: number) => {
    out[at++] = tag(field, LENGTH);
    writeVarint(bytes);
    at += out.write(text, at, "utf8");
  };
  const writeFloat = (field: number, value: number) => {
    out[at++] = tag(field, FIXED32);
    at = out.writeFloatLE(value, at);
  };
  const writeUint32 = (field: number, value: number) => {
    out[at++] = tag(field, VARINT);
    writeVarint(uint32(value));
  };

  if (policyBytes > 0) writeString(1, list.policy, policyBytes);
  for (let i = 0; i < servers.length; i++) {
    const s = servers[i];
    out[at++] = tag(2, LENGTH);
    writeVarint(serverSizes[i]);
    const addressBytes = Buffer.byteLength(s.server_address);
    if (addressBytes > 0) writeString(1, s.server_address, addressBytes);
    if (present(s.weight)) writeFloat(2, s.weight);
    if (s.has_load) {
      out[at++] = tag(3, VARINT);
      out[at++] = 1;
    }
    if (present(s.cpu_load)) writeFloat(4, s.cpu_load);
    if (uint32(s.in_flight) !== 0) writeUint32(5, s.in_flight);
    if (present(s.qps)) writeFloat(6, s.qps);
    if (present(s.eps)) writeFloat(7, s.eps);
    if (uint32(s.report_age_ms) !== 0) writeUint32(8, s.report_age_ms);
    if (uint32(s.known_for_ms) !== 0) writeUint32(9, s.known_for_ms);
    if (uint32(s.report_seq) !== 0) writeUint32(10, s.report_seq);
  }
  if (version > 0) {
    out[at++] = tag(3, VARINT);
    writeVarint(version);
  }
  if (at !== size) throw new Error(`ServerList encoded to ${at} bytes, ${size} expected`);
  return out;
}

/** Bytes of one `WatchedServer`'s fields (without its own tag and length). */
function serverSize(s: WatchedServer): number {
  let size = 0;
  const addressBytes = Buffer.byteLength(s.server_address);
  if (addressBytes > 0) size += 1 + varintSize(addressBytes) + addressBytes;
  if (present(s.weight)) size += 5;
  if (s.has_load) size += 2;
  if (present(s.cpu_load)) size += 5;
  if (present(s.qps)) size += 5;
  if (present(s.eps)) size += 5;
  size += uint32Size(s.in_flight) + uint32Size(s.report_age_ms) + uint32Size(s.known_for_ms);
  return size + uint32Size(s.report_seq);
}

/** Bytes of a `uint32` field holding `value` (0 when left out). */
function uint32Size(value: number): number {
  const v = uint32(value);
  return v === 0 ? 0 : 1 + varintSize(v);
}
