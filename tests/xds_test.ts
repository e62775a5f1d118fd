/**
 * Any gRPC client, no code of ours: a balancer on etcd serves its live set over xDS
 * (`--xds-service`), and two stock clients call `ProcessTask` through `xds:///tasks`:
 * `@grpc/grpc-js-xds` under Deno and gRPC C-core (Debian's python3-grpcio). Times are printed,
 * never asserted.
 */
import assert from "node:assert/strict";
import { startSystem } from "./_harness.ts";
import { waitFor, waitForServers } from "./_system.ts";
import { startXdsClient, XDS_CLIENT_KINDS } from "./_xds.ts";

const SERVICE = "tasks";

Deno.test("xDS: grpc-js-xds and C-core clients reach every backend, see a join, and lose a SIGKILLed backend with no failed call", async () => {
  await using sys = await startSystem({ etcd: true });
  const balancer = await sys.balancer(sys.onEtcd("--xds-service", SERVICE));
  const lb = sys.lbClient(balancer.address);
  const backends = [1, 2, 3].map(() => sys.backend(sys.onEtcd()));
  await waitForServers(lb, backends.map((b) => b.address), 15_000, true);

  const clients = XDS_CLIENT_KINDS.map((kind) => startXdsClient(kind, balancer.address, SERVICE));
  try {
    // Every healthy backend is reached by each client.
    for (const client of clients) {
      await waitFor(`${client.kind} to reach every backend`, () => {
        return backends.every((b) => client.served(b.address) > 0);
      }, 20_000);
    }

    // A join: from the balancer listing it healthy to each client's first call to it.
    const joined = sys.backend(sys.onEtcd());
    await waitForServers(lb, [...backends, joined].map((b) => b.address), 15_000);
    const listedAt = performance.now();
    for (const client of clients) {
      await waitFor(`${client.kind} to reach the new backend`, () => {
        return client.firstCallTo(joined.address) !== undefined;
      }, 10_000);
    }

    // A SIGKILL: from the kill to each client's last call answered by it.
    const killed = backends[0];
    killed.process.signal("SIGKILL");
    const killedAt = performance.now();
    await new Promise((resolve) => setTimeout(resolve, 2_000));

    for (const client of clients) {
      const join = client.firstCallTo(joined.address)! - listedAt;
      const leave = Math.max(0, (client.lastCallTo(killed.address) ?? killedAt) - killedAt);
      console.log(
        `[xds] ${client.kind}: served ${
          JSON.stringify(Object.fromEntries(
            [...backends, joined].map((b) => [b.address, client.served(b.address)]),
          ))
        }; first call to the joined backend ${join.toFixed(0)} ms after the balancer listed ` +
          `it; last call to the SIGKILLed one ${leave.toFixed(0)} ms after the kill (100 ms ` +
          `buckets); failed ${JSON.stringify(client.failed())}`,
      );
      // Calls keep going to the others after the kill, and none failed (retried on UNAVAILABLE).
      assert.ok(
        client.buckets.some((b) => b.atMs > killedAt + 1_000 && Object.keys(b.servers).length > 0),
        `${client.kind} kept calling after the kill`,
      );
      assert.deepEqual(client.failed(), {}, `${client.kind} failed calls`);
    }
  } finally {
    await Promise.all(clients.map((c) => c.stop()));
  }
});
