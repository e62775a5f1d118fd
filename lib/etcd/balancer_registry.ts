/**
 * Several balancers, coordinated through etcd: each registers under its own prefix
 * (`<prefix><host:port>`, held by a lease), and backends, clients and the balancers follow that
 * prefix to know the live ones. It reuses the backends' {@linkcode EtcdRegistration} and
 * {@linkcode EtcdDiscovery}, and loads the etcd3 package only when used, so the entries can read
 * its defaults without it.
 *
 * @module
 */
import type { Etcd3 } from "etcd3";
import { getLogger } from "@logtape/logtape";
import type { EtcdDiscovery } from "./etcd_discovery.ts";
import type { EtcdRegistration } from "./etcd_registration.ts";
import { DEFAULT_LEASE_TTL_S } from "./etcd_layout.ts";
import { loadEtcd } from "./etcd_loader.ts";
import { ServerSet } from "../picking/server_set.ts";

const log = getLogger(["lb", "etcd"]);

/** Prefix under which balancers register, apart from the servers'. */
export const DEFAULT_BALANCER_PREFIX = "/balancers/";

/**
 * The reason the balancer prefix cannot be used next to the servers' prefix, or `undefined`:
 * neither may contain the other, or balancers would be taken for servers (or the reverse).
 */
export function balancerPrefixProblem(
  balancerPrefix: string,
  serverPrefix: string,
): string | undefined {
  if (balancerPrefix === "") return "must not be empty";
  if (balancerPrefix.startsWith(serverPrefix) || serverPrefix.startsWith(balancerPrefix)) {
    return `must not overlap the servers' prefix '${serverPrefix}'`;
  }
  return undefined;
}

/**
 * Registers the balancer `address` under `prefix` in the background (serving does not wait for
 * etcd); stop the returned registration to delete the key.
 */
export async function registerBalancer(options: {
  client: Etcd3;
  prefix: string;
  address: string;
  ttlS?: number;
}): Promise<EtcdRegistration> {
  const { EtcdRegistration } = await loadEtcd();
  const registration = new EtcdRegistration({
    client: options.client,
    prefix: options.prefix,
    address: options.address,
    ttlS: options.ttlS ?? DEFAULT_LEASE_TTL_S,
    value: JSON.stringify({ address: options.address }),
  });
  registration.start().catch((error) => {
    log.debug("Balancer registration of {address} ended: {error}", {
      address: options.address,
      error,
    });
  });
  return registration;
}

/** The live balancers under a prefix, as a {@linkcode ServerSet} kept by an etcd watch. */
export class BalancerFollower {
  /** The live balancers (`addresses()`, `onMembership`, `size`). */
  readonly set: ServerSet = new ServerSet();
  #discovery: EtcdDiscovery | undefined;

  /**
   * Lists and watches `prefix`; resolves `true` once the first list is applied, or `false` after
   * the discovery's start timeout (etcd unreachable, or refusing us), while it keeps retrying.
   */
  async start(client: Etcd3, prefix: string): Promise<boolean> {
    const { EtcdDiscovery } = await loadEtcd();
    this.#discovery = new EtcdDiscovery({ client, prefix, set: this.set });
    return await this.#discovery.start();
  }

  /** Stops watching; the set stays as it was. The caller closes the client afterwards. */
  async stop(): Promise<void> {
    await this.#discovery?.stop();
  }
}
