/**
 * A watch client's own probes of its servers, for `prequal` picked on the client (the paper's
 * own setting: each client probes the replicas it sends to). One {@linkcode HealthProbe}
 * connection per server, opened at its first probe and closed when the server leaves the set.
 *
 * @module
 */
import { type CheckCallback, HealthProbe } from "../health/health_probe.ts";
import type { LoadTransport } from "../picking/load_prober.ts";
import type { ServerSet } from "../picking/server_set.ts";
import type { TlsConfig } from "../wire/tls.ts";

/** Probes the servers of a set over connections of their own. */
export class ServerProbes implements LoadTransport {
  readonly #tls: TlsConfig | undefined;
  readonly #probes = new Map<string, HealthProbe>();
  readonly #unsubscribe: () => void;

  /** Follows `set`: a server that leaves has its connection closed. */
  constructor(set: ServerSet, tls?: TlsConfig) {
    this.#tls = tls;
    this.#unsubscribe = set.onMembership((address, joined) => {
      if (joined) return;
      this.#probes.get(address)?.close();
      this.#probes.delete(address);
    });
  }

  /** Sends a health check to `address` (connecting at the first one); never false. */
  probeLoad(address: string, timeoutMs: number, onResult: CheckCallback): boolean {
    let probe = this.#probes.get(address);
    if (probe === undefined) {
      probe = new HealthProbe(address, { tls: this.#tls });
      this.#probes.set(address, probe);
    }
    probe.checkThen("", timeoutMs, onResult);
    return true;
  }

  /** Closes every connection. */
  close(): void {
    this.#unsubscribe();
    for (const probe of this.#probes.values()) probe.close();
    this.#probes.clear();
  }
}
