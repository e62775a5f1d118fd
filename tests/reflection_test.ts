/**
 * gRPC server reflection on a real balancer and a real backend: a reflection client, built
 * from `@grpc/reflection`'s own `.proto` files (v1 and v1alpha), lists the services and fetches
 * the file descriptor of `load_balancer.LoadBalancer`, as grpcurl does.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import descriptor from "protobufjs/ext/descriptor/index.js";
import { PROJECT_ROOT } from "../lib/harness/entry_process.ts";
import { startSystem } from "./_harness.ts";
import { waitFor } from "./_system.ts";

const VERSIONS = ["v1", "v1alpha"] as const;

/** A `ServerReflectionResponse`, in the fields this test reads. */
interface ReflectionResponse {
  list_services_response?: { service: { name: string }[] };
  file_descriptor_response?: { file_descriptor_proto: Uint8Array[] };
  error_response?: { error_code: number; error_message: string };
}

/** The `ServerReflection` client of reflection protocol `version`. */
function reflectionClient(version: typeof VERSIONS[number]) {
  const path = new URL(
    `node_modules/@grpc/reflection/build/proto/grpc/reflection/${version}/reflection.proto`,
    PROJECT_ROOT,
  );
  const definition = loadSync(path.pathname, { keepCase: true, oneofs: true });
  // deno-lint-ignore no-explicit-any
  const pkg = grpc.loadPackageDefinition(definition) as any;
  return pkg.grpc.reflection[version].ServerReflection as grpc.ServiceClientConstructor;
}

/** Sends one reflection request to `address` and resolves with its response. */
function reflect(
  version: typeof VERSIONS[number],
  address: string,
  request: Record<string, string>,
): Promise<ReflectionResponse> {
  const Client = reflectionClient(version);
  const client = new Client(address, grpc.credentials.createInsecure());
  const call = (client as unknown as {
    ServerReflectionInfo(options: grpc.CallOptions): grpc.ClientDuplexStream<
      unknown,
      ReflectionResponse
    >;
  }).ServerReflectionInfo({ deadline: Date.now() + 5_000 });
  return new Promise<ReflectionResponse>((resolve, reject) => {
    call.on("data", (response: ReflectionResponse) => {
      resolve(response);
      call.end();
    });
    call.on("error", reject);
    call.write(request);
  }).finally(() => client.close());
}

/** The service names `address` lists. */
async function listServices(version: typeof VERSIONS[number], address: string) {
  const response = await reflect(version, address, { list_services: "" });
  return response.list_services_response!.service.map((s) => s.name).sort();
}

Deno.test("balancer and backend list their services over reflection v1 and v1alpha", async () => {
  await using sys = await startSystem();
  const balancer = await sys.balancer();
  const backend = sys.backend(["--balancer", balancer.address]);
  for (const version of VERSIONS) {
    assert.deepEqual(await listServices(version, balancer.address), [
      "grpc.health.v1.Health",
      "load_balancer.LoadBalancer",
    ]);
    const backendServices = await waitFor(
      "backend to answer reflection",
      () => listServices(version, backend.address),
      20_000,
      50,
    );
    assert.deepEqual(backendServices, ["grpc.health.v1.Health", "load_balancer.Backend"]);
  }
});

Deno.test("the balancer serves the file descriptor of load_balancer.LoadBalancer", async () => {
  await using sys = await startSystem();
  const balancer = await sys.balancer();
  for (const version of VERSIONS) {
    const response = await reflect(version, balancer.address, {
      file_containing_symbol: "load_balancer.LoadBalancer",
    });
    const files = response.file_descriptor_response!.file_descriptor_proto.map((bytes) =>
      descriptor.FileDescriptorProto.decode(bytes) as unknown as {
        name: string;
        package: string;
        service: { name: string; method: { name: string }[] }[];
      }
    );
    const file = files.find((f) => f.package === "load_balancer");
    assert.ok(file, `no load_balancer file in ${files.map((f) => f.name)}`);
    const service = file.service.find((s) => s.name === "LoadBalancer");
    assert.ok(service);
    assert.deepEqual(
      service.method.map((m) => m.name).sort(),
      ["GetServer", "ListServers", "RegisterServer", "ReportLoad", "SetPolicy", "WatchServers"],
    );
  }
});
