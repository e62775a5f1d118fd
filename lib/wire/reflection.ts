/**
 * gRPC server reflection (`grpc.reflection.v1` and `v1alpha`, `npm:@grpc/reflection`) on the
 * balancer and the backends, so generic tools (grpcurl, grpcui, Postman) can list and call
 * `load_balancer.LoadBalancer`, `load_balancer.Backend` and `grpc.health.v1.Health` without the
 * `.proto` files.
 *
 * The package reads its own `.proto` files from its npm folder when it is added to a server,
 * which a `deno bundle` file cannot provide: there the server runs without reflection and says
 * so in one warning, as etcd discovery does (`lib/etcd/etcd_loader.ts`).
 *
 * @module
 */
import type * as grpc from "@grpc/grpc-js";
import { ReflectionService } from "@grpc/reflection";
import { getLogger } from "@logtape/logtape";
import { HEALTH_DEFINITION } from "../health/grpc_health.ts";
import { CONTRACT_DEFINITION } from "./proto.ts";

const log = getLogger(["lb", "reflection"]);

/**
 * Adds the reflection service to `server`, listing `services` (the fully qualified names of the
 * services it serves, from our contract and the health service).
 */
export function addReflection(server: grpc.Server, services: readonly string[]): void {
  try {
    new ReflectionService({ ...CONTRACT_DEFINITION, ...HEALTH_DEFINITION }, {
      services: [...services],
    }).addToServer(server);
  } catch (error) {
    log.warn("gRPC server reflection is off (its .proto files cannot be read): {error}", {
      error,
    });
  }
}
