/**
 * Operator commands against a running balancer (`client --list`, `client --set-policy`): what it
 * is doing, and changing its policy without a restart.
 *
 * @module
 */
import { withToken } from "../wire/auth.ts";
import {
  createLoadBalancerClient,
  type ListServersResponse,
  type LoadBalancerClient,
  unary,
} from "../wire/proto.ts";
import { textTable } from "./summary_text.ts";
import { channelCredentials, type TlsConfig } from "../wire/tls.ts";

const DEADLINE_MS = 5_000;

/** How to reach the balancer: TLS and the control-plane token, both optional. */
export interface AdminOptions {
  tls?: TlsConfig;
  token?: string;
}

function connect(balancer: string, options: AdminOptions): LoadBalancerClient {
  return createLoadBalancerClient(
    balancer,
    channelCredentials(options.tls),
    undefined,
    withToken({}, options.token),
  );
}

/** Fetches the balancer's policy and servers. */
export async function listServers(
  balancer: string,
  options: AdminOptions = {},
): Promise<ListServersResponse> {
  const client = connect(balancer, options);
  try {
    return await unary(client.ListServers, client, {}, { deadline: Date.now() + DEADLINE_MS });
  } finally {
    client.close();
  }
}

/** Switches the balancer's policy; resolves with the previous one. */
export async function setPolicy(
  balancer: string,
  policy: string,
  options: AdminOptions = {},
): Promise<string> {
  const client = connect(balancer, options);
  try {
    const response = await unary(client.SetPolicy, client, { policy }, {
      deadline: Date.now() + DEADLINE_MS,
    });
    return response.previous;
  } finally {
    client.close();
  }
}

/** `ListServers` as text: a header line, then a table of the servers. */
export function formatServers(list: ListServersResponse): string {
  const rows = list.servers.map((s) => [
    s.server_address,
    s.has_load ? s.cpu_load.toFixed(1) : "-",
    s.has_load ? String(s.in_flight) : "-",
    s.has_load ? String(s.queue_length) : "-",
    s.has_load ? s.qps.toFixed(1) : "-",
    s.has_load ? `${s.report_age_ms} ms` : "never",
    s.healthy ? "ok" : "ejected",
    s.weight.toFixed(2),
  ]);
  const ejected = list.servers.filter((s) => !s.healthy).length;
  return [
    `policy ${list.policy}, ${list.discovery} discovery, ${list.servers.length} server(s)` +
    (ejected ? `, ${ejected} ejected by health checks` : ""),
    "",
    textTable([
      ["server", "cpu %", "in flight", "queued", "qps", "last report", "health", "weight"],
      ...rows,
    ]),
  ].join("\n");
}
