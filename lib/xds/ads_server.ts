/**
 * The balancer's xDS management server: the v3 Aggregated Discovery Service, state of the world
 * (`StreamAggregatedResources`). Any gRPC client with an xDS resolver (`xds:///<service>` and a
 * bootstrap naming this balancer) subscribes to a Listener, a RouteConfiguration, a Cluster and
 * a ClusterLoadAssignment; the last follows the live, healthy set.
 *
 * The protocol, per stream and resource type: a response carries a version and a nonce; the
 * client's next request for that type names the nonce and either ACKs the version or NACKs it
 * with `error_detail`. A request about an older nonce is stale and ignored; a NACK is logged and
 * left there (the rejected version is not sent again, only a newer one); a request naming other
 * resources gets the current version of those at once. Changes are pushed at most once per
 * interval, and only of the types whose resources changed.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { getLogger } from "@logtape/logtape";
import { checkToken } from "../wire/auth.ts";
import type { Picker } from "../picking/picker.ts";
import type { ServerSet } from "../picking/server_set.ts";
import { type Any, type ResourceKind, TYPE_URLS, type XdsProtos, xdsProtos } from "./xds_protos.ts";
import { serviceResources, type XdsEndpoint } from "./xds_resources.ts";
import { EndpointNames, type LookupHost } from "./endpoint_names.ts";

const log = getLogger(["lb", "xds"]);

/** A `DiscoveryRequest` as grpc-js's loader hands it over (defaults filled in). */
export interface DiscoveryRequest {
  version_info: string;
  node: { id?: string } | null;
  resource_names: string[];
  type_url: string;
  response_nonce: string;
  error_detail: { code?: number; message?: string } | null;
}

/** A `DiscoveryResponse`. */
export interface DiscoveryResponse {
  version_info: string;
  resources: Any[];
  type_url: string;
  nonce: string;
}

type AdsCall = grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>;

/** What one stream asked for of one resource type, and what it was last sent. */
interface Subscription {
  /** The names asked for; `undefined`: every resource (a wildcard Listener or Cluster request). */
  names: Set<string> | undefined;
  /** Version last sent ("" before the first response). */
  sentVersion: string;
  /** Nonce of the last response. */
  nonce: string;
}

interface Stream {
  call: AdsCall;
  node: string;
  subscriptions: Map<ResourceKind, Subscription>;
}

/** What xDS clients have done, for the dashboard, metrics and tests. */
export interface AdsStats {
  streams: number;
  responses: number;
  acks: number;
  nacks: number;
  /** Node ids of the clients that NACKed, each once. */
  nackedBy: string[];
  /** The last NACK's error detail, with the client's node id and the type. */
  lastNack?: { node: string; typeUrl: string; version: string; message: string };
}

/** How often resources are built again without a new snapshot (weights, the policy). */
const REFRESH_MS = 1_000;

const KIND_OF_TYPE_URL = new Map(
  (Object.entries(TYPE_URLS) as [ResourceKind, string][]).map(([kind, url]) => [url, kind]),
);

/** A service served over xDS: the name clients target, and the live set and policy it serves. */
export interface XdsService {
  /** What clients target as `xds:///<name>`. */
  name: string;
  set: ServerSet;
  /** Its picker: the policy served and its weights. */
  picker: Picker;
}

/** Serves the ADS stream for services, each following its server set. */
export class AdsServer {
  #protos: XdsProtos;
  #services: readonly XdsService[];
  #clock: () => number;
  #intervalMs: number;
  #build: typeof serviceResources;
  #streams = new Set<Stream>();
  /** Current resources by kind and name, each kind with its version (bumped when it changes). */
  #resources = new Map<ResourceKind, Map<string, Any>>();
  #versions = new Map<ResourceKind, number>();
  #nonce = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #lastSentAt = -Infinity;
  #unsubscribe: () => void;
  #refresh: ReturnType<typeof setInterval>;
  #stats: AdsStats = { streams: 0, responses: 0, acks: 0, nacks: 0, nackedBy: [] };
  /** The IPs of endpoints registered by name. */
  #names: EndpointNames;

  /** Serves `services`. */
  constructor(options: {
    protos: XdsProtos;
    services: readonly XdsService[];
    clock: () => number;
    /** Shortest time between two pushes of a change. */
    intervalMs: number;
    /** Builds a service's resources (tests hand in one that can break them). */
    build?: typeof serviceResources;
    /** Resolves endpoints registered by name. @default {the system's resolver} */
    lookup?: LookupHost;
  }) {
    this.#protos = options.protos;
    this.#services = options.services;
    this.#clock = options.clock;
    this.#intervalMs = options.intervalMs;
    this.#build = options.build ?? serviceResources;
    this.#names = new EndpointNames({ onChange: () => this.changed(), lookup: options.lookup });
    this.#rebuild();
    const sets = new Set(options.services.map((service) => service.set));
    const unsubscribes = [...sets].map((set) => set.onSnapshot(() => this.changed()));
    this.#unsubscribe = () => unsubscribes.forEach((unsubscribe) => unsubscribe());
    // Weights and the policy change without a new snapshot: look again every second.
    this.#refresh = setInterval(() => this.changed(), REFRESH_MS);
    Deno.unrefTimer(this.#refresh);
  }

  /** Counts so far. */
  get stats(): Readonly<AdsStats> {
    return { ...this.#stats, streams: this.#streams.size, nackedBy: [...this.#stats.nackedBy] };
  }

  /** The current resources of `kind`, by name (for tests and the docs' examples). */
  resources(kind: ResourceKind): ReadonlyMap<string, Any> {
    return this.#resources.get(kind)!;
  }

  /** The `StreamAggregatedResources` handler. */
  handle(call: AdsCall): void {
    const stream: Stream = { call, node: "", subscriptions: new Map() };
    if (this.#streams.size === 0) this.#rebuild();
    this.#streams.add(stream);
    const remove = () => this.#streams.delete(stream);
    call.on("data", (request: DiscoveryRequest) => this.#request(stream, request));
    call.on("end", () => {
      remove();
      call.end();
    });
    call.on("cancelled", remove);
    call.on("close", remove);
    call.on("error", remove);
    for (const service of this.#services) service.set.flush();
  }

  /** Notes a change of the set or the policy; clients hear of it within the interval. */
  changed(): void {
    if (this.#timer !== undefined) return;
    const wait = Math.max(0, this.#lastSentAt + this.#intervalMs - this.#clock());
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      // With no client, nothing is built: a new stream builds what it is sent first.
      if (this.#streams.size === 0) return;
      this.#lastSentAt = this.#clock();
      for (const kind of this.#rebuild()) {
        for (const stream of this.#streams) {
          const subscription = stream.subscriptions.get(kind);
          if (subscription && subscription.sentVersion !== this.#version(kind)) {
            this.#send(stream, kind, subscription);
          }
        }
      }
    }, wait);
  }

  /** Ends every stream (the balancer is stopping). */
  close(): void {
    clearTimeout(this.#timer);
    clearInterval(this.#refresh);
    this.#names.close();
    this.#unsubscribe();
    for (const stream of this.#streams) stream.call.end();
    this.#streams.clear();
  }

  #request(stream: Stream, request: DiscoveryRequest): void {
    if (request.node?.id) stream.node = request.node.id;
    const kind = KIND_OF_TYPE_URL.get(request.type_url);
    if (kind === undefined) {
      log.warn("xDS client {node} asked for type {typeUrl}, which this balancer does not serve", {
        node: stream.node,
        typeUrl: request.type_url,
      });
      return;
    }
    let subscription = stream.subscriptions.get(kind);
    if (
      subscription && request.response_nonce !== "" && request.response_nonce !== subscription.nonce
    ) {
      return; // about a response older than the last one sent: stale
    }
    if (subscription && request.response_nonce !== "") {
      if (request.error_detail) {
        this.#stats.nacks++;
        if (!this.#stats.nackedBy.includes(stream.node)) this.#stats.nackedBy.push(stream.node);
        this.#stats.lastNack = {
          node: stream.node,
          typeUrl: request.type_url,
          version: subscription.sentVersion,
          message: request.error_detail.message ?? "",
        };
        log.warn(
          "xDS client {node} rejected {typeUrl} version {version}: {message}",
          this.#stats.lastNack,
        );
      } else {
        this.#stats.acks++;
      }
    }
    const names = request.resource_names.length === 0 && (kind === "lds" || kind === "cds")
      ? undefined
      : new Set(request.resource_names);
    if (subscription && sameNames(subscription.names, names)) return;
    subscription ??= { names, sentVersion: "", nonce: "" };
    subscription.names = names;
    stream.subscriptions.set(kind, subscription);
    this.#send(stream, kind, subscription);
  }

  #send(stream: Stream, kind: ResourceKind, subscription: Subscription): void {
    const current = this.#resources.get(kind)!;
    const resources = subscription.names === undefined
      ? [...current.values()]
      : [...subscription.names].flatMap((name) => current.get(name) ?? []);
    const version = this.#version(kind);
    const nonce = String(++this.#nonce);
    subscription.sentVersion = version;
    subscription.nonce = nonce;
    this.#stats.responses++;
    try {
      stream.call.write({ version_info: version, resources, type_url: TYPE_URLS[kind], nonce });
    } catch {
      this.#streams.delete(stream);
    }
  }

  #version(kind: ResourceKind): string {
    return String(this.#versions.get(kind) ?? 0);
  }

  /** Builds the resources again; returns the kinds that changed. */
  #rebuild(): ResourceKind[] {
    const next = new Map<ResourceKind, Map<string, Any>>(
      (Object.keys(TYPE_URLS) as ResourceKind[]).map((kind) => [kind, new Map()]),
    );
    for (const { name, picker } of this.#services) {
      const weights = picker.weights();
      // At IP addresses, as clients need them: a name not resolved yet is left out, and one
      // server registered twice (by name and by IP) is served once.
      const endpoints: XdsEndpoint[] = [];
      const served = new Set<string>();
      picker.snapshot.servers.forEach((server, i) => {
        const address = this.#names.resolve(server.address);
        if (address === undefined || served.has(address)) return;
        served.add(address);
        endpoints.push({ address, weight: weights[i] });
      });
      const built = this.#build(this.#protos, { name, policy: picker.policyName, endpoints });
      for (const kind of next.keys()) {
        for (const [key, any] of built[kind]) next.get(kind)!.set(key, any);
      }
    }
    this.#names.sweep();
    const changed: ResourceKind[] = [];
    for (const [kind, resources] of next) {
      if (!sameResources(this.#resources.get(kind), resources)) {
        this.#versions.set(kind, (this.#versions.get(kind) ?? 0) + 1);
        this.#resources.set(kind, resources);
        changed.push(kind);
      }
    }
    return changed;
  }
}

function sameNames(a: Set<string> | undefined, b: Set<string> | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.size === b.size && [...a].every((name) => b.has(name));
}

function sameResources(a: Map<string, Any> | undefined, b: Map<string, Any>): boolean {
  if (a === undefined || a.size !== b.size) return false;
  for (const [name, any] of b) {
    const old = a.get(name);
    if (!old || !old.value.equals(any.value)) return false;
  }
  return true;
}

/**
 * Serves ADS on `server` for `services`; with `token`, only to calls carrying it (as
 * `WatchServers` with `--protect-get-server`). Loads the xDS definitions.
 */
export function addAds(
  server: grpc.Server,
  options: Omit<ConstructorParameters<typeof AdsServer>[0], "protos"> & { token?: string },
): AdsServer {
  const protos = xdsProtos();
  const ads = new AdsServer({ ...options, protos });
  const token = options.token;
  server.addService(protos.adsService, {
    StreamAggregatedResources: (call: AdsCall) => {
      const denied = token === undefined ? undefined : checkToken(call.metadata, token);
      if (denied) {
        log.debug("Refused xDS stream from {peer}: {reason}", {
          peer: call.getPeer(),
          reason: denied.details,
        });
        call.emit("error", denied);
        return;
      }
      ads.handle(call);
    },
    DeltaAggregatedResources: (call: AdsCall) => {
      call.emit("error", {
        code: grpc.status.UNIMPLEMENTED,
        details: "This balancer serves xDS state of the world (StreamAggregatedResources) only",
      });
    },
  });
  log.info("Serving xDS for {services}", {
    services: options.services.map((service) => service.name).join(", "),
  });
  return ads;
}
