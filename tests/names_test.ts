/**
 * Servers registered in etcd by name, as the original system's Python backends register
 * (`/servers/localhost:PORT` with the bare value `localhost:PORT`), by a JSON value under any
 * key, or by an IPv6 literal (`[::1]:PORT`): a real balancer dials and health-checks each as
 * given, lists it, picks it, pushes it to watchers under that name, and the shipped client
 * reaches it, in lookaside and in watch mode.
 *
 * (Values that are not an address are covered by `tests/etcd_values_test.ts`.)
 */
import assert from "node:assert/strict";
import { DEFAULT_ETCD_PREFIX } from "../lib/etcd/etcd_layout.ts";
import { type ServerList, unary } from "../lib/wire/proto.ts";
import { startSystem, type TestSystem } from "./_harness.ts";
import { listServers, type Started, waitFor, waitForServers } from "./_system.ts";

/**
 * Options of a backend the balancer knows only from a key the test writes: it reports to a
 * balancer that is not there (as the original backends report to none of ours), so it is in no
 * etcd key of its own.
 */
const UNREGISTERED = ["--balancer", "127.0.0.1:1"];

/**
 * Asserts that `balancer` serves exactly `addresses`, named as given: listed and healthy, each
 * named by `GetServer`, pushed by `WatchServers`, and reached by the shipped client in both
 * modes on all of its tasks.
 */
async function assertServesByName(
  sys: TestSystem,
  balancer: Started,
  addresses: string[],
): Promise<void> {
  const want = [...addresses].sort();
  const lb = sys.lbClient(balancer.address);
  const watched: ServerList[] = [];
  const stream = lb.WatchServers({ client_id: "names" });
  stream.on("data", (message: ServerList) => watched.push(message));
  stream.on("error", () => {});
  sys.defer(() => stream.cancel());
  await waitForServers(lb, addresses, 20_000).catch(async (error) => {
    // Say which servers were left out of the picks, and the balancer's reason (its warnings).
    const list = await listServers(lb).catch(() => undefined);
    const warnings = balancer.process.log().split("\n").filter((l) => l.includes("[WRN]"));
    throw new Error(
      `${error.message}\nListServers: ${JSON.stringify(list?.servers)}\n` +
        `balancer warnings:\n${warnings.slice(-10).join("\n")}`,
      { cause: error },
    );
  });
  const list = await listServers(lb);
  assert.deepEqual(list.servers.map((s) => s.server_address).sort(), want);
  assert.ok(list.servers.every((s) => s.healthy), JSON.stringify(list.servers));

  const picked = new Set<string>();
  await waitFor(`GetServer to name each of [${want}]`, async () => {
    const { server_address } = await unary(lb.GetServer, lb, { client_id: "names" }, {
      deadline: Date.now() + 2_000,
    });
    picked.add(server_address);
    return picked.size === want.length;
  });
  assert.deepEqual([...picked].sort(), want);

  await waitFor(`WatchServers to push [${want}]`, () => {
    const names = watched.at(-1)?.servers.map((s) => s.server_address).sort() ?? [];
    return names.join(",") === want.join(",");
  });

  for (const mode of ["lookaside", "watch"]) {
    const client = sys.spawn("client", [
      "--balancer",
      balancer.address,
      "--mode",
      mode,
      "--requests",
      "20",
      "--json",
    ], { captureStdout: true });
    const status = await client.status;
    assert.equal(status.code, 0, `${mode}: ${client.log()}`);
    const summary = JSON.parse(client.stdout());
    assert.equal(summary.succeeded, 20, `${mode}: ${client.stdout()}`);
    assert.equal(summary.failed, 0, `${mode}: ${client.stdout()}`);
    assert.deepEqual(Object.keys(summary.perServer).sort(), want, `${mode}: perServer`);
  }
}

Deno.test("a balancer on etcd serves localhost:PORT servers by that name: a bare value, JSON under any key, and a backend's --advertise localhost", async () => {
  await using sys = await startSystem({ etcd: true });
  const etcd = sys.etcdClient();
  const balancer = await sys.balancer(sys.onEtcd("--log-level", "info"));
  const bare = sys.backend([...UNREGISTERED, "--advertise", "localhost"]);
  const json = sys.backend([...UNREGISTERED, "--advertise", "localhost"]);
  const advertised = sys.backend(sys.onEtcd("--advertise", "localhost"));
  const [bareName, jsonName, advertisedName] = [bare, json, advertised].map((b) =>
    `localhost:${b.port}`
  );
  // The original backends' way: the address as key and as bare value.
  await etcd.put(`${DEFAULT_ETCD_PREFIX}${bareName}`).value(bareName);
  await etcd.put(`${DEFAULT_ETCD_PREFIX}x`).value(JSON.stringify({ address: jsonName }));

  await assertServesByName(sys, balancer, [bareName, jsonName, advertisedName]);
  const registered = await etcd.get(`${DEFAULT_ETCD_PREFIX}${advertisedName}`).string();
  assert.equal(JSON.parse(registered ?? "{}").address, advertisedName);
});

Deno.test("a balancer on etcd serves [::1]:PORT servers by that name: a backend on --host ::1 registered by itself, and a bare value", async () => {
  await using sys = await startSystem({ etcd: true });
  const etcd = sys.etcdClient();
  const balancer = await sys.balancer(sys.onEtcd("--log-level", "info"));
  const registering = sys.backend(["--host", "::1", ...sys.onEtcd()]);
  const bare = sys.backend([...UNREGISTERED, "--host", "::1"]);
  const [registeringName, bareName] = [registering, bare].map((b) => `[::1]:${b.port}`);
  await etcd.put(`${DEFAULT_ETCD_PREFIX}${bareName}`).value(bareName);

  await assertServesByName(sys, balancer, [registeringName, bareName]);
  const registered = await etcd.get(`${DEFAULT_ETCD_PREFIX}${registeringName}`).string();
  assert.equal(JSON.parse(registered ?? "{}").address, registeringName);
});
