/**
 * etcd values that are not an address or not valid JSON, seen by a real balancer process on a
 * real etcd: each is skipped with a warning naming its key, no phantom server appears, and the
 * balancer stays up and serves the one valid server. (`tests/etcd_test.ts` covers the same
 * rules in process, on `EtcdDiscovery` alone.)
 */
import assert from "node:assert/strict";
import { DEFAULT_ETCD_PREFIX } from "../lib/etcd/etcd_layout.ts";
import { unary } from "../lib/wire/proto.ts";
import { startSystem } from "./_harness.ts";
import { listServers, waitFor, waitForServers } from "./_system.ts";

/** Keys (under the prefix) and values that name no server. */
const GARBAGE: [key: string, value: string][] = [
  ["not-json", "{not json"],
  ["json-without-address", '{"host":"127.0.0.1","port":7001}'],
  ["address-not-a-string", '{"address":7001}'],
  ["not-an-address", "not an address"],
  ["port-zero", "127.0.0.1:0"],
  ["port-out-of-range", '{"address":"127.0.0.1:65536"}'],
  ["port-not-a-number", "127.0.0.1:http"],
  ["empty", ""],
  ["blank", "  \n"],
  ["value-of-100-kb", "x".repeat(100 * 1024)],
  ["binary", "\u0000\u00ff\ufffd:1"],
  ["127.0.0.1:7001", "127.0.0.1:7001:7002"],
];

Deno.test("a balancer process skips etcd values that are not an address or not JSON, warns naming each key, and lists only the valid server", async () => {
  await using sys = await startSystem({ etcd: true });
  const etcdClient = sys.etcdClient();
  // Info level: the warnings stay among the kept log lines (debug fills them with checks).
  const balancer = await sys.balancer(sys.onEtcd("--log-level", "info"));
  const lb = sys.lbClient(balancer.address);
  for (const [key, value] of GARBAGE) {
    await etcdClient.put(`${DEFAULT_ETCD_PREFIX}${key}`).value(value);
  }
  const backend = sys.backend(sys.onEtcd());
  await waitForServers(lb, [backend.address]);
  for (const [key] of GARBAGE) {
    const named = `Skipped etcd key ${DEFAULT_ETCD_PREFIX}${key}:`;
    await waitFor(`a warning naming ${key}`, () => balancer.process.log().includes(named));
  }
  // A garbage key deleted, another turned garbage again: still no phantom, still up.
  await etcdClient.delete().key(`${DEFAULT_ETCD_PREFIX}not-json`);
  await etcdClient.put(`${DEFAULT_ETCD_PREFIX}empty`).value("{}");
  await waitFor(
    "the rewritten key's warning",
    () => balancer.process.log().includes(`${DEFAULT_ETCD_PREFIX}empty: the JSON value has no`),
  );
  const list = await listServers(lb);
  assert.deepEqual(list.servers.map((s) => s.server_address), [backend.address]);
  assert.equal(balancer.process.exited, false, balancer.process.log());
  const named = await unary(lb.GetServer, lb, { client_id: "c" });
  assert.equal(named.server_address, backend.address);
  const longest = Math.max(...balancer.process.log().split("\n").map((l) => l.length));
  assert.ok(longest < 2_000, `a log line of ${longest} characters: values are shown cut short`);
});
