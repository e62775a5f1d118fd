/**
 * How servers appear in etcd: one key per server, `<prefix><host:port>`, whose value is the bare
 * address (as the original system wrote it) or a JSON object with at least `address`. It does not
 * load the etcd3 package, so entries can read these defaults without it.
 *
 * @module
 */
import { parseAddress } from "../wire/address.ts";

/** Prefix under which backends register and the balancer discovers them. */
export const DEFAULT_ETCD_PREFIX = "/servers/";

/** TTL of a backend's lease (s): a dead backend drops out of discovery within this time. */
export const DEFAULT_LEASE_TTL_S = 5;

/** Longest value accepted under the prefix, so a stray key cannot make us parse megabytes. */
export const MAX_SERVER_VALUE_LENGTH = 4_096;

/** Result of {@linkcode parseServerValue}. */
export type ParsedServerValue = { ok: true; address: string } | { ok: false; reason: string };

/**
 * Reads the server named by the etcd entry `key` = `value` under `prefix`.
 *
 * The value is either the bare address `host:port` (as the original system wrote it) or a JSON
 * object with a string `address` field (other fields are ignored). The address must pass
 * {@linkcode parseAddress} and is returned normalised.
 */
export function parseServerValue(key: string, value: string, prefix: string): ParsedServerValue {
  if (!key.startsWith(prefix)) {
    return { ok: false, reason: `the key is not under the prefix '${prefix}'` };
  }
  if (key.length === prefix.length) {
    return { ok: false, reason: "the key has no name after the prefix" };
  }
  if (value.length > MAX_SERVER_VALUE_LENGTH) {
    return { ok: false, reason: `the value is longer than ${MAX_SERVER_VALUE_LENGTH} characters` };
  }
  const text = value.trim();
  if (text.length === 0) return { ok: false, reason: "the value is empty" };
  if (!text.startsWith("{")) return checkAddress(text);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    return { ok: false, reason: `the value is not valid JSON (${(error as Error).message})` };
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    return { ok: false, reason: "the JSON value is not an object" };
  }
  const address = (parsed as Record<string, unknown>).address;
  if (address === undefined) return { ok: false, reason: "the JSON value has no 'address' field" };
  if (typeof address !== "string") {
    return { ok: false, reason: "the JSON value's 'address' field is not a string" };
  }
  return checkAddress(address);
}

function checkAddress(text: string): ParsedServerValue {
  const parsed = parseAddress(text);
  if (!parsed.ok) {
    const shown = text.length > 64 ? `${text.slice(0, 64)}...` : text;
    return { ok: false, reason: `the address '${shown}' is invalid: ${parsed.reason}` };
  }
  return { ok: true, address: parsed.address };
}
