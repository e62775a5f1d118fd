/**
 * A backend's registration in etcd: the key `<prefix><address>` under a lease that etcd3 keeps
 * alive, so the key disappears when the backend dies. etcd3 never revives a lease it declared
 * lost, so the registration then takes a new lease and writes the key again, retrying with
 * backoff until it works or {@linkcode EtcdRegistration.stop} is called.
 *
 * @module
 */
import type { Etcd3, Lease } from "etcd3";
import { getLogger } from "@logtape/logtape";
import { type BackoffOptions, retryDelayMs, sleep } from "../wire/backoff.ts";
import { DEFAULT_ETCD_CALL_TIMEOUT_MS } from "./etcd_client.ts";

const log = getLogger(["lb", "etcd"]);

/** Options of {@linkcode EtcdRegistration}. */
export interface EtcdRegistrationOptions {
  /** Client to register with; the caller closes it after {@linkcode EtcdRegistration.stop}. */
  client: Etcd3;
  /** Key prefix, such as `/servers/`. */
  prefix: string;
  /** This backend's `host:port`; the key is `prefix + address`. */
  address: string;
  /** Lease TTL (s), at least 1. */
  ttlS: number;
  /** Value written under the key (the bare address, or JSON with an `address` field). */
  value: string;
  /**
   * Retry schedule while etcd is unreachable.
   * @default {{ initialMs: 1_000, multiplier: 1.6, jitter: 0.2, maxMs: 30_000 }}
   */
  backoff?: BackoffOptions;
  /**
   * Bound (ms) on each step of {@linkcode EtcdRegistration.stop}.
   * @default {DEFAULT_ETCD_CALL_TIMEOUT_MS}
   */
  stopTimeoutMs?: number;
}

/** Thrown by {@linkcode EtcdRegistration.start} when `stop()` is called before it registered. */
export class RegistrationStoppedError extends Error {
  /** Creates the error for `key`. */
  constructor(key: string) {
    super(`Stopped before '${key}' was registered in etcd`);
    this.name = "RegistrationStoppedError";
  }
}

/** Keeps `prefix + address` registered in etcd under a live lease. */
export class EtcdRegistration {
  #client: Etcd3;
  #key: string;
  #address: string;
  #value: string;
  #ttlS: number;
  #backoff: BackoffOptions;
  #stopTimeoutMs: number;
  #lease: Lease | undefined;
  #leaseId: string | undefined;
  #registered = false;
  #reRegistrations = 0;
  /**
   * The lost lease's ID until the key is written again (its key may still be there until it
   * expires); set, the next successful write counts as a re-registration.
   */
  #lostLeaseId: string | undefined;
  #stopping = new AbortController();
  #loop: Promise<void> | undefined;

  /**
   * Checks the options; nothing is written before {@linkcode start}.
   *
   * @throws {RangeError} if `ttlS` is not an integer of at least 1.
   */
  constructor(options: EtcdRegistrationOptions) {
    if (!Number.isInteger(options.ttlS) || options.ttlS < 1) {
      throw new RangeError(
        `Cannot register in etcd as the lease TTL must be an integer of at least 1 s: current value is '${options.ttlS}'`,
      );
    }
    this.#client = options.client;
    this.#key = options.prefix + options.address;
    this.#address = options.address;
    this.#value = options.value;
    this.#ttlS = options.ttlS;
    this.#backoff = options.backoff ?? {};
    this.#stopTimeoutMs = options.stopTimeoutMs ?? DEFAULT_ETCD_CALL_TIMEOUT_MS;
  }

  /** The registered key. */
  get key(): string {
    return this.#key;
  }

  /** Whether the key is written under a lease that etcd3 has not declared lost. */
  get registered(): boolean {
    return this.#registered;
  }

  /** Times the key was written again under a new lease after a lease was lost. */
  get reRegistrations(): number {
    return this.#reRegistrations;
  }

  /** ID of the current lease (decimal string), or `undefined` while unregistered. */
  get leaseId(): string | undefined {
    return this.#leaseId;
  }

  /**
   * Grants a lease and writes the key under it, retrying with backoff while etcd is unreachable.
   *
   * @throws {RegistrationStoppedError} if {@linkcode stop} is called before it registered.
   */
  async start(): Promise<void> {
    if (this.#loop !== undefined) throw new Error(`'${this.#key}' is already started`);
    this.#loop = this.#register();
    await this.#loop;
    if (!this.#registered) throw new RegistrationStoppedError(this.#key);
  }

  /**
   * Stops retrying, deletes the key and revokes the lease. Best effort: each step is bounded by
   * `stopTimeoutMs`, so it returns even while etcd is down (the lease then expires on its own).
   * A pending {@linkcode start} rejects with {@linkcode RegistrationStoppedError}.
   *
   * The key is deleted only while it is still under this registration's lease: a delete that
   * times out here may still be applied once etcd is reachable again, and by then a restarted
   * backend at the same address may have written the key under a lease of its own.
   */
  async stop(): Promise<void> {
    if (this.#stopping.signal.aborted) return;
    this.#stopping.abort();
    await this.#loop;
    const lease = this.#lease;
    // After a lost lease the old key may still be there until its lease expires.
    const leaseId = this.#leaseId ?? this.#lostLeaseId;
    this.#lease = undefined;
    this.#registered = false;
    this.#leaseId = undefined;
    if (leaseId === undefined) return;
    try {
      await this.#client.if(this.#key, "Lease", "==", leaseId)
        .then(this.#client.delete().key(this.#key))
        .options({ deadline: this.#deadline() })
        .commit();
    } catch (error) {
      log.warn("Could not delete etcd key {key} on stop: {error}", { ...this.#logFields(), error });
    }
    if (lease === undefined) return;
    try {
      await lease.revoke({ deadline: this.#deadline() });
    } catch (error) {
      // The key goes anyway when the lease expires.
      log.warn("Could not revoke the lease of etcd key {key} on stop: {error}", {
        ...this.#logFields(),
        error,
      });
    }
  }

  #deadline(): number {
    return Date.now() + this.#stopTimeoutMs;
  }

  /** Writes the key under a new lease, retrying until it works or stop() is called. */
  async #register(): Promise<void> {
    const signal = this.#stopping.signal;
    for (let attempt = 0; !signal.aborted; attempt++) {
      const lease = this.#client.lease(this.#ttlS);
      try {
        // The put waits for the grant; a failed grant rejects it (and makes the lease emit
        // `lost`, which is ignored as the lease never became current).
        await lease.put(this.#key).value(this.#value);
        const leaseId = await lease.grant();
        if (lease.revoked()) throw new Error("the lease was lost while the key was written");
        if (signal.aborted) {
          // stop() came during the put: it only cleans up the current lease, so undo this one.
          await lease.revoke({ deadline: this.#deadline() }).catch(() => {});
          return;
        }
        this.#adopt(lease, leaseId);
        return;
      } catch (error) {
        lease.release();
        const delayMs = retryDelayMs(attempt, this.#backoff);
        const fields = { ...this.#logFields(), error, delayMs, attempt: attempt + 1 };
        if (attempt === 0) {
          log.warn("Could not register etcd key {key}, retrying in {delayMs} ms: {error}", fields);
        } else {
          log.debug("Could not register etcd key {key}, retrying in {delayMs} ms: {error}", fields);
        }
        await sleep(delayMs, signal);
      }
    }
  }

  /** The properties of every log line: the key and the server it registers. */
  #logFields(): { key: string; address: string } {
    return { key: this.#key, address: this.#address };
  }

  #adopt(lease: Lease, leaseId: string): void {
    const again = this.#lostLeaseId !== undefined;
    this.#lostLeaseId = undefined;
    this.#lease = lease;
    this.#leaseId = leaseId;
    this.#registered = true;
    if (again) {
      this.#reRegistrations++;
      log.info("Registered etcd key {key} again under lease {leaseId}", {
        ...this.#logFields(),
        leaseId,
      });
    } else {
      log.info("Registered etcd key {key} under lease {leaseId} (TTL {ttlS} s)", {
        ...this.#logFields(),
        leaseId,
        ttlS: this.#ttlS,
      });
    }
    // etcd3 retries a failed keepalive every 100 ms: warn once, until one succeeds again.
    let failing = false;
    lease.on("keepaliveFailed", (error) => {
      if (lease !== this.#lease || failing) return;
      failing = true;
      log.warn(
        "Lease keepalive of etcd key {key} is failing; the key stays until the lease expires (TTL {ttlS} s): {error}",
        { ...this.#logFields(), ttlS: this.#ttlS, error },
      );
    });
    lease.on("keepaliveSucceeded", () => {
      if (lease !== this.#lease || !failing) return;
      failing = false;
      log.info("Lease keepalive of etcd key {key} works again", { ...this.#logFields() });
    });
    lease.on("lost", (error) => this.#onLost(lease, error));
  }

  #onLost(lease: Lease, error: unknown): void {
    if (lease !== this.#lease || this.#stopping.signal.aborted) return;
    this.#lease = undefined;
    this.#lostLeaseId = this.#leaseId;
    this.#leaseId = undefined;
    this.#registered = false;
    log.warn("Lost the lease of etcd key {key}, registering again: {error}", {
      ...this.#logFields(),
      error,
    });
    this.#loop = this.#register();
  }
}
