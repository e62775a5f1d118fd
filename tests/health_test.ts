/**
 * Health checking: the `grpc.health.v1` service itself, and faults 1 and 2 of issue 5 — a
 * backend killed (SIGKILL) or hung (SIGSTOP, then SIGCONT) while a client runs tasks through the
 * balancer, on a real etcd, every part a real process.
 *
 * Each fault test prints its figures (failures the client saw, time to eject and readmit).
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { check, createHealthClient, HealthService, type ServingStatus } from "../lib/health.ts";
import { runLoad } from "../lib/load_run.ts";
import { bindServer, createServer, shutdownServer } from "../lib/server.ts";
import { TaskClient } from "../lib/task_client.ts";
import { startEtcd } from "./_etcd.ts";
import {
  createLoadBalancerClient,
  listServers,
  startBackend,
  startBalancer,
  type Started,
  stopAll,
  waitFor,
  waitForServers,
} from "./_system.ts";

/** Lease TTL of the fault tests' backends: long, to show ejection does not wait for it. */
const LEASE_TTL_S = 15;

Deno.test("the health service answers Check and Watch as grpc.health.v1 specifies", async () => {
  const health = new HealthService(["", "svc"]);
  const server = createServer();
  health.addTo(server);
  const port = await bindServer(server, "127.0.0.1", 0);
  const client = createHealthClient(`127.0.0.1:${port}`);
  try {
    assert.equal(await check(client, "", 2_000), "NOT_SERVING");
    health.setAll("SERVING");
    assert.equal(await check(client, "svc", 2_000), "SERVING");
    await assert.rejects(
      check(client, "nope", 2_000),
      (e: grpc.ServiceError) => e.code === grpc.status.NOT_FOUND && /nope/.test(e.details),
    );

    const seen: ServingStatus[] = [];
    const unknown: ServingStatus[] = [];
    const stream = client.Watch({ service: "svc" });
    const unknownStream = client.Watch({ service: "nope" });
    stream.on("data", (m: { status: ServingStatus }) => seen.push(m.status));
    unknownStream.on("data", (m: { status: ServingStatus }) => unknown.push(m.status));
    const ended = Promise.all(
      [stream, unknownStream].map((s) => new Promise((resolve) => s.on("status", resolve))),
    );
    await waitFor("the first Watch messages", () => seen.length === 1 && unknown.length === 1);
    health.set("svc", "NOT_SERVING");
    health.set("", "NOT_SERVING"); // another service: not sent to svc's watcher
    await waitFor("the change", () => seen.length === 2);
    assert.deepEqual(seen, ["SERVING", "NOT_SERVING"]);
    assert.deepEqual(unknown, ["SERVICE_UNKNOWN"]);
    health.close(); // ends every stream, so a graceful stop is not held up
    await ended;
  } finally {
    client.close();
    await shutdownServer(server, 1_000);
  }
});

Deno.test("the balancer is NOT_SERVING while it knows no server, and SERVING once it does", async () => {
  let balancer: Started | undefined;
  let backend: Started | undefined;
  const lb = { health: undefined as ReturnType<typeof createHealthClient> | undefined };
  try {
    balancer = await startBalancer();
    lb.health = createHealthClient(balancer.address);
    assert.equal(await check(lb.health, "", 2_000), "NOT_SERVING");
    assert.equal(await check(lb.health, "load_balancer.LoadBalancer", 2_000), "NOT_SERVING");
    backend = startBackend(["--balancer", balancer.address]);
    await waitFor("the balancer to serve", async () => {
      return await check(lb.health!, "", 2_000) === "SERVING";
    }, 15_000);
    const backendHealth = createHealthClient(backend.address);
    try {
      assert.equal(await check(backendHealth, "load_balancer.Backend", 2_000), "SERVING");
    } finally {
      backendHealth.close();
    }
  } finally {
    lb.health?.close();
    await stopAll(balancer, backend);
  }
});

/** A system on a real etcd: a balancer, `n` backends, and a client of the balancer. */
async function withBackends(
  n: number,
  body: (ctx: { balancer: Started; backends: Started[] }) => Promise<void>,
): Promise<void> {
  const etcd = await startEtcd();
  let balancer: Started | undefined;
  const backends: Started[] = [];
  try {
    balancer = await startBalancer(["--etcd", etcd.endpoint, "--policy", "round_robin"]);
    for (let i = 0; i < n; i++) {
      backends.push(startBackend(["--etcd", etcd.endpoint, "--lease-ttl", String(LEASE_TTL_S)]));
    }
    const lb = createLoadBalancerClient(balancer.address);
    try {
      await waitForServers(lb, backends.map((b) => b.address));
    } finally {
      lb.close();
    }
    await body({ balancer, backends });
  } finally {
    for (const b of backends) b.process.signal("SIGCONT");
    await stopAll(balancer, ...backends);
    await etcd.close();
  }
}

/** Polls `ListServers` until `address`'s health is `healthy`; resolves with the time it took. */
async function timeUntilHealth(
  balancer: string,
  address: string,
  healthy: boolean,
  timeoutMs: number,
): Promise<number> {
  const start = performance.now();
  const lb = createLoadBalancerClient(balancer);
  try {
    await waitFor(
      `${address} to be ${healthy ? "readmitted" : "ejected"}`,
      async () => {
        const server = (await listServers(lb)).servers.find((s) => s.server_address === address);
        return server !== undefined && server.healthy === healthy;
      },
      timeoutMs,
      10,
    );
  } finally {
    lb.close();
  }
  return performance.now() - start;
}

// Load: 4 tasks in flight, CPU_HEAVY of 1 work unit (a few ms each), lookaside mode, up to 3
// attempts per task (retries ask GetServer to avoid the server that failed), for 4 s.
Deno.test("fault 1: a backend killed with SIGKILL under load: no failed request, out of the picks within 1 s", async () => {
  await withBackends(3, async ({ balancer, backends }) => {
    const client = new TaskClient({ balancer: balancer.address, clientId: "fault-1" });
    try {
      const load = runLoad({ client, taskType: "CPU_HEAVY", durationMs: 4_000, concurrency: 4 });
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      const victim = backends[1];
      victim.process.signal("SIGKILL");
      const ejectedMs = await timeUntilHealth(balancer.address, victim.address, false, 5_000);
      const summary = await load;
      console.log(
        `fault 1 (SIGKILL): ${summary.requests} requests, ${summary.failed} failed, ` +
          `${summary.retried} retried; ejected after ${ejectedMs.toFixed(0)} ms ` +
          `(lease TTL ${LEASE_TTL_S} s)`,
      );
      assert.equal(summary.failed, 0, JSON.stringify(summary.failuresByCode));
      assert.ok(ejectedMs < 1_000, `ejected after ${ejectedMs.toFixed(0)} ms`);
      // Still a member (its lease runs on), but named by no pick.
      const lb = createLoadBalancerClient(balancer.address);
      try {
        const victimStatus = (await listServers(lb)).servers.find((s) =>
          s.server_address === victim.address
        );
        assert.equal(victimStatus?.healthy, false);
      } finally {
        lb.close();
      }
      assert.ok(summary.perServer[backends[0].address] > 0);
    } finally {
      client.close();
    }
  });
});

// Load: as fault 1, for 7 s; the backend is hung for about 3 s of it.
Deno.test("fault 2: a backend hung with SIGSTOP is ejected, and readmitted after SIGCONT", async () => {
  await withBackends(2, async ({ balancer, backends }) => {
    const client = new TaskClient({ balancer: balancer.address, clientId: "fault-2" });
    const lb = createLoadBalancerClient(balancer.address);
    try {
      const load = runLoad({ client, taskType: "CPU_HEAVY", durationMs: 7_000, concurrency: 4 });
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      const [healthy, victim] = backends;
      victim.process.signal("SIGSTOP");
      const ejectedMs = await timeUntilHealth(balancer.address, victim.address, false, 5_000);
      // While it is hung, every pick names the other one.
      for (let i = 0; i < 10; i++) {
        const { server_address } = await new Promise<{ server_address: string }>(
          (resolve, reject) =>
            lb.GetServer(
              { client_id: `p${i}` },
              new grpc.Metadata(),
              { deadline: Date.now() + 2_000 },
              (e, r) => (e ? reject(e) : resolve(r!)),
            ),
        );
        assert.equal(server_address, healthy.address);
      }
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      victim.process.signal("SIGCONT");
      const readmittedMs = await timeUntilHealth(balancer.address, victim.address, true, 5_000);
      const summary = await load;
      console.log(
        `fault 2 (SIGSTOP/SIGCONT): ${summary.requests} requests, ${summary.failed} failed; ` +
          `ejected ${ejectedMs.toFixed(0)} ms after SIGSTOP, readmitted ` +
          `${readmittedMs.toFixed(0)} ms after SIGCONT; tasks on the resumed server: ` +
          `${summary.perServer[victim.address] ?? 0}`,
      );
      assert.ok(ejectedMs < 1_000, `ejected after ${ejectedMs.toFixed(0)} ms`);
      // Tasks that were in flight on the hung server finish once it resumes: nothing lost.
      assert.equal(summary.failed, 0, JSON.stringify(summary.failuresByCode));
      // Readmitted: it takes tasks again.
      const after = await runLoad({ client, taskType: "SIMPLE", requests: 20, concurrency: 2 });
      assert.ok(after.perServer[victim.address] > 0, JSON.stringify(after.perServer));
    } finally {
      lb.close();
      client.close();
    }
  });
});
