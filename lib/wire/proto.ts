/**
 * The wire contract, loaded once from `proto/load_balancer.proto` and typed for TypeScript. The
 * `.proto` text is imported as a module, so the entries need no read permission for it and
 * `deno bundle` embeds it.
 *
 * @module
 */
import "../runtime/http2_goaway_fix.ts";
import "../runtime/grpc_transport_fix.ts";
import * as grpc from "@grpc/grpc-js";
import { fromJSON, type PackageDefinition, type ServiceDefinition } from "@grpc/proto-loader";
import type { Buffer } from "node:buffer";
import protobuf from "protobufjs";
import protoText from "../../proto/load_balancer.proto" with { type: "text" };

/** Options shared by every place that turns `.proto` text into a package definition. */
const LOADER_OPTIONS = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
} as const;

/** Builds grpc-js service constructors from `.proto` source text (package `load_balancer`). */
export function loadContract(source: string): LoadBalancerPackage {
  return loadPackage(protoDefinition(source));
}

/**
 * The package definition of `.proto` source text, with strict request deserializers; it also
 * carries the file descriptors that server reflection serves.
 */
export function protoDefinition(source: string): PackageDefinition {
  const root = protobuf.parse(source, { keepCase: true }).root;
  return strictRequests(fromJSON(root.toJSON(), LOADER_OPTIONS));
}

/** Builds the service constructors of a `load_balancer` package definition. */
function loadPackage(definition: PackageDefinition): LoadBalancerPackage {
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    load_balancer: LoadBalancerPackage;
  };
  return loaded.load_balancer;
}

/**
 * Makes servers refuse a request whose string field claims more bytes than the message holds.
 * protobufjs reads a Node `Buffer` (what grpc-js hands over) leniently and cuts such a string
 * short, so a malformed `RegisterServer` could register a truncated address; a plain
 * `Uint8Array` view of the same bytes is read strictly and throws (grpc-js answers INTERNAL).
 */
function strictRequests(definition: PackageDefinition): PackageDefinition {
  for (const service of Object.values(definition)) {
    if ("format" in service) continue; // a message type, not a service
    for (const method of Object.values(service as ServiceDefinition)) {
      const lenient = method.requestDeserialize;
      method.requestDeserialize = (bytes: Buffer) =>
        lenient(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) as Buffer);
    }
  }
  return definition;
}

/** Service constructors of package `load_balancer`. */
export interface LoadBalancerPackage {
  LoadBalancer: grpc.ServiceClientConstructor;
  Backend: grpc.ServiceClientConstructor;
}

/** The package definition of our contract (for server reflection). */
export const CONTRACT_DEFINITION: PackageDefinition = protoDefinition(protoText);

/** Our contract, with the fields and RPCs we added to the original. */
export const contract: LoadBalancerPackage = loadPackage(CONTRACT_DEFINITION);

// Message shapes, as grpc-js delivers them with LOADER_OPTIONS (defaults filled in).

/** `GetServer` request. */
export interface ClientRequest {
  client_id: string;
  /** Servers the client just failed on; empty from original clients. */
  avoid?: string[];
}
/** `GetServer` response. */
export interface ServerResponse {
  server_address: string;
}
/** `RegisterServer` request. */
export interface ServerRegistration {
  server_address: string;
}
/** `RegisterServer` response. */
export interface RegistrationResponse {
  success: boolean;
}
/** `ReportLoad` request. Fields 3 to 5 are ours; an original backend leaves them at zero. */
export interface LoadReport {
  server_address: string;
  cpu_load: number;
  in_flight?: number;
  queue_length?: number;
  loadavg_percent?: number;
  qps?: number;
  eps?: number;
}
/** `ReportLoad` response. */
export interface LoadReportResponse {
  success: boolean;
}
/** `ListServers` request. */
export type ListServersRequest = Record<string, never>;
/** `WatchServers` request. */
export interface WatchServersRequest {
  client_id: string;
}
/** One server in a `WatchServers` message. */
export interface WatchedServer {
  server_address: string;
  weight: number;
  has_load: boolean;
  cpu_load: number;
  in_flight: number;
  qps: number;
  eps: number;
  report_age_ms: number;
  known_for_ms: number;
  report_seq: number;
}
/** A `WatchServers` message: the whole current set. */
export interface ServerList {
  policy: string;
  servers: WatchedServer[];
  version: number;
}
/** `SetPolicy` request. */
export interface SetPolicyRequest {
  policy: string;
}
/** `SetPolicy` response. */
export interface SetPolicyResponse {
  previous: string;
  policy: string;
}
/** One server in a `ListServers` response. */
export interface ServerStatus {
  server_address: string;
  has_load: boolean;
  cpu_load: number;
  in_flight: number;
  report_age_ms: number;
  qps: number;
  weight: number;
  healthy: boolean;
  queue_length: number;
  has_probe: boolean;
  probe_rif: number;
  probe_latency_ms: number;
  probe_age_ms: number;
}
/** `ListServers` response. */
export interface ListServersResponse {
  policy: string;
  servers: ServerStatus[];
  discovery: string;
}
/** `GetStats` request. */
export type StatsRequest = Record<string, never>;
/** `GetStats` response: cumulative counters of a backend. */
export interface StatsResponse {
  server_address: string;
  cpu_user_us: number;
  cpu_system_us: number;
  simple_completed: number;
  heavy_completed: number;
  in_flight: number;
  uptime_ms: number;
}
/** `ProcessTask` request. */
export interface TaskRequest {
  task_id: string;
  task_type: string;
}
/** `ProcessTask` response. */
export interface TaskResponse {
  result: string;
}

/** A unary call made with a callback, as grpc-js client stubs expose them. */
type Unary<Req, Res> = (
  request: Req,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: (error: grpc.ServiceError | null, response?: Res) => void,
) => grpc.ClientUnaryCall;

/** Client stub of the `LoadBalancer` service. */
export interface LoadBalancerClient extends grpc.Client {
  GetServer: Unary<ClientRequest, ServerResponse>;
  RegisterServer: Unary<ServerRegistration, RegistrationResponse>;
  ReportLoad: Unary<LoadReport, LoadReportResponse>;
  ListServers: Unary<ListServersRequest, ListServersResponse>;
  SetPolicy: Unary<SetPolicyRequest, SetPolicyResponse>;
  WatchServers: (
    request: WatchServersRequest,
    options?: grpc.CallOptions,
  ) => grpc.ClientReadableStream<ServerList>;
}

/** Client stub of the `Backend` service. */
export interface BackendClient extends grpc.Client {
  ProcessTask: Unary<TaskRequest, TaskResponse>;
  GetStats: Unary<StatsRequest, StatsResponse>;
}

/**
 * Calls a unary method and resolves with its response; rejects with the `ServiceError`.
 * `waitForReady` makes the call wait for a connection (within its deadline) instead of failing
 * at once while the channel is down.
 */
export function unary<Req, Res>(
  method: Unary<Req, Res>,
  client: grpc.Client,
  request: Req,
  options: grpc.CallOptions & { waitForReady?: boolean } = {},
): Promise<Res> {
  const { waitForReady, ...callOptions } = options;
  const metadata = new grpc.Metadata();
  if (waitForReady) metadata.setOptions({ waitForReady });
  return new Promise((resolve, reject) => {
    method.call(client, request, metadata, callOptions, (error, response) => {
      if (error) reject(error);
      else resolve(response as Res);
    });
  });
}

/**
 * Channel options for a client that polls a process which is still starting: grpc-js waits 1 s
 * (then longer) before reconnecting after a refused connection, which would make every
 * readiness check take a second or more.
 */
export const POLLING_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  "grpc.initial_reconnect_backoff_ms": 50,
  "grpc.max_reconnect_backoff_ms": 250,
};

/**
 * Opens a `LoadBalancer` client to `address` (`host:port`). `channelOptions` may carry
 * `interceptors` (the control-plane token: `lib/wire/auth.ts` `withToken`).
 */
export function createLoadBalancerClient(
  address: string,
  credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
  pkg: LoadBalancerPackage = contract,
  channelOptions: grpc.ClientOptions = {},
): LoadBalancerClient {
  return new pkg.LoadBalancer(
    address,
    credentials,
    channelOptions,
  ) as unknown as LoadBalancerClient;
}

/** Opens a `Backend` client to `address` (`host:port`). */
export function createBackendClient(
  address: string,
  credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
  pkg: LoadBalancerPackage = contract,
  channelOptions: grpc.ClientOptions = {},
): BackendClient {
  return new pkg.Backend(address, credentials, channelOptions) as unknown as BackendClient;
}
