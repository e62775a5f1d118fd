/**
 * The benchmark's `echo` baseline: a bare grpc-js server on the same runtime whose `GetServer`
 * answers a constant. No set, no policy, no logging: the ceiling for the balancer's own
 * throughput on this machine. Run as `deno run <balancer permissions> lib/bench/echo_baseline.ts --port P`.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { intFlag, onShutdownSignal, parseFlags, runMain } from "../runtime/flags.ts";
import type { ClientRequest, ServerResponse } from "../wire/proto.ts";
import { contract } from "../wire/proto.ts";
import { bindServer, createServer, shutdownServer } from "../wire/grpc_server.ts";

/** Starts the echo server on `port` (0: any); resolves with the port and a stop function. */
export async function startEchoServer(
  port: number,
  answer = "127.0.0.1:1",
): Promise<{ port: number; stop: () => Promise<void> }> {
  const server = createServer();
  const GetServer: grpc.handleUnaryCall<ClientRequest, ServerResponse> = (_call, callback) =>
    callback(null, { server_address: answer });
  server.addService(
    contract.LoadBalancer.service,
    { GetServer } as grpc.UntypedServiceImplementation,
  );
  const bound = await bindServer(server, "127.0.0.1", port);
  return { port: bound, stop: () => shutdownServer(server, 1_000) };
}

if (import.meta.main) {
  await runMain(async () => {
    const flags = parseFlags("echo server", Deno.args, {
      port: { type: "string", arg: "PORT", help: "port to serve on" },
    });
    const echo = await startEchoServer(intFlag("echo server", "port", flags.port, 0, 0, 65535));
    onShutdownSignal(echo.stop);
  });
}
