/**
 * `host:port` addresses as servers are named on the wire and in etcd.
 *
 * @module
 */
import { UsageError } from "../runtime/flags.ts";

/** Result of {@linkcode parseAddress}: the normalised address, or why it was refused. */
export type ParsedAddress =
  | { ok: true; address: string; host: string; port: number }
  | { ok: false; reason: string };

const HOST_PATTERN =
  /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** Longest address accepted, so a report cannot make the balancer hold arbitrary text. */
export const MAX_ADDRESS_LENGTH = 261;

/** `host:port` for dialling or binding: an IPv6 host goes in brackets (`[::1]:80`). */
export function joinHostPort(host: string, port: number): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Checks that `text` is `host:port` (host a DNS name, an IPv4 address, or `[IPv6]`) with a port
 * from 1 to 65535.
 */
export function parseAddress(text: string): ParsedAddress {
  if (typeof text !== "string" || text.length === 0) return { ok: false, reason: "it is empty" };
  if (text.length > MAX_ADDRESS_LENGTH) {
    return { ok: false, reason: `it is longer than ${MAX_ADDRESS_LENGTH} characters` };
  }
  const colon = text.lastIndexOf(":");
  if (colon <= 0) return { ok: false, reason: "it has no ':port'" };
  const host = text.slice(0, colon);
  const portText = text.slice(colon + 1);
  if (!/^\d{1,5}$/.test(portText)) return { ok: false, reason: "the port is not a number" };
  const port = Number(portText);
  if (port < 1 || port > 65535) return { ok: false, reason: "the port is out of range" };
  if (host.startsWith("[")) {
    if (!host.endsWith("]") || !/^\[[0-9A-Fa-f:.]+\]$/.test(host)) {
      return { ok: false, reason: "the IPv6 host is malformed" };
    }
  } else if (!HOST_PATTERN.test(host)) {
    return { ok: false, reason: "the host is not a valid name or IPv4 address" };
  }
  return { ok: true, address: `${host}:${port}`, host, port };
}

/** Whether `host` listens on every interface (`0.0.0.0`, `::`): nobody can dial it as such. */
export function isWildcardHost(host: string): boolean {
  return host === "0.0.0.0" || host === "::" || host === "[::]";
}

/**
 * The `host:port` others dial to reach a server bound to `host` and `port`: `advertise` when
 * given (`host`, or `host:port` when a port is mapped on the way), else `host` itself.
 */
export function advertisedAddress(host: string, port: number, advertise?: string): string {
  if (advertise === undefined) return joinHostPort(host, port);
  const parsed = parseAddress(advertise);
  if (parsed.ok) return parsed.address;
  return advertise.startsWith("[") ? `${advertise}:${port}` : joinHostPort(advertise, port);
}

/** Reads a `host:port` flag, or `fallback` when absent. */
export function addressFlag(
  program: string,
  flag: string,
  value: string | undefined,
  fallback?: string,
): string | undefined {
  if (value === undefined) return fallback;
  const parsed = parseAddress(value);
  if (!parsed.ok) {
    throw new UsageError(
      `Cannot start ${program} as '--${flag}' must be host:port with a port from 1 to 65535: current value is '${value}' (${parsed.reason})`,
    );
  }
  return parsed.address;
}

/**
 * Reads `--advertise HOST[:PORT]` (IPv6 in brackets), the address others dial when `--host` is
 * not it: required when `host` is a wildcard (`0.0.0.0`, `::`) and `needed` (the entry tells
 * others where it is), since nobody can dial a wildcard.
 */
export function advertiseFlag(
  program: string,
  value: string | undefined,
  host: string,
  needed: boolean,
): string | undefined {
  if (value === undefined) {
    if (needed && isWildcardHost(host)) {
      throw new UsageError(
        `Cannot start ${program} as '--host ${host}' listens on every interface, which nobody ` +
          `can dial: give '--advertise HOST' with the name or address others reach it by`,
      );
    }
    return undefined;
  }
  const withPort = value.startsWith("[") && value.endsWith("]") ? `${value}:1` : value;
  const parsed = parseAddress(withPort.includes(":") ? withPort : `${withPort}:1`);
  if (!parsed.ok || isWildcardHost(parsed.host)) {
    throw new UsageError(
      `Cannot start ${program} as '--advertise' must be HOST or HOST:PORT (IPv6 in brackets), ` +
        `a name or address others can dial: current value is '${value}'${
          parsed.ok ? "" : ` (${parsed.reason})`
        }`,
    );
  }
  return value;
}
