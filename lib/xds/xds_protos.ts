/**
 * The xDS protocol definitions (Envoy's v3 API), read from the `.proto` files the pinned npm
 * package `@grpc/grpc-js-xds` ships under `deps/`, never copied here. Loaded once, on first use,
 * so a balancer that serves no xDS never pays for them.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { fromJSON, type PackageDefinition } from "@grpc/proto-loader";
import { Buffer } from "node:buffer";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import protobuf from "protobufjs";

/** Type URL of each resource type served, by its xDS name. */
export const TYPE_URLS = {
  lds: "type.googleapis.com/envoy.config.listener.v3.Listener",
  rds: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
  cds: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
  eds: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
} as const;

/** One of the four resource types. */
export type ResourceKind = keyof typeof TYPE_URLS;

/** Type URLs of the messages packed inside resources. */
export const INNER_TYPE_URLS = {
  httpConnectionManager:
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
  router: "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
  pickFirst: "type.googleapis.com/envoy.extensions.load_balancing_policies.pick_first.v3.PickFirst",
  roundRobin:
    "type.googleapis.com/envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin",
} as const;

/** The `.proto` files loaded, relative to the package's include folders. */
const FILES = [
  "envoy/service/discovery/v3/ads.proto",
  "envoy/config/listener/v3/listener.proto",
  "envoy/config/route/v3/route.proto",
  "envoy/config/cluster/v3/cluster.proto",
  "envoy/config/endpoint/v3/endpoint.proto",
  "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
  "envoy/extensions/filters/http/router/v3/router.proto",
  "envoy/extensions/load_balancing_policies/pick_first/v3/pick_first.proto",
  "envoy/extensions/load_balancing_policies/round_robin/v3/round_robin.proto",
];

/** Include folders of `@grpc/grpc-js-xds` (as its own loader lists them). */
const INCLUDE_DIRS = ["envoy-api", "xds", "googleapis", "protoc-gen-validate"].map((dir) =>
  fileURLToPath(new URL(`../../node_modules/@grpc/grpc-js-xds/deps/${dir}/`, import.meta.url))
);

/** What the definitions give: the ADS service and a packer of resources. */
export interface XdsProtos {
  /** `envoy.service.discovery.v3.AggregatedDiscoveryService`, for `grpc.Server.addService`. */
  adsService: grpc.ServiceDefinition;
  /** `message` encoded as the type `typeUrl` names, wrapped in a `google.protobuf.Any`. */
  pack(typeUrl: string, message: Record<string, unknown>): Any;
  /** The message inside `any`, decoded (`keepCase`, enums as names): for tests and logs. */
  unpack(any: Any): Record<string, unknown>;
}

/** A `google.protobuf.Any` as grpc-js's loader writes it. */
export interface Any {
  type_url: string;
  value: Buffer;
}

let loaded: XdsProtos | undefined;

/** Whether `dir` is there and may be read. */
function readable(dir: string): boolean {
  try {
    return existsSync(dir);
  } catch {
    return false; // Deno refuses the read outside --allow-read
  }
}

/** The xDS definitions, loaded on first call (a few hundred milliseconds). */
export function xdsProtos(): XdsProtos {
  return loaded ??= load();
}

function load(): XdsProtos {
  if (!INCLUDE_DIRS.every(readable)) {
    // A `deno bundle` file has no node_modules beside it (nor read access where it would be).
    throw new Error(
      "xDS is not available here: the Envoy definitions are read from @grpc/grpc-js-xds in " +
        "node_modules at run time, which a bundle does not have. Run the balancer with " +
        "'deno task balancer', or leave out '--xds-service'",
    );
  }
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    for (const dir of INCLUDE_DIRS) {
      if (existsSync(dir + target)) return dir + target;
    }
    return target; // google/protobuf/*: protobufjs has them built in
  };
  root.loadSync(FILES, { keepCase: true });
  root.resolveAll();
  const definition: PackageDefinition = fromJSON(root.toJSON(), {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const adsService = definition[
    "envoy.service.discovery.v3.AggregatedDiscoveryService"
  ] as grpc.ServiceDefinition;
  const typeOf = (typeUrl: string) => root.lookupType(typeUrl.slice(typeUrl.lastIndexOf("/") + 1));
  return {
    adsService,
    pack(typeUrl, message) {
      const type = typeOf(typeUrl);
      return {
        type_url: typeUrl,
        value: Buffer.from(type.encode(type.fromObject(message)).finish()),
      };
    },
    unpack(any) {
      const type = typeOf(any.type_url);
      return type.toObject(type.decode(any.value), { enums: String, longs: String, oneofs: true });
    },
  };
}
