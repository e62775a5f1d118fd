/**
 * A stock grpc-js client with `@grpc/grpc-js-xds`, run as its own process by `xds_test.ts`: no
 * code of ours picks, only the xDS resolver and the policy the balancer's resources name. It
 * sends `ProcessTask` calls to `xds:///<service>` (`GRPC_XDS_BOOTSTRAP_CONFIG` names
 * the balancer), `concurrency` at a time, until stdin closes, and prints one JSON line per
 * 100 ms: the calls each server answered in it (from "done by <address>"), those that failed, and
 * how many it retried itself.
 * The Python client (`_xds_client.py`) prints the same lines.
 *
 * Usage: `_xds_client.ts <service> <concurrency> <SIMPLE|CPU_HEAVY> [header=value]`
 */
import * as grpc from "@grpc/grpc-js";
import * as xds from "@grpc/grpc-js-xds";
import { createBackendClient, type TaskRequest, type TaskResponse } from "../lib/wire/proto.ts";
import { isTransportFailure } from "../lib/client/task_client.ts";

xds.register();
const [service, concurrencyText, taskType, header] = Deno.args;
const client = createBackendClient(`xds:///${service}`);
const metadata = new grpc.Metadata();
if (header) metadata.set(header.split("=")[0], header.split("=")[1]);

const BUCKET_MS = 100;
const startedAt = performance.now();
let servers: Record<string, number> = {};
let failed: Record<string, number> = {};
let stopping = false;
let sent = 0;
let retried = 0;

const flush = () => {
  const t = Math.round(performance.now() - startedAt) / 1_000;
  console.log(JSON.stringify({ t, servers, failed, retried }));
  servers = {};
  failed = {};
  retried = 0;
};
const timer = setInterval(flush, BUCKET_MS);

function processTask(request: TaskRequest): Promise<TaskResponse> {
  return new Promise((resolve, reject) =>
    client.ProcessTask(
      request,
      metadata,
      { deadline: Date.now() + 5_000 },
      (error, response) => error ? reject(error) : resolve(response!),
    )
  );
}

const told = new Set<string>();

async function worker(): Promise<void> {
  while (!stopping) {
    try {
      const request = { task_id: `x${sent++}`, task_type: taskType };
      // gRPC's retry policy (the route's) retries a call only until a server answered it; one
      // cut after that (its server killed mid-answer) is retried here once, as our client does.
      // So is the INTERNAL grpc-js makes up when its write to a dead server's socket fails (EPIPE
      // under Deno, where Node gives ECONNRESET, which grpc-js reports UNAVAILABLE).
      const { result } = await processTask(request).catch((error) => {
        if (!isTransportFailure(error as grpc.ServiceError)) throw error;
        retried++;
        return processTask(request);
      });
      // "done by <address>", then ": <work>" for CPU_HEAVY.
      const server = /done by (\S+?)(?::? |$)/.exec(result)?.[1] ?? "?";
      servers[server] = (servers[server] ?? 0) + 1;
    } catch (error) {
      const code = grpc.status[(error as { code: number }).code] ?? "UNKNOWN";
      if (!told.has(code)) {
        told.add(code); // the first of each code, for the test's message
        console.error(`failed ${code}: ${(error as Error).message}`);
      }
      failed[code] = (failed[code] ?? 0) + 1;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
}

const workers = Array.from({ length: Number(concurrencyText) }, worker);
// Runs until the test closes stdin.
for await (const _ of Deno.stdin.readable) { /* nothing to read */ }
stopping = true;
await Promise.all(workers);
clearInterval(timer);
flush();
client.close();
// grpc-js-xds keeps its process-wide xDS stream open after the last channel closes.
Deno.exit(0);
