/**
 * Fault tests of issue 5 (1 to 6): real processes, a real etcd, and a client under load in this
 * process (our own `TaskClient`, so every failed request is counted). Each test states its load,
 * injects a fault, asserts what the client saw and what the balancer lists afterwards, and prints
 * its figures (prefixed `[fault N]`) for the closing note.
 */
import assert from "node:assert/strict";
import { runLoad } from "../lib/client/load_run.ts";
import type { LoadBalancerClient } from "../lib/wire/proto.ts";
import { describe, loadReaches } from "./_load.ts";
import { startSystem, type TestSystem } from "./_harness.ts";
import { listServers, type Started, waitFor, waitForServers } from "./_system.ts";

/**
 * Starts a balancer on the system's etcd (through `endpoint` if given) and one backend on etcd
 * per entry of `backendArgs` (its extra flags), and waits until the balancer lists them all.
 */
async function etcdSystem(sys: TestSystem, backendArgs: string[][], endpoint?: string) {
  const etcd = endpoint === undefined ? sys.onEtcd() : ["--etcd", endpoint];
  const balancer = await sys.balancer(etcd);
  const lb = sys.lbClient(balancer.address);
  const backends = backendArgs.map((extra) => sys.backend(sys.onEtcd(...extra)));
  await waitForServers(lb, sorted(...backends));
  return { balancer, lb, backends };
}

/** A client of `balancer` that records every outcome, under a load of `taskType` tasks. */
function loadThrough(sys: TestSystem, balancer: Started, taskType: string, concurrency: number) {
  const client = sys.timedClient({ clientId: "fault", balancer: balancer.address });
  return { client, load: sys.load({ client, taskType, concurrency }) };
}

async function listed(lb: LoadBalancerClient): Promise<string[]> {
  return (await listServers(lb)).servers.map((s) => s.server_address).sort();
}

const sorted = (...started: Started[]) => started.map((s) => s.address).sort();
const ms = (since: number) => `${(performance.now() - since).toFixed(0)} ms`;

/** Lease TTL (s) of the backends of faults 1 and 2: long, to show ejection does not wait for it. */
const LONG_TTL_S = "15";

/** Polls `ListServers` until `address`'s health is `healthy`; resolves with the time it took. */
async function timeUntilHealth(
  lb: LoadBalancerClient,
  address: string,
  healthy: boolean,
): Promise<number> {
  const start = performance.now();
  await waitFor(
    `${address} to be ${healthy ? "readmitted" : "ejected"}`,
    async () => {
      const server = (await listServers(lb)).servers.find((s) => s.server_address === address);
      return server !== undefined && server.healthy === healthy;
    },
    5_000,
    10,
  );
  return performance.now() - start;
}

// Fault 1. Load: CPU_HEAVY tasks (1 work unit, a few ms), 4 concurrent loops, lookaside (retries
// ask GetServer to avoid the server that failed), about 1 s before and 2 s after the SIGKILL.
Deno.test("fault 1: a backend killed with SIGKILL under load (CPU_HEAVY x4, lookaside): no failed request, out of the picks by its health check while its lease still holds it", async () => {
  await using sys = await startSystem({ etcd: true });
  const ttl = ["--lease-ttl", LONG_TTL_S];
  const { balancer, lb, backends: [a, b, c] } = await etcdSystem(sys, [ttl, ttl, ttl]);
  const { client, load } = loadThrough(sys, balancer, "CPU_HEAVY", 4);
  await loadReaches(client, b);

  b.process.signal("SIGKILL");
  const ejectedMs = await timeUntilHealth(lb, b.address, false);
  const ejectedAt = performance.now();
  await new Promise((r) => setTimeout(r, 2_000));
  const totals = await load.stop();
  console.log(
    `[fault 1] SIGKILL, load CPU_HEAVY x4 lookaside: ${describe(totals)}; ` +
      `out of the picks ${ejectedMs.toFixed(0)} ms after SIGKILL (lease TTL ${LONG_TTL_S} s)`,
  );
  assert.equal(totals.failed, 0, JSON.stringify(totals.failuresByCode));
  // Ejected while the load ran, which went on without it and without a failure.
  const afterEjection = client.outcomes.filter((o) => o.atMs > ejectedAt);
  assert.ok(afterEjection.length > 0, "the load went on after the ejection");
  assert.ok(afterEjection.every((o) => o.ok && o.server !== b.address));
  // Ejected by its health check long before etcd drops it: still listed, out of the picks.
  const listedB = (await listServers(lb)).servers.find((s) => s.server_address === b.address);
  assert.equal(listedB?.healthy, false);
  const after = await runLoad({ client, taskType: "SIMPLE", concurrency: 2, requests: 40 });
  assert.equal(after.retried, 0, "no task is sent to the dead backend any more");
  assert.deepEqual(Object.keys(after.perServer).sort(), sorted(a, c));
});

// Fault 2. Load: as fault 1, from about 1 s before the SIGSTOP until 2 s after the readmission;
// 2 backends, one hung for about 2.5 s.
Deno.test("fault 2: a backend hung with SIGSTOP under load (CPU_HEAVY x4, lookaside) is ejected by its health check while its lease still holds it, and readmitted after SIGCONT", async () => {
  await using sys = await startSystem({ etcd: true });
  const ttl = ["--lease-ttl", LONG_TTL_S];
  const { balancer, lb, backends: [a, b] } = await etcdSystem(sys, [ttl, ttl]);
  const { client, load } = loadThrough(sys, balancer, "CPU_HEAVY", 4);
  await loadReaches(client, b);

  b.process.signal("SIGSTOP");
  let resumed = false;
  try {
    const ejectedMs = await timeUntilHealth(lb, b.address, false);
    // While it is hung, every pick names the other one. (Tasks already sent to it wait: a
    // hung server holds its calls until it resumes or their deadline passes.)
    const whileHung = new Set<string>();
    for (let i = 0; i < 20; i++) {
      whileHung.add(await client.getServer([], `hung-${i}`));
      await new Promise((r) => setTimeout(r, 50));
    }
    // Ejected by its health check, not dropped with its lease: still listed, out of the picks.
    const hungB = (await listServers(lb)).servers.find((s) => s.server_address === b.address);
    b.process.signal("SIGCONT");
    resumed = true;
    const readmittedMs = await timeUntilHealth(lb, b.address, true);
    const readmittedAt = performance.now();
    await new Promise((r) => setTimeout(r, 2_000));
    const totals = await load.stop();
    const onResumed = client.outcomes.filter((o) =>
      o.atMs > readmittedAt && o.server === b.address
    );
    console.log(
      `[fault 2] SIGSTOP then SIGCONT, load CPU_HEAVY x4 lookaside: ${describe(totals)}; ` +
        `ejected ${ejectedMs.toFixed(0)} ms after SIGSTOP, readmitted ` +
        `${readmittedMs.toFixed(0)} ms after SIGCONT; ${onResumed.length} tasks on it after`,
    );
    assert.equal(hungB?.healthy, false, JSON.stringify(hungB));
    assert.deepEqual([...whileHung], [a.address]);
    // Tasks in flight on the hung server finish once it resumes: nothing is lost.
    assert.equal(totals.failed, 0, JSON.stringify(totals.failuresByCode));
    assert.ok(onResumed.length > 0, "the readmitted backend takes tasks again");
  } finally {
    if (!resumed) b.process.signal("SIGCONT");
  }
});

// Fault 3. Load: CPU_HEAVY tasks, 4 concurrent loops, lookaside, about 2 s before and 2 s after
// the SIGTERM; 3 backends, the drained one with tasks 20 times longer so some are in flight.
Deno.test("fault 3: a backend drained with SIGTERM under load (CPU_HEAVY x4, lookaside) costs no request", async () => {
  await using sys = await startSystem({ etcd: true });
  const { balancer, lb, backends: [a, b, c] } = await etcdSystem(sys, [
    [],
    [],
    ["--work-units", "20"],
  ]);
  const { client, load } = loadThrough(sys, balancer, "CPU_HEAVY", 4);
  await loadReaches(client, c);

  const termAt = performance.now();
  const stopped = c.process.stop();
  await waitForServers(lb, sorted(a, b), 5_000);
  const leftAfter = ms(termAt);
  assert.equal((await stopped).code, 0, c.process.log());
  const exitedAt = performance.now();
  const exitedAfter = ms(termAt);
  const drained = client.outcomes.filter((o) => o.atMs > termAt && o.server === c.address);
  await new Promise((r) => setTimeout(r, 2_000));
  const totals = await load.stop();

  console.log(
    `[fault 3] SIGTERM drain, load CPU_HEAVY x4 lookaside: ${describe(totals)}; ` +
      `left ListServers ${leftAfter} after SIGTERM, exited after ${exitedAfter}; ` +
      `${drained.length} tasks in flight on it finished during the drain`,
  );
  assert.equal(totals.failed, 0, JSON.stringify(totals.failuresByCode));
  assert.deepEqual(await listed(lb), sorted(a, b));
  // A response comes before its server's exit, so nothing after the exit came from it.
  const late = client.outcomes.filter((o) => o.atMs > exitedAt && o.ok);
  assert.ok(late.length > 0, "tasks went on after the drain");
  assert.ok(late.every((o) => o.server !== c.address), "no task on the drained backend");
});

// Fault 4. Load: SIMPLE tasks from two clients at once, one in `--mode watch` and one lookaside,
// 2 concurrent loops each, from about 1 s before the SIGTERM until the new balancer has been
// serving for 2 s; 2 backends reporting load to the balancer.
Deno.test("fault 4: the balancer restarted on its port under load (SIMPLE, watch x2 + lookaside x2): watch and lookaside clients lose nothing, both reconnect", async () => {
  await using sys = await startSystem({ etcd: true });
  let balancer = await sys.balancer(sys.onEtcd());
  const lb = sys.lbClient(balancer.address);
  const report = sys.onEtcd("--balancer", balancer.address);
  const [a, b] = [sys.backend(report), sys.backend(report)];
  await waitForServers(lb, sorted(a, b), 15_000, true);
  const watching = sys.timedClient({
    balancer: balancer.address,
    mode: "watch",
    clientId: "watch",
  });
  const lookaside = sys.timedClient({ balancer: balancer.address, clientId: "lookaside" });
  await waitFor("the watch client's set", () => watching.watch!.servers().length === 2);
  const watchLoad = sys.load({ client: watching, taskType: "SIMPLE", concurrency: 2 });
  const lookasideLoad = sys.load({ client: lookaside, taskType: "SIMPLE", concurrency: 2 });
  await new Promise((r) => setTimeout(r, 1_000));

  const termAt = performance.now();
  assert.equal((await balancer.process.stop()).code, 0, balancer.process.log());
  const downAfter = ms(termAt);
  balancer = await sys.balancer(sys.onEtcd(), { port: balancer.port });
  const upAt = performance.now();
  const upAfter = ms(termAt);
  await new Promise((r) => setTimeout(r, 2_000));
  const [watchTotals, lookasideTotals] = await Promise.all([
    watchLoad.stop(),
    lookasideLoad.stop(),
  ]);
  const firstOk = lookaside.outcomes.find((o) => o.atMs > upAt && o.ok);
  const failures = lookaside.outcomes.filter((o) => !o.ok);
  console.log(
    `[fault 4] balancer restart (down ${downAfter} after SIGTERM, answering again ${upAfter} ` +
      `after it): watch x2: ${describe(watchTotals)}; lookaside x2: ${describe(lookasideTotals)}` +
      (failures.length
        ? `, failures from ${(failures[0].atMs - termAt).toFixed(0)} to ` +
          `${(failures.at(-1)!.atMs - termAt).toFixed(0)} ms after SIGTERM`
        : "") +
      `; first lookaside success ${firstOk ? (firstOk.atMs - upAt).toFixed(0) : "none"} ms ` +
      `after the new balancer answered; lookaside failures by message: ` +
      JSON.stringify(lookaside.failures),
  );
  assert.equal(watchTotals.failed, 0, JSON.stringify(watchTotals.failuresByCode));
  assert.ok(firstOk, "lookaside tasks succeed through the new balancer");
  // GetServer waits for the balancer's connection within its 5 s deadline: a restart well
  // under that costs lookaside clients latency, not failures.
  assert.equal(lookasideTotals.failed, 0, JSON.stringify(lookaside.failures));

  // Backends' load reports, the watch stream and GetServer all reach the new balancer: a
  // backend started now shows up in the watch client's set, and lookaside picks name it.
  await waitForServers(lb, sorted(a, b), 15_000, true);
  const c = sys.backend(sys.onEtcd("--balancer", balancer.address));
  await waitForServers(lb, sorted(a, b, c));
  const reconnectAt = performance.now();
  await waitFor(
    "the watch client to hear of the new backend from the new balancer",
    () => watching.watch!.servers().some((s) => s.address === c.address),
    15_000,
  );
  console.log(
    `[fault 4] the watch client had the new backend ${ms(reconnectAt)} after ListServers had it`,
  );
  for (const client of [watching, lookaside]) {
    const after = await runLoad({ client, taskType: "SIMPLE", concurrency: 2, requests: 60 });
    assert.equal(after.failed, 0, JSON.stringify(after.failuresByCode));
    assert.ok(after.perServer[c.address] > 0, `${JSON.stringify(after.perServer)}`);
  }
  assert.deepEqual(await listed(lb), sorted(a, b, c));
});

/** Lease TTL (s) of the backends of fault 5: short, so leases run out within the test. */
const SHORT_TTL_S = "3";
/** How long fault 5 keeps etcd down (ms). */
const ETCD_OUTAGE_MS = 10_000;

// Fault 5. Load: SIMPLE tasks, 2 concurrent loops, lookaside, from before etcd stops until the
// balancer lists the right set again; backends with a 3 s lease, so their leases are lost (no
// keepalive for 2 TTLs) during the 10 s outage.
Deno.test("fault 5: etcd down for 10 s under load (SIMPLE x2, lookaside): the last set serves, joins and leaves during the outage land afterwards", async () => {
  await using sys = await startSystem({ etcd: true });
  const ttl = ["--lease-ttl", SHORT_TTL_S];
  const { balancer, lb, backends: [a, b, gone] } = await etcdSystem(sys, [ttl, ttl, ttl]);
  const { client, load } = loadThrough(sys, balancer, "SIMPLE", 2);
  await new Promise((r) => setTimeout(r, 500));

  await sys.etcd.stop();
  const downAt = performance.now();
  const joined = sys.backend(sys.onEtcd(...ttl));
  gone.process.signal("SIGKILL");
  await gone.process.status;
  // Throughout the outage the balancer answers with the set it had.
  let checks = 0;
  while (performance.now() - downAt < ETCD_OUTAGE_MS) {
    assert.deepEqual(await listed(lb), sorted(a, b, gone));
    checks++;
    await new Promise((r) => setTimeout(r, 500));
  }
  const duringOutage = client.outcomes.filter((o) => o.atMs > downAt).length;
  await sys.etcd.start();
  const upAt = performance.now();
  await waitForServers(lb, sorted(a, b, joined), 30_000);
  const settledAfter = ms(upAt);
  const totals = await load.stop();

  const again = [a, b].filter((s) => /Registered etcd key \S+ again/.test(s.process.log()));
  console.log(
    `[fault 5] etcd down ${ETCD_OUTAGE_MS} ms, load SIMPLE x2 lookaside: ${describe(totals)}; ` +
      `${duringOutage} tasks done while etcd was down, ListServers unchanged in ${checks} checks; ` +
      `right set ${settledAfter} after etcd was back; ${again.length} of 2 backends ` +
      `registered again under a new lease`,
  );
  assert.equal(totals.failed, 0, JSON.stringify(client.failures));
  assert.ok(duringOutage > 0, "tasks went on while etcd was down");
  assert.match(
    joined.process.log(),
    /Could not register etcd key/,
    "it started during the outage",
  );
  assert.equal(again.length, 2, `${a.process.log()}\n${b.process.log()}`);
  const keys = Object.keys(await sys.etcdClient().getAll().prefix("/servers/").strings());
  assert.deepEqual(keys.sort(), sorted(a, b, joined).map((s) => `/servers/${s}`));
});

// Fault 5, lease expiry. Load: SIMPLE tasks, 2 concurrent loops, lookaside. A backend with a 2 s
// lease is frozen (SIGSTOP) for 5 s while etcd is up: etcd expires its lease and deletes its key;
// after SIGCONT it registers again by itself. (Tasks already sent to it wait until it thaws, as
// no task deadline is that short; health checking keeps new ones away, see fault 2.)
Deno.test("fault 5: a backend whose lease expired (SIGSTOP past its 2 s TTL, load SIMPLE x2) registers again after SIGCONT", async () => {
  await using sys = await startSystem({ etcd: true });
  const { balancer, lb, backends: [a, frozen] } = await etcdSystem(sys, [
    [],
    ["--lease-ttl", "2"],
  ]);
  const { client, load } = loadThrough(sys, balancer, "SIMPLE", 2);
  await new Promise((r) => setTimeout(r, 500));

  frozen.process.signal("SIGSTOP");
  const stopAt = performance.now();
  await waitForServers(lb, sorted(a), 10_000);
  const expiredAfter = ms(stopAt);
  await new Promise((r) => setTimeout(r, Math.max(0, 5_000 - (performance.now() - stopAt))));
  frozen.process.signal("SIGCONT");
  const contAt = performance.now();
  await waitForServers(lb, sorted(a, frozen), 15_000);
  const backAfter = ms(contAt);
  await waitFor("a task on the thawed backend", () => {
    return client.outcomes.some((o) => o.atMs > contAt && o.ok && o.server === frozen.address);
  }, 10_000);
  const totals = await load.stop();

  console.log(
    `[fault 5] lease expiry, load SIMPLE x2 lookaside: ${describe(totals)}; key gone ` +
      `${expiredAfter} after SIGSTOP (TTL 2 s), back ${backAfter} after SIGCONT`,
  );
  assert.equal(totals.failed, 0, JSON.stringify(totals.failuresByCode));
  assert.match(frozen.process.log(), /Registered etcd key \S+ again/);
  assert.deepEqual(await listed(lb), sorted(a, frozen));
});

/** Puts on keys outside the prefix while the watch is down, so the compaction goes well past it. */
const OTHER_REVISIONS = 50;

// Fault 6. Load: SIMPLE tasks, 2 concurrent loops, lookaside, throughout. The balancer reaches
// etcd through a TCP proxy; with the proxy cut, a backend joins, one leaves (SIGTERM), 50 other
// revisions are written and etcd is compacted past all of them; then the proxy is restored.
Deno.test("fault 6: etcd compacted past the balancer's revision while its watch is cut (SIMPLE x2, lookaside): it lists again and ends with the right set", async () => {
  await using sys = await startSystem({ etcd: true });
  const proxy = sys.proxy();
  const admin = sys.etcdClient();
  const { balancer, lb, backends: [a, leaving] } = await etcdSystem(
    sys,
    [[], []],
    proxy.endpoint,
  );
  const { load } = loadThrough(sys, balancer, "SIMPLE", 2);
  await new Promise((r) => setTimeout(r, 500));

  proxy.cut();
  await waitFor("the balancer to lose its watch", () => {
    return /Lost the etcd watch/.test(balancer.process.log());
  }, 10_000);
  const joined = sys.backend(sys.onEtcd());
  await waitFor(`${joined.address} to register`, () => {
    return admin.get(`/servers/${joined.address}`);
  }, 15_000);
  assert.equal((await leaving.process.stop()).code, 0, leaving.process.log());
  for (let i = 0; i < OTHER_REVISIONS; i++) await admin.put(`/other/${i}`).value(String(i));
  const { header } = await admin.put("/other/last").value("").exec();
  await admin.kv.compact({ revision: header.revision, physical: true });
  // Still cut off: the balancer serves the set it had.
  assert.deepEqual(await listed(lb), sorted(a, leaving));

  proxy.restore();
  const restoredAt = performance.now();
  await waitForServers(lb, sorted(a, joined), 20_000);
  const settledAfter = ms(restoredAt);
  const totals = await load.stop();

  const log = balancer.process.log();
  const lists = log.match(/Listed \d+ servers under \/servers\//g)?.length ?? 0;
  console.log(
    `[fault 6] compaction to revision ${header.revision} while cut, load SIMPLE x2 ` +
      `lookaside: ${describe(totals)}; right set ${settledAfter} after the proxy was ` +
      `restored, ${lists} lists in all`,
  );
  assert.equal(totals.failed, 0, JSON.stringify(totals.failuresByCode));
  assert.match(log, /etcd cancelled the watch/);
  assert.equal(lists, 2, log);
  // ...and it watches again after the relist.
  assert.equal((await joined.process.stop()).code, 0, joined.process.log());
  await waitForServers(lb, sorted(a), 10_000);
});
