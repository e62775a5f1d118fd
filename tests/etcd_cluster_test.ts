/**
 * etcd as a cluster (issue 7): three real etcd members, and every etcd client given all three
 * endpoints. Killing the Raft leader with SIGKILL must not show: registrations (lease grant and
 * keepalive), the balancer's watch and plain reads fail over to the surviving members. Figures
 * are printed with the prefix `[etcd cluster]`.
 */
import assert from "node:assert/strict";
import { ConnectionPool } from "etcd3/lib/connection-pool.js";
import type { Etcd3 } from "etcd3";
import { EtcdDiscovery } from "../lib/etcd/etcd_discovery.ts";
import { DEFAULT_ETCD_PREFIX } from "../lib/etcd/etcd_layout.ts";
import { EtcdRegistration } from "../lib/etcd/etcd_registration.ts";
import { ServerSet } from "../lib/picking/server_set.ts";
import type { EtcdCluster } from "./_etcd.ts";
import { describe, loadReaches } from "./_load.ts";
import { startSystem } from "./_harness.ts";
import { listServers, waitFor, waitForServers } from "./_system.ts";

/** Lease TTL (s) of every registration here: short, so a lease that lapsed would show. */
const TTL_S = 2;

/** Lease ID of each key under `prefix`, by key. */
async function leasesUnder(client: Etcd3, prefix: string): Promise<Map<string, string>> {
  const response = await client.getAll().prefix(prefix).exec();
  return new Map(response.kvs.map((kv) => [kv.key.toString(), kv.lease]));
}

/** Waits until the surviving members agree on a new leader; resolves with the time it took. */
async function timeWithoutLeader(cluster: EtcdCluster): Promise<number> {
  const start = performance.now();
  await waitFor("a new etcd leader", () => cluster.leader(), 10_000, 20);
  return performance.now() - start;
}

/** Plain reads in a loop until stopped: how many there were, and how many failed. */
function startReads(client: Etcd3, key: string) {
  const counts = { reads: 0, failed: 0 };
  let stopping = false;
  const running = (async () => {
    while (!stopping) {
      await client.get(key).string().then(() => counts.reads++, () => counts.failed++);
      await new Promise((r) => setTimeout(r, 20));
    }
    return counts;
  })();
  return {
    stop: () => {
      stopping = true;
      return running;
    },
  };
}

// Load: SIMPLE tasks, 2 concurrent loops, lookaside, from before the leader's SIGKILL until the
// final server set is reached (about 10 s). Backends have a 2 s lease TTL.
Deno.test("etcd cluster: the leader SIGKILLed under load (SIMPLE x2, lookaside): no failed request, leases, registration and the balancer's watch carry on", async () => {
  await using sys = await startSystem({ etcdCluster: { members: 3 } });
  const cluster = sys.etcdCluster;
  const backend = () => sys.backend(sys.onEtcd("--lease-ttl", String(TTL_S)));
  const etcd = sys.etcdClient();
  const balancer = await sys.balancer(sys.onEtcd());
  const lb = sys.lbClient(balancer.address);
  const [a, b, c] = [backend(), backend(), backend()];
  const everyone = [a, b, c].map((s) => s.address).sort();
  await waitForServers(lb, everyone);
  const leasesBefore = await leasesUnder(etcd, DEFAULT_ETCD_PREFIX);
  assert.equal(leasesBefore.size, 3);

  const tasks = sys.timedClient({ clientId: "etcd-cluster", balancer: balancer.address });
  const load = sys.load({ client: tasks, taskType: "SIMPLE", concurrency: 2 });
  const reads = startReads(etcd, `${DEFAULT_ETCD_PREFIX}${a.address}`);
  await loadReaches(tasks, c);

  const leader = await cluster.leader();
  assert.ok(leader, "the cluster has a leader");
  const killedAt = performance.now();
  await leader.kill();
  const joiner = backend();
  const noLeaderMs = await timeWithoutLeader(cluster);
  await waitFor(
    `a task on ${joiner.address}`,
    () => tasks.outcomes.some((o) => o.ok && o.server === joiner.address),
    15_000,
    20,
  );
  const joinerPickedMs = performance.now() - killedAt;

  // Three TTLs after the kill: a lease whose keepalive had stopped would be gone by now.
  const ttlsLater = killedAt + 3 * TTL_S * 1_000 - performance.now();
  await new Promise((r) => setTimeout(r, Math.max(0, ttlsLater)));
  const leasesAfter = await leasesUnder(etcd, DEFAULT_ETCD_PREFIX);
  for (const [key, lease] of leasesBefore) {
    assert.equal(leasesAfter.get(key), lease, `${key} keeps its lease across the leader change`);
  }

  b.process.signal("SIGTERM");
  const leftAt = performance.now();
  await waitFor(
    `${b.address} to leave ListServers`,
    async () => {
      const servers = (await listServers(lb)).servers.map((s) => s.server_address);
      return !servers.includes(b.address);
    },
    10_000,
    20,
  );
  const leftMs = performance.now() - leftAt;
  await waitForServers(lb, [a.address, c.address, joiner.address]);

  const totals = await load.stop();
  const readCounts = await reads.stop();
  console.log(
    `[etcd cluster] leader SIGKILLed, load SIMPLE x2 lookaside: ${describe(totals)}; ` +
      `no leader for ${noLeaderMs.toFixed(0)} ms; joiner picked ${
        joinerPickedMs.toFixed(0)
      } ms after the kill; ` +
      `${leasesBefore.size} leases (TTL ${TTL_S} s) kept ${
        (3 * TTL_S).toFixed(0)
      } s past it; SIGTERMed backend left ListServers in ${leftMs.toFixed(0)} ms; ` +
      `${readCounts.reads} reads, ${readCounts.failed} failed`,
  );
  assert.equal(totals.failed, 0, JSON.stringify(totals.failuresByCode));
  assert.equal(readCounts.failed, 0, "no read failed");
  assert.deepEqual(
    [...(await leasesUnder(etcd, DEFAULT_ETCD_PREFIX)).keys()].sort(),
    [a, c, joiner].map((s) => `${DEFAULT_ETCD_PREFIX}${s.address}`).sort(),
  );
});

// In this process, with etcd3's test switch that makes it try the hosts in a fixed order (the
// last endpoint first): the leader is given last, so the lease keepalive, the watch and every
// retry go to the member that is then SIGKILLed first, whatever the shuffle would have picked.
// Before `createEtcdClient` passed failed members over, etcd3's breaker never opened for
// streams: the joiner's keepalive kept going back to the dead member and its lease expired.
Deno.test("EtcdRegistration and EtcdDiscovery streaming from the etcd leader carry on when it is SIGKILLed", async () => {
  await using sys = await startSystem({ etcdCluster: { members: 3 } });
  const cluster = sys.etcdCluster;
  const pool = ConnectionPool as unknown as { deterministicOrder: boolean };
  pool.deterministicOrder = true;
  const leader = await cluster.leader();
  assert.ok(leader, "the cluster has a leader");
  const others = cluster.endpoints.filter((e) => e !== leader.endpoint);
  const client = sys.etcdClient([...others, leader.endpoint]);
  const prefix = "/cluster-test/";
  const set = new ServerSet();
  const discovery = new EtcdDiscovery({ client, prefix, set });
  const registrations: EtcdRegistration[] = [];
  const register = async (address: string) => {
    const r = new EtcdRegistration({ client, prefix, address, ttlS: TTL_S, value: address });
    registrations.push(r);
    await r.start();
    return r;
  };
  try {
    const first = await register("127.0.0.1:1");
    const leaseId = first.leaseId;
    assert.ok(await discovery.start());
    await waitFor("the watch", () => discovery.connected, 5_000, 20);

    await leader.kill();
    const joining = register("127.0.0.1:2");
    await waitFor("the joiner in the set", () => set.has("127.0.0.1:2"), 10_000, 20);
    const joiner = await joining;
    const joinerLeaseId = joiner.leaseId;
    await new Promise((r) => setTimeout(r, 3 * TTL_S * 1_000));
    for (const [r, id] of [[first, leaseId], [joiner, joinerLeaseId]] as const) {
      assert.equal(r.registered, true);
      assert.equal(r.leaseId, id, `${r.key} keeps its lease alive, not a new one`);
      assert.equal(r.reRegistrations, 0);
    }
    await first.stop();
    await waitFor("the first to leave the set", () => !set.has("127.0.0.1:1"), 10_000, 20);
    assert.deepEqual([...set.addresses()], ["127.0.0.1:2"]);
  } finally {
    pool.deterministicOrder = false;
    await discovery.stop();
    await Promise.all(registrations.map((r) => r.stop()));
  }
});
