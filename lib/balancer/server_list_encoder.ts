/**
 * The `ServerList` message of `WatchServers` (proto/load_balancer.proto), encoded by hand into
 * one buffer: protobufjs (grpc-js's serializer) copies the message and builds an object per field
 * before writing, which with many servers makes much garbage per message. Same wire format
 * (tests/server_list_encoder_test.ts checks it against protobufjs); fields at their default (0,
 * false, "") are left out, as proto3 allows and every decoder reads back as the default.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import type { ServerList, WatchedServer } from "../wire/proto.ts";

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
function varintBytes(value: number): number {
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
  let size = stringSize(policyBytes) + varintSize(version);
  const servers = list.servers;
  const serverSizes = new Array<number>(servers.length);
  for (let i = 0; i < servers.length; i++) {
    const bytes = serverSize(servers[i]);
    serverSizes[i] = bytes;
    size += 1 + varintBytes(bytes) + bytes;
  }

  // Each writer leaves out a field at its default, as the matching *Size function counts it.
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  const writeVarint = (value: number) => {
    while (value >= 0x80) {
      out[at++] = (value % 0x80) | 0x80;
      value = Math.floor(value / 0x80);
    }
    out[at++] = value;
  };
  const writeVarintField = (field: number, value: number) => {
    if (value === 0) return;
    out[at++] = tag(field, VARINT);
    writeVarint(value);
  };
  const writeString = (field: number, text: string, bytes: number) => {
    if (bytes === 0) return;
    out[at++] = tag(field, LENGTH);
    writeVarint(bytes);
    at += out.write(text, at, "utf8");
  };
  const writeFloat = (field: number, value: number) => {
    if (!present(value)) return;
    out[at++] = tag(field, FIXED32);
    at = out.writeFloatLE(value, at);
  };

  writeString(1, list.policy, policyBytes);
  for (let i = 0; i < servers.length; i++) {
    const s = servers[i];
    out[at++] = tag(2, LENGTH);
    writeVarint(serverSizes[i]);
    writeString(1, s.server_address, Buffer.byteLength(s.server_address));
    writeFloat(2, s.weight);
    writeVarintField(3, s.has_load ? 1 : 0);
    writeFloat(4, s.cpu_load);
    writeVarintField(5, uint32(s.in_flight));
    writeFloat(6, s.qps);
    writeFloat(7, s.eps);
    writeVarintField(8, uint32(s.report_age_ms));
    writeVarintField(9, uint32(s.known_for_ms));
    writeVarintField(10, uint32(s.report_seq));
  }
  writeVarintField(3, version);
  if (at !== size) throw new Error(`ServerList encoded to ${at} bytes, ${size} expected`);
  return out;
}

/** Bytes of one `WatchedServer`'s fields (without its own tag and length). */
function serverSize(s: WatchedServer): number {
  return stringSize(Buffer.byteLength(s.server_address)) + floatSize(s.weight) +
    varintSize(s.has_load ? 1 : 0) + floatSize(s.cpu_load) + varintSize(uint32(s.in_flight)) +
    floatSize(s.qps) + floatSize(s.eps) + varintSize(uint32(s.report_age_ms)) +
    varintSize(uint32(s.known_for_ms)) + varintSize(uint32(s.report_seq));
}

/** Bytes of a string field of `bytes` octets (left out when empty). */
const stringSize = (bytes: number) => bytes === 0 ? 0 : 1 + varintBytes(bytes) + bytes;
/** Bytes of a float field holding `value` (left out at +0). */
const floatSize = (value: number) => present(value) ? 5 : 0;
/** Bytes of a varint field holding `value` (left out at 0). */
const varintSize = (value: number) => value === 0 ? 0 : 1 + varintBytes(value);
