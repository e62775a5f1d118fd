/**
 * The control-plane token (`--token-file`) against real balancer, backend and client processes:
 * control RPCs without it, or with a wrong one, answer UNAUTHENTICATED and change nothing;
 * `GetServer` stays open unless `--protect-get-server`.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { withToken } from "../lib/wire/auth.ts";
import { spawnEntry } from "../lib/harness/entry_process.ts";
import { type LoadBalancerClient, type ServerList, unary } from "../lib/wire/proto.ts";
import { testSecrets } from "./_secrets.ts";
import { startSystem, type TestSystem } from "./_harness.ts";
import { listServers, waitFor, waitForServers } from "./_system.ts";

const TOKEN = "s3cret-control-plane-token";

/** A client sending `token` (none when undefined). */
function connect(sys: TestSystem, address: string, token: string | undefined): LoadBalancerClient {
  return sys.lbClient(address, { channelOptions: withToken({}, token) });
}

/** Asserts `call` is refused with UNAUTHENTICATED and a message. */
async function assertUnauthenticated(what: string, call: Promise<unknown>): Promise<void> {
  await assert.rejects(call, (error: grpc.ServiceError) => {
    assert.equal(error.code, grpc.status.UNAUTHENTICATED, `${what}: ${error.message}`);
    assert.match(error.details, /token/, what);
    return true;
  });
}

/** Runs the client entry with `args`; resolves with its exit code and parsed JSON summary. */
async function runClient(args: string[]): Promise<{ code: number; out: string; log: string }> {
  const client = spawnEntry("client", args, { captureStdout: true });
  const status = await client.status;
  return { code: status.code, out: client.stdout(), log: client.log() };
}

Deno.test("balancer --token-file: control RPCs need the token; without it or with a wrong one nothing changes", async () => {
  await using secrets = await testSecrets();
  await using sys = await startSystem();
  const tokenFile = await secrets.write("token", `${TOKEN}\n`);
  const balancer = await sys.balancer(
    ["--token-file", tokenFile, "--builtin-ttl-ms", "60000", "--health-interval-ms", "0"],
    { clientOptions: withToken({}, TOKEN) },
  );
  const right = connect(sys, balancer.address, TOKEN);
  const strangers = {
    "no token": connect(sys, balancer.address, undefined),
    "a wrong token": connect(sys, balancer.address, `${TOKEN}x`),
    "a prefix of the token": connect(sys, balancer.address, TOKEN.slice(0, 5)),
  };
  const deadline = () => ({ deadline: Date.now() + 2_000 });
  await unary(right.RegisterServer, right, { server_address: "127.0.0.1:1" }, deadline());
  for (const [who, c] of Object.entries(strangers)) {
    await assertUnauthenticated(
      `RegisterServer with ${who}`,
      unary(c.RegisterServer, c, { server_address: "127.0.0.1:2" }, deadline()),
    );
    await assertUnauthenticated(
      `ReportLoad with ${who}`,
      unary(c.ReportLoad, c, { server_address: "127.0.0.1:1", cpu_load: 77 }, deadline()),
    );
    await assertUnauthenticated(
      `SetPolicy with ${who}`,
      unary(c.SetPolicy, c, { policy: "least_load" }, deadline()),
    );
    await assertUnauthenticated(`ListServers with ${who}`, listServers(c));
  }
  const before = await listServers(right);
  assert.equal(before.policy, "round_robin", "policy unchanged");
  assert.deepEqual(before.servers.map((s) => [s.server_address, s.has_load]), [
    ["127.0.0.1:1", false],
  ], "no server registered, no load taken");
  // With the token, the same calls work.
  await unary(
    right.ReportLoad,
    right,
    { server_address: "127.0.0.1:1", cpu_load: 50 },
    deadline(),
  );
  const set = await unary(right.SetPolicy, right, { policy: "least_load" }, deadline());
  assert.equal(set.previous, "round_robin");
  const after = await listServers(right);
  assert.equal(after.policy, "least_load");
  assert.equal(after.servers[0].cpu_load, 50);
});

Deno.test("token end to end: a backend and a client with --token-file work; GetServer is open by default; a backend without it is refused", async () => {
  await using secrets = await testSecrets();
  await using sys = await startSystem();
  const tokenFile = await secrets.write("token", TOKEN);
  const balancer = await sys.balancer(["--token-file", tokenFile], {
    clientOptions: withToken({}, TOKEN),
  });
  const withTokenBackend = sys.backend(["--balancer", balancer.address, "--token-file", tokenFile]);
  const stranger = sys.backend(["--balancer", balancer.address]);
  const lb = connect(sys, balancer.address, TOKEN);
  await waitForServers(lb, [withTokenBackend.address]);
  await waitFor(
    "the backend without the token to be refused",
    () => /UNAUTHENTICATED/.test(stranger.process.log()),
    15_000,
  );
  assert.deepEqual((await listServers(lb)).servers.map((s) => s.server_address), [
    withTokenBackend.address,
  ]);
  // GetServer is open: a client without the token runs tasks.
  const open = await runClient(["--balancer", balancer.address, "--requests", "4", "--json"]);
  assert.equal(open.code, 0, open.log);
  assert.equal(JSON.parse(open.out).failed, 0);
  // Admin calls need it.
  const refused = await runClient(["--balancer", balancer.address, "--list"]);
  assert.equal(refused.code, 1);
  assert.match(refused.log, /token/);
  const admin = await runClient([
    "--balancer",
    balancer.address,
    "--token-file",
    tokenFile,
    "--set-policy",
    "power_of_two",
    "--list",
    "--json",
  ]);
  assert.equal(admin.code, 0, admin.log);
  const list = JSON.parse(admin.out.split("\n").filter((l) => l.startsWith("{"))[0]);
  assert.equal(list.policy, "power_of_two");
});

Deno.test("balancer --protect-get-server: GetServer and WatchServers need the token too; the client with it works in both modes", async () => {
  await using secrets = await testSecrets();
  await using sys = await startSystem();
  const tokenFile = await secrets.write("token", TOKEN);
  const { balancer, backends: [backend], lb } = await sys.balancerWithBackends({
    balancerArgs: ["--token-file", tokenFile, "--protect-get-server"],
    backendArgs: ["--token-file", tokenFile],
    clientOptions: withToken({}, TOKEN),
  });
  const stranger = connect(sys, balancer.address, undefined);
  await assertUnauthenticated(
    "GetServer without the token",
    unary(stranger.GetServer, stranger, { client_id: "x" }, { deadline: Date.now() + 2_000 }),
  );
  const watchError = await new Promise<grpc.ServiceError>((resolve) => {
    const call = stranger.WatchServers({ client_id: "x" });
    call.on("data", (_: ServerList) => {});
    call.on("error", resolve);
  });
  assert.equal(watchError.code, grpc.status.UNAUTHENTICATED, watchError.message);
  const got = await unary(lb.GetServer, lb, { client_id: "x" }, { deadline: Date.now() + 2_000 });
  assert.equal(got.server_address, backend.address);
  for (const mode of ["lookaside", "watch"]) {
    const run = await runClient([
      "--balancer",
      balancer.address,
      "--token-file",
      tokenFile,
      "--mode",
      mode,
      "--requests",
      "4",
      "--json",
    ]);
    assert.equal(run.code, 0, run.log);
    assert.equal(JSON.parse(run.out).failed, 0, mode);
  }
  const refused = await runClient(["--balancer", balancer.address, "--requests", "1", "--json"]);
  assert.equal(refused.code, 1);
  assert.deepEqual(Object.keys(JSON.parse(refused.out).failuresByCode), ["UNAUTHENTICATED"]);
});
