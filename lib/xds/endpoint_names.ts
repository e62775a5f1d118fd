/**
 * The IP addresses xDS endpoints are served at. gRPC clients take an EDS socket address as an IP
 * literal (grpc-go, C-core and grpc-js do not resolve a name there), while servers may be
 * registered by name: `--advertise host.example.internal`, or the original backends'
 * `localhost:PORT`. So names are resolved here, off the ADS path:
 * - the first time a name is asked for, its lookup starts in the background and the endpoint is
 *   left out until it answers; then `onChange` is called, and the next push carries it;
 * - every name in use is looked up again every {@linkcode NAME_REFRESH_MS}, so a host whose
 *   address moved is followed (within that time, or sooner once the name's server rejoins);
 * - a name that does not resolve is left out, with one warning until it resolves again.
 *
 * A name with several addresses is served at the first the system resolver gives, the one a
 * connection to it (and the health probe's) tries first.
 *
 * @module
 */
import { lookup as dnsLookup } from "node:dns/promises";
import { isIP } from "node:net";
import { getLogger } from "@logtape/logtape";
import { joinHostPort, parseAddress } from "../wire/address.ts";

const log = getLogger(["lb", "xds"]);

/** How often every name in use is looked up again. */
export const NAME_REFRESH_MS = 30_000;

/** Resolves a host name to one IP address; rejects when it cannot. */
export type LookupHost = (host: string) => Promise<string>;

const systemLookup: LookupHost = async (host) => (await dnsLookup(host)).address;

interface Name {
  /** Its address, or undefined before its first answer or while it does not resolve. */
  ip: string | undefined;
  /** A lookup is in flight. */
  looking: boolean;
  /** Asked for since the last {@linkcode EndpointNames.sweep}. */
  used: boolean;
  /** Its failure was logged (reset when it resolves). */
  warned: boolean;
}

/** Resolves the hosts of endpoints for xDS, caching each name's address. */
export class EndpointNames {
  #lookup: LookupHost;
  #onChange: () => void;
  #names = new Map<string, Name>();
  #timer: ReturnType<typeof setInterval>;
  #closed = false;

  /** Resolves with `lookup` (the system's by default); `onChange` hears of a new address. */
  constructor(options: { onChange: () => void; lookup?: LookupHost; refreshMs?: number }) {
    this.#lookup = options.lookup ?? systemLookup;
    this.#onChange = options.onChange;
    this.#timer = setInterval(() => this.#refresh(), options.refreshMs ?? NAME_REFRESH_MS);
    Deno.unrefTimer(this.#timer);
  }

  /**
   * `address` (`host:port`) with an IP for its host, or undefined while its name has no address
   * yet (its lookup is started) or does not resolve. An IP literal is returned as it is.
   */
  resolve(address: string): string | undefined {
    const parsed = parseAddress(address);
    if (!parsed.ok) return undefined;
    const host = parsed.host.replace(/^\[(.*)\]$/, "$1");
    if (isIP(host) !== 0) return address;
    let name = this.#names.get(host);
    if (name === undefined) {
      name = { ip: undefined, looking: false, used: true, warned: false };
      this.#names.set(host, name);
      this.#look(host, name);
    }
    name.used = true;
    return name.ip === undefined ? undefined : joinHostPort(name.ip, parsed.port);
  }

  /** Forgets the names not asked for since the last sweep (their servers left). */
  sweep(): void {
    for (const [host, name] of this.#names) {
      if (!name.used) this.#names.delete(host);
      else name.used = false;
    }
  }

  /** Stops looking names up. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
  }

  #refresh(): void {
    for (const [host, name] of this.#names) this.#look(host, name);
  }

  #look(host: string, name: Name): void {
    if (name.looking || this.#closed) return;
    name.looking = true;
    this.#lookup(host).then(
      (ip) => {
        name.looking = false;
        name.warned = false;
        if (ip === name.ip || this.#closed) return;
        name.ip = ip;
        log.debug("Endpoint name {host} resolves to {ip}", { host, ip });
        this.#onChange();
      },
      (error) => {
        name.looking = false;
        if (!name.warned) {
          name.warned = true;
          log.warn(
            "Cannot serve endpoints at {host} over xDS as the name does not resolve: {error}",
            { host, error: error instanceof Error ? error.message : String(error) },
          );
        }
        // A name that resolved before keeps its last address until it answers again, as a
        // client's own resolver keeps its last answer.
      },
    );
  }
}
