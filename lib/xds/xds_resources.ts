/**
 * The xDS resources of one service, built from the balancer's live set: a Listener and a
 * RouteConfiguration that send every call to one Cluster, the Cluster naming the balancing
 * policy the client runs, and its ClusterLoadAssignment (the endpoints). Pure: what is served
 * follows from the arguments alone, as plain objects the codec packs.
 *
 * How our policies map to what xDS clients implement:
 * - `consistent_hash`: `RING_HASH`, hashing the `client-id` header of each call (gRFC A42).
 * - `pick_first`: the `pick_first` policy (gRFC A62) over the endpoints in the order they joined,
 *   `round_robin` for clients without it.
 * - `weighted_round_robin`: one locality per endpoint, its weight the policy's (A58 weights from
 *   the servers' reports), which every xDS client honours (weighted target, gRFC A27).
 * - every other policy: `ROUND_ROBIN`. Their picks follow each request's load as the balancer
 *   sees it, which a client picking for itself cannot.
 *
 * @module
 */
import { INNER_TYPE_URLS, type ResourceKind, TYPE_URLS, type XdsProtos } from "./xds_protos.ts";
import type { Any } from "./xds_protos.ts";
import { parseAddress } from "../wire/address.ts";

/** One endpoint of a service. */
export interface XdsEndpoint {
  /** `host:port`. */
  address: string;
  /** The active policy's weight for it (1 each when the policy has none). */
  weight: number;
}

/** What a service's resources are built from. */
export interface XdsServiceState {
  /** The name clients target (`xds:///<name>`); every resource of the service is named so. */
  name: string;
  /** The active policy's name (`policies/mod.ts`). */
  policy: string;
  /** The live, healthy endpoints, in the order they joined. */
  endpoints: readonly XdsEndpoint[];
}

/** The header a `consistent_hash` service hashes (gRPC clients send it as call metadata). */
export const HASH_HEADER = "client-id";
/** Policies whose weights are served, as locality weights. */
const WEIGHTED_POLICIES: ReadonlySet<string> = new Set(["weighted_round_robin"]);
/** Largest locality weight written: weights are scaled so the heaviest endpoint gets it. */
const MAX_LOCALITY_WEIGHT = 1_000;
/** Retries of a call that failed UNAVAILABLE (its server died or refused it), per gRFC A44. */
const RETRIES = 3;

/** Every resource of `state`, by kind and name, packed. */
export function serviceResources(
  protos: XdsProtos,
  state: XdsServiceState,
): Record<ResourceKind, Map<string, Any>> {
  const one = (kind: ResourceKind, message: Record<string, unknown>) =>
    new Map([[state.name, protos.pack(TYPE_URLS[kind], message)]]);
  return {
    lds: one("lds", listener(protos, state.name)),
    rds: one("rds", routeConfiguration(state)),
    cds: one("cds", cluster(protos, state)),
    eds: one("eds", loadAssignment(state)),
  };
}

/** A client-side listener (`api_listener`) whose routes come over ADS. */
export function listener(protos: XdsProtos, name: string): Record<string, unknown> {
  const httpConnectionManager = {
    rds: { config_source: { ads: {}, resource_api_version: "V3" }, route_config_name: name },
    http_filters: [{
      name: "envoy.filters.http.router",
      typed_config: protos.pack(INNER_TYPE_URLS.router, {}),
    }],
  };
  return {
    name,
    api_listener: {
      api_listener: protos.pack(INNER_TYPE_URLS.httpConnectionManager, httpConnectionManager),
    },
  };
}

/** Every call to the service's cluster, retried on UNAVAILABLE. */
export function routeConfiguration(state: XdsServiceState): Record<string, unknown> {
  return {
    name: state.name,
    virtual_hosts: [{
      name: state.name,
      domains: ["*"],
      routes: [{
        match: { prefix: "" },
        route: {
          cluster: state.name,
          retry_policy: {
            retry_on: "unavailable",
            num_retries: { value: RETRIES },
            retry_back_off: {
              base_interval: { nanos: 25_000_000 },
              max_interval: { nanos: 250_000_000 },
            },
          },
          ...(state.policy === "consistent_hash"
            ? { hash_policy: [{ header: { header_name: HASH_HEADER } }] }
            : {}),
        },
      }],
    }],
  };
}

/** The service's cluster: endpoints from EDS over ADS, and the policy clients run. */
export function cluster(protos: XdsProtos, state: XdsServiceState): Record<string, unknown> {
  const base = {
    name: state.name,
    type: "EDS",
    eds_cluster_config: {
      eds_config: { ads: {}, resource_api_version: "V3" },
      service_name: state.name,
    },
  };
  switch (state.policy) {
    case "consistent_hash":
      return { ...base, lb_policy: "RING_HASH", ring_hash_lb_config: { hash_function: "XX_HASH" } };
    case "pick_first":
      return {
        ...base,
        load_balancing_policy: {
          policies: [
            typedPolicy(protos, "pick_first", INNER_TYPE_URLS.pickFirst),
            typedPolicy(protos, "round_robin", INNER_TYPE_URLS.roundRobin),
          ],
        },
      };
    default:
      return { ...base, lb_policy: "ROUND_ROBIN" };
  }
}

function typedPolicy(protos: XdsProtos, name: string, typeUrl: string) {
  return { typed_extension_config: { name, typed_config: protos.pack(typeUrl, {}) } };
}

/**
 * The endpoints: in one locality, or under a policy with weights one locality each, weighted, so
 * that clients picking localities by weight send each endpoint its weight's share (always, even
 * while the weights are equal, so that a change of weights is a change of numbers only).
 */
export function loadAssignment(state: XdsServiceState): Record<string, unknown> {
  const weighted = WEIGHTED_POLICIES.has(state.policy);
  const lbEndpoint = (e: XdsEndpoint, weight?: number) => ({
    endpoint: { address: { socket_address: socketAddress(e.address) } },
    health_status: "HEALTHY",
    ...(weight === undefined ? {} : { load_balancing_weight: { value: weight } }),
  });
  if (!weighted) {
    return {
      cluster_name: state.name,
      endpoints: state.endpoints.length === 0 ? [] : [{
        locality: { region: "", zone: "", sub_zone: "" },
        load_balancing_weight: { value: 1 },
        lb_endpoints: state.endpoints.map((e) => lbEndpoint(e, 1)),
        priority: 0,
      }],
    };
  }
  const weights = scaledWeights(state.endpoints.map((e) => e.weight));
  return {
    cluster_name: state.name,
    endpoints: state.endpoints.map((e, i) => ({
      locality: { region: "", zone: "", sub_zone: e.address },
      load_balancing_weight: { value: weights[i] },
      lb_endpoints: [lbEndpoint(e)],
      priority: 0,
    })),
  };
}

/** Weights as the positive integers xDS takes, the largest {@linkcode MAX_LOCALITY_WEIGHT}. */
export function scaledWeights(weights: readonly number[]): number[] {
  const max = Math.max(...weights.filter((w) => Number.isFinite(w) && w > 0), 0);
  if (max === 0) return weights.map(() => 1);
  return weights.map((w) =>
    Number.isFinite(w) && w > 0 ? Math.max(1, Math.round(w / max * MAX_LOCALITY_WEIGHT)) : 1
  );
}

/** `host:port` (IPv6 in brackets) as an Envoy `SocketAddress`. */
function socketAddress(address: string): Record<string, unknown> {
  const parsed = parseAddress(address);
  if (!parsed.ok) throw new Error(`Cannot serve endpoint '${address}' over xDS: ${parsed.reason}`);
  return { address: parsed.host.replace(/^\[(.*)\]$/, "$1"), port_value: parsed.port };
}
