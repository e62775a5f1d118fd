/**
 * Checks, as an entry starts, that its net permission covers the addresses it will listen on and
 * dial, so an operator who narrows `--allow-net` gets one line naming the flag instead of a stack
 * trace or a connection failing forever with `EPERM`. Under Deno a name needs two grants (the name
 * to resolve it, the address to connect), so a covered name is resolved and its addresses checked
 * too.
 *
 * @module
 */
import { lookup } from "node:dns/promises";
import { joinHostPort } from "./address.ts";
import { UsageError } from "../runtime/flags.ts";

/** One address an entry will use, and the flag it came from (for the message). */
export interface NetUse {
  /** The flag and its value as the operator gave it, e.g. `--etcd http://etcd-1:2379`. */
  flag: string;
  /** `host:port` (IPv6 in brackets). */
  address: string;
  /** Listened on rather than dialled. */
  listen?: boolean;
}

/** What a server entry listens on: `--host`/`--port`, and the HTTP side if it has one. */
export function listenUses(
  host: string,
  port: number,
  http?: { host: string; port: number },
): NetUse[] {
  const uses = [{ flag: `--host ${host} --port ${port}`, address: joinHostPort(host, port) }];
  if (http) {
    uses.push({
      flag: `--http-host ${http.host} --http-port ${http.port}`,
      address: joinHostPort(http.host, http.port),
    });
  }
  return uses.map((use) => ({ ...use, listen: true }));
}

/** The etcd endpoints of `--<flag>` (`http(s)://host:port` URLs) as uses. */
export function etcdUses(urls: readonly string[] | undefined, flag = "etcd"): NetUse[] {
  return (urls ?? []).map((url) => ({ flag: `--${flag} ${url}`, address: urlAddress(url) }));
}

/** How long a name's resolution may take here before it is left to the connection. */
const LOOKUP_TIMEOUT_MS = 2_000;

/** The `host:port` of an `http(s)://host:port` URL (etcd endpoints). */
export function urlAddress(url: string): string {
  const u = new URL(url);
  const port = u.port === "" ? (u.protocol === "https:" ? 443 : 80) : Number(u.port);
  return `${u.hostname}:${port}`;
}

/**
 * Throws a {@linkcode UsageError} naming the first use the net permission does not cover. With
 * every host allowed (the shipped tasks) it returns at once, resolving nothing.
 */
export async function assertNetAccess(program: string, uses: readonly NetUse[]): Promise<void> {
  if (Deno.permissions.querySync({ name: "net" }).state === "granted") return;
  for (const use of uses) {
    const problem = await netAccessProblem(use);
    if (problem) {
      throw new UsageError(
        `Cannot start ${program} as its net permission does not cover '${use.flag}': ` +
          `${problem}, or run it with plain --allow-net as 'deno task ${program}' does`,
      );
    }
  }
}

/** Why `use` is not covered, or `undefined` when it is (or its name does not resolve yet). */
async function netAccessProblem(use: NetUse): Promise<string | undefined> {
  if (!granted(use.address)) return `add ${use.address} to --allow-net`;
  const colon = use.address.lastIndexOf(":");
  const host = use.address.slice(0, colon).replace(/^\[|\]$/g, "");
  const port = Number(use.address.slice(colon + 1));
  if (use.listen || /^[\d.]+$/.test(host) || host.includes(":")) return undefined;
  const resolved = await lookupHost(host, LOOKUP_TIMEOUT_MS);
  const addresses = resolved && "addresses" in resolved ? resolved.addresses : [];
  const ip = addresses.find((a) => !granted(joinHostPort(a, port)));
  return ip === undefined
    ? undefined
    : `${host} resolves to ${ip}: add ${joinHostPort(ip, port)} to --allow-net`;
}

function granted(address: string): boolean {
  return Deno.permissions.querySync({ name: "net", host: address }).state === "granted";
}

/**
 * What `host` resolves to (every address), or the lookup's error; `undefined` when it has not
 * answered within `timeoutMs`.
 */
export async function lookupHost(
  host: string,
  timeoutMs: number,
): Promise<{ addresses: string[] } | { error: Error } | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<undefined>((ok) =>
    timer = setTimeout(() => ok(undefined), timeoutMs)
  );
  try {
    return await Promise.race([
      lookup(host, { all: true }).then(
        (all) => ({ addresses: all.map((a) => a.address) }),
        (error: Error) => ({ error }),
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
