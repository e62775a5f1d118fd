/** ServerSet, Picker and BuiltinRegistry: the balancer's in-memory state, without processes. */
import assert from "node:assert/strict";
import { BuiltinRegistry } from "../lib/balancer/builtin_discovery.ts";
import { Picker } from "../lib/picking/picker.ts";
import { ServerSet } from "../lib/picking/server_set.ts";
import {
  consistentHash,
  leastLoad,
  pickFirst,
  powerOfTwo,
  roundRobin,
  weightedRoundRobin,
} from "../policies/mod.ts";

Deno.test("ServerSet.report() refuses an unknown server and changes nothing", () => {
  const set = new ServerSet(() => 0);
  set.add("10.0.0.1:1");
  const before = set.snapshot;
  assert.equal(set.report("10.0.0.9:1", { cpuLoad: 5, inFlight: 0 }), false);
  assert.equal(set.snapshot, before);
  assert.deepEqual(set.addresses(), ["10.0.0.1:1"]);
});

Deno.test("ServerSet.reportOrca() records a server's ORCA load unless it sent a report of its own in the last 5 s", () => {
  let now = 0;
  const set = new ServerSet(() => now);
  set.add("10.0.0.1:1");
  set.add("10.0.0.2:1");
  const load = (address: string) => {
    set.flush();
    return set.snapshot.servers.find((s) => s.address === address)?.load?.cpuLoad;
  };
  // Only ORCA (a grpc-go server): every ORCA report is its load.
  assert.equal(set.reportOrca("10.0.0.2:1", { cpuLoad: 40, inFlight: 0 }), true);
  now = 1_000;
  assert.equal(set.reportOrca("10.0.0.2:1", { cpuLoad: 45, inFlight: 0 }), true);
  assert.equal(load("10.0.0.2:1"), 45);
  // Both ways (ours): its own reports win while they keep coming.
  set.report("10.0.0.1:1", { cpuLoad: 10, inFlight: 0 });
  now = 5_999;
  assert.equal(set.reportOrca("10.0.0.1:1", { cpuLoad: 99, inFlight: 0 }), false);
  assert.equal(load("10.0.0.1:1"), 10);
  // Its own reports stopped: ORCA takes over.
  now = 6_000;
  assert.equal(set.reportOrca("10.0.0.1:1", { cpuLoad: 20, inFlight: 0 }), true);
  assert.equal(load("10.0.0.1:1"), 20);
  assert.equal(set.reportOrca("10.0.0.9:1", { cpuLoad: 20, inFlight: 0 }), false);
});

Deno.test("ServerSet keeps ids in the order servers became known, across reports", () => {
  let now = 0;
  const set = new ServerSet(() => now);
  set.add("a:1");
  set.add("b:1");
  now = 7;
  set.report("a:1", { cpuLoad: 50, inFlight: 2 });
  const { servers } = set.snapshot;
  assert.deepEqual(servers.map((s) => s.address), ["a:1", "b:1"]);
  assert.ok(servers[0].id < servers[1].id);
  assert.deepEqual(servers[0].load, {
    cpuLoad: 50,
    inFlight: 2,
    reportedAtMs: 7,
    seq: 0,
    qps: 0,
    eps: 0,
    queueLength: 0,
  });
  set.report("a:1", { cpuLoad: 10, inFlight: 0 });
  assert.equal(set.snapshot.servers[0].load?.seq, 1);
});

Deno.test("ServerSet.replaceAll() adds the new, removes the missing and keeps the rest", () => {
  const set = new ServerSet(() => 0);
  set.add("a:1");
  set.add("b:1");
  set.report("b:1", { cpuLoad: 30, inFlight: 0 });
  const idB = set.snapshot.servers[1].id;
  assert.deepEqual(set.replaceAll(["b:1", "c:1"]), { added: ["c:1"], removed: ["a:1"] });
  const { servers } = set.snapshot;
  assert.deepEqual(servers.map((s) => s.address), ["b:1", "c:1"]);
  assert.equal(servers[0].id, idB);
  assert.equal(servers[0].load?.cpuLoad, 30);
});

Deno.test("ServerSet coalesces a burst of changes into one snapshot", async () => {
  const set = new ServerSet(() => 0);
  let published = 0;
  set.onSnapshot(() => published++);
  set.add("a:1");
  for (let i = 0; i < 100; i++) set.report("a:1", { cpuLoad: i % 100, inFlight: 0 });
  await Promise.resolve();
  assert.equal(published, 1);
  assert.equal(set.snapshot.servers[0].load?.seq, 99);
});

Deno.test("Picker stops naming a removed server at once", () => {
  const set = new ServerSet(() => 0);
  set.add("a:1");
  set.add("b:1");
  const picker = new Picker(roundRobin(), set);
  set.remove("b:1");
  for (let i = 0; i < 5; i++) {
    const r = picker.pick("c");
    assert.ok(r.kind === "pick" && r.server.address === "a:1");
  }
  set.remove("a:1");
  assert.equal(picker.pick("c").kind, "none");
  picker.close();
});

Deno.test("BuiltinRegistry drops a server not heard from for the TTL, and heartbeats keep it", () => {
  let now = 0;
  const set = new ServerSet(() => now);
  const registry = new BuiltinRegistry(set, 1_000, () => now);
  registry.register("a:1");
  registry.register("b:1");
  now = 900;
  assert.equal(registry.heartbeat("a:1"), true);
  assert.equal(registry.heartbeat("zz:1"), false);
  now = 1_500;
  assert.deepEqual(registry.sweep(), ["b:1"]);
  assert.deepEqual(set.addresses(), ["a:1"]);
  now = 2_000;
  assert.deepEqual(registry.sweep(), ["a:1"]);
  assert.equal(set.size, 0);
});

Deno.test("Picker names a server other than those to avoid, even under pick_first", () => {
  const set = new ServerSet(() => 0);
  set.add("a:1");
  set.add("b:1");
  set.add("c:1");
  const picker = new Picker(pickFirst(), set);
  const named = (avoid: string[]) => {
    const r = picker.pick("c", avoid);
    return r.kind === "pick" ? r.server.address : undefined;
  };
  assert.equal(named([]), "a:1");
  assert.equal(named(["a:1"]), "b:1");
  assert.equal(named(["a:1", "b:1"]), "c:1");
  // Every server avoided: one is named anyway rather than none.
  assert.ok(named(["a:1", "b:1", "c:1"]) !== undefined);
  picker.close();
});

Deno.test("Picker.setPolicy() with changes pending never hands one policy's state to another", () => {
  const set = new ServerSet(() => 0);
  set.add("a:1");
  set.add("b:1");
  const picker = new Picker(leastLoad(), set);
  picker.pick("c");
  for (const policy of [weightedRoundRobin(), consistentHash(), powerOfTwo(), leastLoad()]) {
    set.report("a:1", { cpuLoad: 10, inFlight: 0, qps: 5 }); // pending: not flushed yet
    picker.setPolicy(policy as never);
    const r = picker.pick("c");
    assert.ok(r.kind === "pick");
  }
  picker.close();
});

Deno.test("ServerSet.setHealthy() ejects a member from the snapshot and readmits it, keeping its id and load", () => {
  const set = new ServerSet(() => 0);
  const events: string[] = [];
  set.onMembership((address, joined) => events.push(`${joined ? "+" : "-"}${address}`));
  set.add("a:1");
  set.add("b:1");
  set.report("b:1", { cpuLoad: 30, inFlight: 1 });
  const id = set.snapshot.servers[1].id;
  assert.equal(set.setHealthy("b:1", false), true);
  assert.equal(set.setHealthy("b:1", false), false); // no change
  assert.deepEqual(set.snapshot.servers.map((s) => s.address), ["a:1"]);
  assert.deepEqual(set.ejected().map((s) => s.address), ["b:1"]);
  assert.equal(set.isHealthy("b:1"), false);
  assert.equal(set.report("b:1", { cpuLoad: 40, inFlight: 2 }), true); // still a member
  assert.equal(set.setHealthy("b:1", true), true);
  const b = set.snapshot.servers[1];
  assert.deepEqual([b.address, b.id, b.load?.cpuLoad], ["b:1", id, 40]);
  assert.equal(set.setHealthy("z:1", false), false); // not a member: nothing changes
  set.setHealthy("a:1", false);
  set.remove("a:1");
  assert.deepEqual(set.ejected(), []);
  assert.deepEqual(events, ["+a:1", "+b:1", "-a:1"]);
});

Deno.test("Picker counts picks by policy and server, across snapshots and policy changes", () => {
  const set = new ServerSet(() => 0);
  set.add("a:1");
  set.add("b:1");
  const picker = new Picker(roundRobin(), set, () => 0, () => 0);
  try {
    for (let i = 0; i < 4; i++) picker.pick("c");
    set.remove("a:1");
    set.flush();
    picker.pick("c"); // b:1, counted against the new snapshot
    picker.setPolicy(pickFirst());
    picker.pick("c");
    picker.pick("c", ["b:1"]); // b:1 is the only server: named again
    const counts = picker.pickCounts();
    assert.deepEqual(Object.fromEntries(counts.get("round_robin")!), { "a:1": 2, "b:1": 3 });
    assert.deepEqual(Object.fromEntries(counts.get("pick_first")!), { "b:1": 2 });
  } finally {
    picker.close();
  }
});
