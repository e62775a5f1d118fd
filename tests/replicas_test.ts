/**
 * Several balancers on one etcd, every part a real process: each balancer registers under
 * `/balancers/`, backends report their load to every live balancer, and clients spread over the
 * balancers, fail over when theirs is killed, and move back once it answers again.
 */
import assert from "node:assert/strict";
import { sleep } from "../lib/wire/backoff.ts";
import { BalancerFollower, DEFAULT_BALANCER_PREFIX } from "../lib/etcd/balancer_registry.ts";
import { createEtcdClient } from "../lib/etcd/etcd_client.ts";
import { type EntryName, spawnEntry } from "../lib/harness/entry_process.ts";
import { runLoad } from "../lib/client/load_run.ts";
import {
  preferredBalancer,
  type TaskClient,
  type TaskClientOptions,
} from "../lib/client/task_client.ts";
import { createLoadBalancerClient } from "../lib/wire/proto.ts";
import { startSystem, type TestSystem } from "./_harness.ts";
import { freePort, type Started, waitFor, waitForServers } from "./_system.ts";

/** The balancers registered in etcd, sorted. */
async function registered(endpoint: string): Promise<string[]> {
  const client = createEtcdClient([endpoint]);
  try {
    const kvs = await client.getAll().prefix(DEFAULT_BALANCER_PREFIX).strings();
    return Object.keys(kvs).map((k) => k.slice(DEFAULT_BALANCER_PREFIX.length)).sort();
  } finally {
    client.close();
  }
}

Deno.test("each balancer registers under /balancers/ and deregisters on stop", async () => {
  await using sys = await startSystem({ etcd: true });
  const a = await sys.balancer(sys.onEtcd());
  const b = await sys.balancer(sys.onEtcd());
  const both = [a.address, b.address].sort();
  await waitFor(
    "both balancers registered",
    async () => (await registered(sys.etcd.endpoint)).join() === both.join(),
    10_000,
  );
  await a.process.stop(5_000);
  await waitFor(
    "a's key deleted",
    async () => (await registered(sys.etcd.endpoint)).join() === b.address,
    5_000,
  );
});

Deno.test("backends with --etcd report their load to every live balancer", async () => {
  await using sys = await startSystem({ etcd: true });
  const balancers = [await sys.balancer(sys.onEtcd()), await sys.balancer(sys.onEtcd())];
  const backends = [1, 2, 3].map(() => sys.backend(sys.onEtcd()));
  const lbs = balancers.map((b) => sys.lbClient(b.address));
  const addresses = backends.map((b) => b.address);
  for (const lb of lbs) await waitForServers(lb, addresses, 15_000, true);
  // Each knows there are two replicas, for its load-aware policies.
  for (const balancer of balancers) {
    await waitFor(
      "the balancer to see 2 replicas",
      () => balancer.process.log().includes("2 balancer(s) live"),
      5_000,
    );
  }
});

/** Two balancers and three backends on the system's etcd, every backend's load reaching both. */
async function startReplicas(sys: TestSystem) {
  const started: Started[] = [];
  for (let i = 0; i < 2; i++) started.push(await sys.balancer(sys.onEtcd()));
  const balancers = started.sort((a, b) => a.address < b.address ? -1 : 1);
  const backends = [1, 2, 3].map(() => sys.backend(sys.onEtcd()));
  await waitForLoads(balancers, backends);
  return { balancers, backends };
}

/** Waits until every balancer lists every backend with a load report. */
async function waitForLoads(balancers: Started[], backends: Started[]): Promise<void> {
  const lbs = balancers.map((b) => createLoadBalancerClient(b.address));
  try {
    const addresses = backends.map((b) => b.address);
    for (const lb of lbs) await waitForServers(lb, addresses, 15_000, true);
  } finally {
    for (const lb of lbs) lb.close();
  }
}

Deno.test("preferredBalancer(): clients spread evenly, and a balancer joining or leaving moves only the clients that prefer it", () => {
  const four = ["10.0.0.1:50051", "10.0.0.2:50051", "10.0.0.3:50051", "10.0.0.4:50051"];
  const ids = Array.from({ length: 4_000 }, (_, i) => `client-${i}`);
  const before = ids.map((id) => preferredBalancer(id, four));
  const counts = four.map((a) => before.filter((b) => b === a).length);
  for (const n of counts) assert.ok(n > 800 && n < 1_200, `uneven spread: ${counts}`);
  // One leaves: only its clients move.
  const three = four.slice(0, 3);
  ids.forEach((id, i) => {
    const after = preferredBalancer(id, three);
    if (before[i] !== four[3]) assert.equal(after, before[i], id);
  });
  // One joins: the clients that move all move to it, about a fifth of them.
  const five = [...four, "10.0.0.5:50051"];
  let moved = 0;
  ids.forEach((id, i) => {
    const after = preferredBalancer(id, five);
    if (after !== before[i]) {
      assert.equal(after, five[4], id);
      moved++;
    }
  });
  assert.ok(moved > 600 && moved < 1_000, `${moved} of 4,000 moved`);
  // The order of the list does not matter; an empty list has no preference.
  assert.equal(preferredBalancer("c", [...four].reverse()), preferredBalancer("c", four));
  assert.equal(preferredBalancer("c", []), undefined);
});

/** A client id that prefers `address` among `addresses`. */
function idPreferring(address: string, addresses: readonly string[], name: string): string {
  for (let i = 0;; i++) {
    if (preferredBalancer(`${name}-${i}`, addresses) === address) return `${name}-${i}`;
  }
}

/**
 * Runs `clients` under load for `durationMs`, SIGKILLs `victim` after `killAfterMs`, and returns
 * each client's summary.
 */
async function loadThroughKill(
  clients: TaskClient[],
  victim: Started,
  killAfterMs: number,
  durationMs: number,
) {
  const runs = clients.map((client) =>
    runLoad({ client, taskType: "SIMPLE", durationMs, concurrency: 2 })
  );
  await sleep(killAfterMs, new AbortController().signal);
  for (const client of clients) assert.equal(client.balancer, victim.address);
  victim.process.signal("SIGKILL");
  return await Promise.all(runs);
}

Deno.test("clients given two balancers spread by id, fail over when theirs is SIGKILLed (watch mode loses nothing, lookaside is bounded), and move back once it answers again", async () => {
  await using sys = await startSystem({ etcd: true });
  const { balancers } = await startReplicas(sys);
  const [victim, survivor] = balancers;
  const addresses = balancers.map((b) => b.address);
  const make = (mode: TaskClientOptions["mode"]) =>
    sys.taskClient({
      balancers: addresses,
      mode,
      clientId: idPreferring(victim.address, addresses, mode!),
    });
  const clients = [make("watch"), make("lookaside")];
  // Another id starts at the other balancer: clients spread over both.
  assert.equal(
    preferredBalancer(idPreferring(survivor.address, addresses, "x"), addresses),
    survivor.address,
  );
  const [watch, lookaside] = await loadThroughKill(clients, victim, 1_500, 4_000);
  console.log(
    `[replicas] SIGKILL of balancer ${victim.address} under load: watch ${watch.requests} ` +
      `requests, ${watch.failed} failed, ${clients[0].failovers} failover(s); lookaside ` +
      `${lookaside.requests} requests, ${lookaside.failed} failed, ${lookaside.retried} ` +
      `retried, ${clients[1].failovers} failover(s)`,
  );
  assert.equal(watch.failed, 0, JSON.stringify(watch.failuresByCode));
  // At most the tasks in flight when it died; the retry on the next balancer saves them.
  assert.ok(lookaside.failed <= 2, JSON.stringify(lookaside.failuresByCode));
  for (const client of clients) {
    assert.equal(client.balancer, survivor.address);
    assert.equal(client.failovers, 1);
  }
  assert.ok(lookaside.requests > 100 && watch.requests > 100);

  // A balancer again on the victim's port: both clients move back, off the task path.
  await sys.balancer(sys.onEtcd(), { port: victim.port });
  await waitFor(
    "both clients back on their own balancer within 10 s",
    () => clients.every((client) => client.balancer === victim.address),
    10_000,
  );
  const after = await Promise.all(
    clients.map((client) => runLoad({ client, taskType: "SIMPLE", requests: 50, concurrency: 2 })),
  );
  for (const [i, summary] of after.entries()) {
    assert.equal(summary.failed, 0, JSON.stringify(summary.failuresByCode));
    assert.equal(clients[i].returns, 1);
    assert.equal(clients[i].failovers, 1);
  }
});

Deno.test("a client finds the balancers in etcd; a killed balancer's key leaves with its lease, backends stop reporting to it, and a new balancer gets every report", async () => {
  await using sys = await startSystem({ etcd: true });
  const { balancers, backends } = await startReplicas(sys);
  const [victim] = balancers;
  const etcdClient = sys.etcdClient();
  const follower = new BalancerFollower();
  await follower.start(etcdClient, DEFAULT_BALANCER_PREFIX);
  sys.defer(() => follower.stop());
  const client = sys.taskClient({
    balancers: follower.set,
    clientId: idPreferring(victim.address, balancers.map((b) => b.address), "e"),
  });
  assert.deepEqual(client.balancers(), balancers.map((b) => b.address));
  const [summary] = await loadThroughKill([client], victim, 1_000, 2_500);
  console.log(
    `[replicas] balancers found in etcd, SIGKILL of ${victim.address}: ${summary.requests} ` +
      `requests, ${summary.failed} failed, ${client.failovers} failover(s)`,
  );
  assert.ok(summary.failed <= 2, JSON.stringify(summary.failuresByCode));
  const killedAt = performance.now();
  await waitFor(
    `${victim.address} to leave /balancers/`,
    async () => !(await registered(sys.etcd.endpoint)).includes(victim.address),
    15_000,
  );
  await waitFor("the client to forget it", () => client.balancers().length === 1, 5_000);
  const goneS = (performance.now() - killedAt) / 1_000;
  for (const backend of backends) {
    await waitFor(
      `${backend.address} to stop reporting to ${victim.address}`,
      () => backend.process.log().includes(`stopped reporting to balancer ${victim.address}`),
      5_000,
    );
  }
  const joinedAt = performance.now();
  const third = await sys.balancer(sys.onEtcd());
  await waitForLoads([third], backends);
  console.log(
    `[replicas] killed balancer's key gone ${goneS.toFixed(1)} s after SIGKILL (lease TTL 5 s); ` +
      `a new balancer had reports from all ${backends.length} backends ` +
      `${((performance.now() - joinedAt) / 1_000).toFixed(1)} s after it started`,
  );
});

Deno.test("client --balancers-etcd finds the live balancers and reports its failovers", async () => {
  await using sys = await startSystem({ etcd: true });
  await startReplicas(sys);
  const child = sys.spawn("client", [
    "--balancers-etcd",
    sys.etcd.endpoint,
    "--requests",
    "50",
    "--concurrency",
    "2",
    "--json",
  ], { captureStdout: true });
  assert.equal((await child.status).code, 0, child.log());
  const summary = JSON.parse(child.stdout());
  assert.equal(summary.succeeded, 50);
  assert.equal(summary.balancerFailovers, 0);
});

/** The sum of the balancer's `lb_picks_total` samples, from `/metrics` on `httpPort`. */
async function picks(httpPort: number): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${httpPort}/metrics`, {
    signal: AbortSignal.timeout(2_000),
  });
  const lines = (await response.text()).split("\n");
  return lines.filter((line) => line.startsWith("lb_picks_total{"))
    .reduce((sum, line) => sum + Number(line.split(" ").at(-1)), 0);
}

/** Waits until `balancer` has a `WatchServers` subscriber (its debug log says so). */
async function waitForWatcher(balancer: Started, what: string): Promise<void> {
  await waitFor(what, () => /Watcher .* subscribed/.test(balancer.process.log()), 10_000);
}

Deno.test("client --balancers-etcd moves back to its own balancer once it answers again after a SIGKILL: watch mode loses nothing, lookaside is bounded", async () => {
  await using sys = await startSystem({ etcd: true });
  const http = [freePort(), freePort()];
  const withHttp = (i: number) => sys.onEtcd("--http-port", String(http[i]));
  const [a, b] = [await sys.balancer(withHttp(0)), await sys.balancer(withHttp(1))];
  const backends = [1, 2].map(() => sys.backend(sys.onEtcd()));
  await waitForLoads([a, b], backends);
  // One id for both clients, preferring A among the two.
  const id = idPreferring(a.address, [a.address, b.address], "back");
  const clients = ["watch", "lookaside"].map((mode) =>
    sys.spawn("client", [
      ...["--balancers-etcd", sys.etcd.endpoint, "--mode", mode, "--client-id", id],
      ...["--duration", "25", "--concurrency", "2", "--json", "--log-level", "info"],
    ], { name: `client ${mode}`, captureStdout: true })
  );
  await waitForWatcher(a, "the watch client on A");
  await waitFor("the lookaside client on A", async () => await picks(http[0]) > 0, 10_000);

  const killedAt = performance.now();
  a.process.signal("SIGKILL");
  await a.process.status;
  await waitForWatcher(b, "the watch client to fail over to B");
  await waitFor("the lookaside client to fail over to B", async () => await picks(http[1]) > 0);
  const onBS = (performance.now() - killedAt) / 1_000;

  // A again, on its port: a new process, so its counters start at zero.
  const again = await sys.balancer(withHttp(0), { port: a.port });
  const upAt = performance.now();
  await waitForWatcher(again, "the watch client back on A within 10 s");
  await waitFor("the lookaside client back on A within 10 s", async () => {
    return await picks(http[0]) > 0;
  }, 10_000);
  const backS = (performance.now() - upAt) / 1_000;

  const [watch, lookaside] = await Promise.all(clients.map(async (client) => {
    assert.equal((await client.status).code, 0, client.log());
    return JSON.parse(client.stdout());
  }));
  console.log(
    `[replicas] SIGKILL of the clients' own balancer: both on B ${onBS.toFixed(1)} s after; ` +
      `a balancer again on its port: both back ${backS.toFixed(1)} s after it answered; ` +
      `watch ${watch.requests} requests, ${watch.failed} failed, ${watch.balancerFailovers} ` +
      `failover(s), ${watch.balancerReturns} return(s); lookaside ${lookaside.requests} ` +
      `requests, ${lookaside.failed} failed, ${lookaside.balancerFailovers} failover(s), ` +
      `${lookaside.balancerReturns} return(s)`,
  );
  assert.equal(watch.failed, 0, JSON.stringify(watch.failuresByCode));
  assert.ok(lookaside.failed <= 2, JSON.stringify(lookaside.failuresByCode));
  for (const summary of [watch, lookaside]) {
    assert.equal(summary.balancerFailovers, 1);
    assert.equal(summary.balancerReturns, 1);
  }
});

const BAD_FLAGS: [EntryName, string[], RegExp][] = [
  [
    "balancer",
    ["--etcd", "http://127.0.0.1:1", "--balancer-prefix", "/servers/b/"],
    /'--balancer-prefix' must not overlap the servers' prefix '\/servers\/'/,
  ],
  [
    "backend",
    ["--port", "0", "--etcd", "http://127.0.0.1:1", "--balancer-prefix", ""],
    /'--balancer-prefix' must not be empty/,
  ],
  ["client", ["--balancers-etcd", "nowhere"], /'--balancers-etcd' must be a comma-separated/],
  ["client", ["--balancer", "127.0.0.1:1,nowhere"], /'--balancer' must be host:port/],
  [
    "client",
    ["--balancers-etcd", "http://127.0.0.1:1", "--balancer", "127.0.0.1:1"],
    /'--balancer' and '--balancers-etcd' exclude each other/,
  ],
  ["client", ["--etcd-cert", "secrets/c.crt"], /'--etcd-cert' needs '--balancers-etcd URL'/],
  [
    "client",
    ["--balancers-etcd", "http://127.0.0.1:1", "--etcd-ca", "secrets/ca.crt"],
    /'--etcd-ca' needs https:\/\/ endpoints in '--balancers-etcd'/,
  ],
  [
    "client",
    ["--balancers-etcd", "https://127.0.0.1:1", "--etcd-user", "root"],
    /'--etcd-user' and '--etcd-password-file' go together/,
  ],
];

Deno.test("bad balancer-list flags are refused with one line naming the flag", async () => {
  await Promise.all(BAD_FLAGS.map(async ([entry, args, pattern]) => {
    const child = spawnEntry(entry, args);
    const status = await child.status;
    const lines = child.log().split("\n").filter((l) => l.trim() !== "");
    assert.equal(status.code, 2, `${entry} ${args.join(" ")}: ${child.log()}`);
    assert.equal(lines.length, 1, `${entry} ${args.join(" ")} printed:\n${child.log()}`);
    assert.match(lines[0], pattern);
  }));
});
