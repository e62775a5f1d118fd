/**
 * Why a call failed, in words a person can act on: grpc-js's status details, with the cause
 * they leave out where it can be found (the connection error behind a deadline, the lookup
 * error behind "Name resolution failed"). The client puts it in a failed task's message.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { lookupHost } from "../wire/net_access.ts";

/** Servers named in a retried task's message, at most. */
const MAX_NAMED_ATTEMPTS = 5;

/** `cause`, after `after <n> attempts (<servers>): ` when the task took more than one. */
export function retriedMessage(
  attempts: number,
  servers: readonly string[],
  cause: string,
): string {
  if (attempts <= 1) return cause;
  const named = servers.slice(0, MAX_NAMED_ATTEMPTS).join(", ") +
    (servers.length > MAX_NAMED_ATTEMPTS ? ", ..." : "");
  return `after ${attempts} attempts${named ? ` (${named})` : ""}: ${cause}`;
}

/** How long the client waits to learn why a name did not resolve before it gives up on knowing. */
const CAUSE_LOOKUP_TIMEOUT_MS = 1_000;

/**
 * Why a call through `client` failed, in words: grpc-js's details, with what they leave out
 * when it can be found. Behind a deadline that passed while the call waited for a connection,
 * that is the channel's connection error; behind "Name resolution failed", the lookup's own
 * error, which grpc-js only traces, so the name is looked up again as grpc-js did.
 */
export async function failureCause(error: grpc.ServiceError, client: grpc.Client): Promise<string> {
  let cause = tidy(error.details || error.message || "unknown error");
  if (error.code === grpc.status.DEADLINE_EXCEEDED && cause.includes("Waiting for LB pick")) {
    const connection = connectionError(client);
    if (connection) cause += `; the connection failed: ${tidy(connection)}`;
  }
  return await withLookupError(cause);
}

/** grpc-js's details without the empty `Resolution note: ` it appends. */
function tidy(details: string): string {
  return details.replace(/\. Resolution note: $/, "");
}

/**
 * The error that keeps `client`'s channel from connecting, when it is in TRANSIENT_FAILURE:
 * grpc-js keeps it only in the status of the channel's current picker, which it does not
 * expose, so this reads it there (and finds nothing if that ever moves).
 */
function connectionError(client: grpc.Client): string | undefined {
  const channel = client.getChannel();
  if (channel.getConnectivityState(false) !== grpc.connectivityState.TRANSIENT_FAILURE) {
    return undefined;
  }
  const internal = (channel as unknown as {
    internalChannel?: { currentPicker?: { status?: { details?: unknown } } };
  }).internalChannel;
  const details = internal?.currentPicker?.status?.details;
  return typeof details === "string" ? details : undefined;
}

/**
 * `cause`, followed by why the name did not resolve when it says "Name resolution failed":
 * `getaddrinfo ENOTFOUND <host>`, or `getaddrinfo EPERM <host>` when Deno's net permission does
 * not allow the name.
 */
async function withLookupError(cause: string): Promise<string> {
  const target = /Name resolution failed for target (?:dns:)?(?:\/\/[^/]*\/)?(\S+)/.exec(cause)
    ?.[1];
  const host = target && /^\[([^\]]+)\]|^([^:]+)/.exec(target);
  const name = host ? host[1] ?? host[2] : undefined;
  if (!name) return cause;
  const lookup = await lookupHost(name, CAUSE_LOOKUP_TIMEOUT_MS);
  if (!lookup || "addresses" in lookup) return cause;
  const denied = (lookup.error as { code?: string }).code === "EPERM"
    ? " (not allowed by Deno's --allow-net)"
    : "";
  return `${cause}: ${lookup.error.message}${denied}`;
}
