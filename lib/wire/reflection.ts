/**
 * gRPC server reflection (`npm:@grpc/reflection`), so generic tools (grpcurl, grpcui, Postman)
 * can list and call our services without the `.proto` files. The package reads its own `.proto`
 * files at run time, which a `deno bundle` file cannot provide: there the server runs without
 * reflection and says so in one warning.
 *
 * @module
 */
import type * as grpc from "@grpc/grpc-js";
import { ReflectionService } from "@grpc/reflection";
import { getLogger } from "@logtape/logtape";
import { HEALTH_DEFINITION } from "./grpc_health.ts";
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
