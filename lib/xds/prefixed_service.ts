/**
 * A service served over xDS from an etcd prefix of its own (`--xds-service NAME=PREFIX`): its
 * live set follows the servers registered under the prefix, is health-checked as the balancer's
 * own set is, and is served under the balancer's policy, which it follows.
 *
 * @module
 */
import type { Etcd3 } from "etcd3";
import { getLogger } from "@logtape/logtape";
import { createPolicy, type PolicyName } from "../../policies/mod.ts";
import type { EtcdDiscovery } from "../etcd/etcd_discovery.ts";
import { loadEtcd } from "../etcd/etcd_loader.ts";
import { HealthChecker, type HealthCheckerOptions } from "../health/health_checker.ts";
import { Picker } from "../picking/picker.ts";
import { ServerSet } from "../picking/server_set.ts";
import type { XdsService } from "./ads_server.ts";

const log = getLogger(["lb", "xds"]);

/** How often the service looks whether the balancer's policy changed. */
const FOLLOW_MS = 1_000;

/** A service on an etcd prefix of its own. */
export class PrefixedService implements XdsService {
  readonly name: string;
  readonly prefix: string;
  readonly set = new ServerSet();
  readonly picker: Picker;
  #policy: () => PolicyName;
  #checker: HealthChecker | undefined;
  #discovery: EtcdDiscovery | undefined;
  #follow: ReturnType<typeof setInterval> | undefined;

  /**
   * Serves `name` from the servers under `prefix`, checked with `healthCheck` (none when its
   * `intervalMs` is 0), under the policy `policy()` names now and later.
   */
  constructor(options: {
    name: string;
    prefix: string;
    policy: () => PolicyName;
    healthCheck?: Omit<HealthCheckerOptions, "set">;
  }) {
    this.name = options.name;
    this.prefix = options.prefix;
    this.#policy = options.policy;
    this.picker = new Picker(createPolicy(options.policy()), this.set);
    if ((options.healthCheck?.intervalMs ?? 1) > 0) {
      this.#checker = new HealthChecker({ ...options.healthCheck, set: this.set });
    }
  }

  /** Follows the prefix on `client`, checks the servers, and the balancer's policy. */
  async start(client: Etcd3): Promise<void> {
    const { EtcdDiscovery } = await loadEtcd();
    this.#checker?.start();
    this.#discovery = new EtcdDiscovery({ client, prefix: this.prefix, set: this.set });
    this.#discovery.start().catch((error) => {
      log.error("etcd discovery of xDS service {name} stopped: {error}", {
        name: this.name,
        error,
      });
    });
    this.#follow = setInterval(() => {
      const policy = this.#policy();
      if (policy !== this.picker.policyName) this.picker.setPolicy(createPolicy(policy));
    }, FOLLOW_MS);
  }

  async stop(): Promise<void> {
    clearInterval(this.#follow);
    this.#checker?.stop();
    await this.#discovery?.stop();
    this.picker.close();
  }
}
