/**
 * The standard gRPC health service (`grpc.health.v1.Health`, `proto/health.proto`): the server
 * side, which the balancer and the backends serve, and a client-side `check()`, which the
 * balancer's {@linkcode HealthChecker} and the tests use.
 *
 * The health service is open (no token): it names no server and changes nothing.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import type { PackageDefinition } from "@grpc/proto-loader";
import protoText from "../../proto/health.proto" with { type: "text" };
import { protoDefinition } from "./proto.ts";

/** A service's health, as the protocol names it. */
export type ServingStatus = "UNKNOWN" | "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN";

/** `Check` and `Watch` request. */
export interface HealthCheckRequest {
  service: string;
}
/** `Check` response and `Watch` message. */
export interface HealthCheckResponse {
  status: ServingStatus;
}

/** Client stub of `grpc.health.v1.Health`. */
export interface HealthClient extends grpc.Client {
  Check(
    request: HealthCheckRequest,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: (error: grpc.ServiceError | null, response?: HealthCheckResponse) => void,
  ): grpc.ClientUnaryCall;
  Watch(
    request: HealthCheckRequest,
    options?: grpc.CallOptions,
  ): grpc.ClientReadableStream<HealthCheckResponse>;
}

/** The package definition of `grpc.health.v1` (for server reflection). */
export const HEALTH_DEFINITION: PackageDefinition = protoDefinition(protoText);

const Health = (() => {
  const loaded = grpc.loadPackageDefinition(HEALTH_DEFINITION) as unknown as {
    grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
  };
  return loaded.grpc.health.v1.Health;
})();

type WatchCall = grpc.ServerWritableStream<HealthCheckRequest, HealthCheckResponse>;

/**
 * The server side: a status per service name (`""` is the whole server). `Check` answers the
 * status, or NOT_FOUND for an unknown service; `Watch` sends the status at once and again on
 * every change, and SERVICE_UNKNOWN for an unknown service (as the protocol asks).
 */
export class HealthService {
  #statuses = new Map<string, ServingStatus>();
  #watchers = new Map<string, Set<WatchCall>>();
  #watching = 0;
  #trailer: (() => grpc.Metadata | undefined) | undefined;

  /**
   * Creates the service with each of `services` at `initial`. With `trailer`, every `Check`
   * answer carries the metadata it returns (a backend's ORCA load report, for Prequal's probes).
   */
  constructor(
    services: readonly string[],
    initial: ServingStatus = "NOT_SERVING",
    trailer?: () => grpc.Metadata | undefined,
  ) {
    for (const service of services) this.#statuses.set(service, initial);
    this.#trailer = trailer;
  }

  /** The status of `service` (`SERVICE_UNKNOWN` when it is not one of ours). */
  status(service = ""): ServingStatus {
    return this.#statuses.get(service) ?? "SERVICE_UNKNOWN";
  }

  /** Sets every known service to `status`, telling watchers of each one that changed. */
  setAll(status: ServingStatus): void {
    for (const service of this.#statuses.keys()) this.set(service, status);
  }

  /** Sets `service` to `status`, telling its watchers if it changed. */
  set(service: string, status: ServingStatus): void {
    if (this.#statuses.get(service) === status) return;
    this.#statuses.set(service, status);
    for (const call of this.#watchers.get(service) ?? []) call.write({ status });
  }

  /** Ends every `Watch` stream (a graceful server stop waits for open streams). */
  close(): void {
    for (const calls of this.#watchers.values()) {
      for (const call of calls) call.end();
      calls.clear();
    }
    this.#watchers.clear();
    this.#watching = 0;
  }

  /** Adds the `grpc.health.v1.Health` service to `server`. */
  addTo(server: grpc.Server): void {
    server.addService(Health.service, {
      Check: this.#check,
      Watch: this.#watch,
    } as grpc.UntypedServiceImplementation);
  }

  #check: grpc.handleUnaryCall<HealthCheckRequest, HealthCheckResponse> = (call, callback) => {
    const status = this.#statuses.get(call.request.service);
    if (status === undefined) {
      return callback({
        code: grpc.status.NOT_FOUND,
        details: `Unknown service '${call.request.service.slice(0, 100)}': known are ${
          [...this.#statuses.keys()].map((s) => `'${s}'`).join(", ")
        }`,
      });
    }
    callback(null, { status }, this.#trailer?.());
  };

  #watch: grpc.handleServerStreamingCall<HealthCheckRequest, HealthCheckResponse> = (call) => {
    const service = call.request.service;
    if (this.#watching >= MAX_WATCHERS) {
      return call.destroy(
        Object.assign(new Error(`Too many health watchers (at most ${MAX_WATCHERS}); use Check`), {
          code: grpc.status.RESOURCE_EXHAUSTED,
        }),
      );
    }
    call.write({ status: this.status(service) });
    // Unknown services are followed too (the protocol lets one appear later), within the cap.
    let calls = this.#watchers.get(service);
    if (calls === undefined) {
      calls = new Set();
      this.#watchers.set(service, calls);
    }
    calls.add(call);
    this.#watching++;
    const forget = () => {
      if (!calls.delete(call)) return;
      this.#watching--;
      if (calls.size === 0 && this.#watchers.get(service) === calls) this.#watchers.delete(service);
    };
    call.on("cancelled", forget);
    call.on("close", forget);
    call.on("error", forget);
  };
}

/** Most `Watch` streams at once; more are refused with RESOURCE_EXHAUSTED. */
const MAX_WATCHERS = 10_000;

/** Opens a health client to `address` (`host:port`). */
export function createHealthClient(
  address: string,
  credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
  channelOptions: grpc.ChannelOptions = {},
): HealthClient {
  return new Health(address, credentials, channelOptions) as unknown as HealthClient;
}

/** Calls `Check` for `service` with a deadline `timeoutMs` away. */
export function check(
  client: HealthClient,
  service: string,
  timeoutMs: number,
  metadata: grpc.Metadata = new grpc.Metadata(),
): Promise<ServingStatus> {
  return new Promise((resolve, reject) => {
    client.Check({ service }, metadata, { deadline: Date.now() + timeoutMs }, (error, response) => {
      if (error) reject(error);
      else resolve(response!.status);
    });
  });
}
