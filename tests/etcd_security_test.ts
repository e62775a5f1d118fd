/**
 * etcd over TLS and with username/password, against a real etcd and real balancer and backend
 * processes started with `--etcd-ca`, `--etcd-cert`, `--etcd-key`, `--etcd-user` and
 * `--etcd-password-file`; and the one-line errors of those flags.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { etcdSecurityFlags } from "../lib/etcd/etcd_flags.ts";
import { spawnEntry } from "../lib/harness/entry_process.ts";
import { createBackendClient, type LoadBalancerClient, unary } from "../lib/wire/proto.ts";
import type { StartEtcdOptions } from "./_etcd.ts";
import { testSecrets } from "./_secrets.ts";
import { startSystem, type TestSystem } from "./_harness.ts";
import { listServers, type Started, waitFor, waitForServers } from "./_system.ts";

const FIXTURES = new URL("fixtures/tls/", import.meta.url).pathname;
const PASSWORD = "etcd-root-pa55word";

/** etcd serving TLS with the fixture server certificate. */
function etcdTls(clientCertAuth: boolean): StartEtcdOptions["tls"] {
  return {
    caFile: `${FIXTURES}ca.crt`,
    certFile: `${FIXTURES}server.crt`,
    keyFile: `${FIXTURES}server.key`,
    clientCertAuth,
  };
}

/** Asks the balancer for a server, then runs a SIMPLE task there; resolves with that server. */
async function taskThroughBalancer(lb: LoadBalancerClient): Promise<string> {
  const { server_address } = await unary(lb.GetServer, lb, { client_id: "t" }, {
    deadline: Date.now() + 2_000,
  });
  const backend = createBackendClient(server_address);
  try {
    const response = await unary(backend.ProcessTask, backend, {
      task_id: "etcd-security",
      task_type: "SIMPLE",
    }, { deadline: Date.now() + 2_000 });
    assert.ok(response.result, "the task has a result");
    return server_address;
  } finally {
    backend.close();
  }
}

/**
 * A balancer and a backend with `flags`: the backend registers, is listed and runs a task.
 * Resolves with the backend.
 */
async function assertEndToEnd(sys: TestSystem, flags: string[]): Promise<Started> {
  const balancer = await sys.balancer(flags);
  const backend = sys.backend(flags);
  const lb = sys.lbClient(balancer.address);
  await waitForServers(lb, [backend.address]);
  const served = await waitFor("a task through the balancer", () => taskThroughBalancer(lb));
  assert.equal(served, backend.address);
  return backend;
}

/** Waits until `process`'s log matches `pattern`; fails early if it exits. */
async function waitForLog(entry: Started, pattern: RegExp): Promise<void> {
  await waitFor(`log of ${entry.process.name} to match ${pattern}`, () => {
    if (entry.process.exited) throw new Error(`exited:\n${entry.process.log()}`);
    return pattern.test(entry.process.log());
  });
}

Deno.test("etcd over TLS with client certificates: a backend registers, the balancer lists it, a task runs", async () => {
  await using secrets = await testSecrets();
  await using sys = await startSystem({ etcd: { tls: etcdTls(true) } });
  await assertEndToEnd(sys, [
    "--etcd",
    sys.etcd.endpoint,
    "--etcd-ca",
    secrets.path("ca.crt"),
    "--etcd-cert",
    secrets.path("client.crt"),
    "--etcd-key",
    secrets.path("client.key"),
  ]);
});

Deno.test("a balancer that does not trust etcd's certificate keeps serving, retries, and logs why", async () => {
  await using secrets = await testSecrets();
  await using sys = await startSystem({ etcd: { tls: etcdTls(false) } });
  // A CA, but not the one that signed etcd's certificate.
  const balancer = await sys.balancer([
    "--etcd",
    sys.etcd.endpoint,
    "--etcd-ca",
    secrets.path("untrusted-ca.crt"),
  ]);
  await waitForLog(balancer, /Could not list .* unable to verify the first certificate/);
  const lb = sys.lbClient(balancer.address);
  await assert.rejects(
    unary(lb.GetServer, lb, { client_id: "t" }, { deadline: Date.now() + 2_000 }),
    (error: grpc.ServiceError) => error.code === grpc.status.UNAVAILABLE,
  );
  assert.deepEqual((await listServers(lb)).servers, []);
  assert.equal(balancer.process.exited, false, "the balancer keeps running and retrying");
});

Deno.test("a balancer given https:// etcd and no --etcd-ca stops with one line naming --etcd-ca", async () => {
  // Under the deno task's permissions Deno may not read the system's CA bundle.
  const balancer = spawnEntry("balancer", ["--port", "0", "--etcd", "https://127.0.0.1:2379"]);
  const status = await balancer.status;
  assert.equal(status.code, 1, balancer.log());
  assert.match(
    balancer.log(),
    /^error: Cannot connect to etcd over TLS as no CA was given.*--etcd-ca/,
  );
  assert.equal(balancer.log().split("\n").length, 1, balancer.log());
});

Deno.test("etcd with auth: the right user and password work end to end; a wrong password is one clear error", async () => {
  await using secrets = await testSecrets();
  await using sys = await startSystem({ etcd: { tls: etcdTls(false), rootPassword: PASSWORD } });
  const tls = ["--etcd", sys.etcd.endpoint, "--etcd-ca", secrets.path("ca.crt")];
  const right = await secrets.write("etcd-password", `${PASSWORD}\n`);
  const good = await assertEndToEnd(sys, [
    ...tls,
    "--etcd-user",
    "root",
    "--etcd-password-file",
    right,
  ]);

  const wrong = await secrets.write("wrong-password", "not-the-password");
  const flags = [...tls, "--etcd-user", "root", "--etcd-password-file", wrong];
  const balancer = await sys.balancer(flags);
  const backend = sys.backend(flags);
  const refused = /authentication failed, invalid user ID or password/;
  await waitForLog(balancer, refused);
  await waitForLog(backend, refused);
  for (const entry of [balancer, backend]) {
    // One warning per etcd task (servers, and the balancers' own prefix); the retries that
    // follow log at debug level.
    const warnings = entry.process.log().split("\n").filter((line) =>
      line.includes("[WRN]") && refused.test(line)
    ).map((line) => line.replace(/^\S+ /, "").replace(/\d+ ms/, "N ms"));
    assert.ok(warnings.length >= 1, entry.process.log());
    assert.equal(new Set(warnings).size, warnings.length, entry.process.log());
    assert.equal(entry.process.exited, false, "it keeps retrying");
  }
  const lb = sys.lbClient(balancer.address);
  assert.deepEqual((await listServers(lb)).servers, [], "nothing listed without auth");
  const root = sys.etcdClient([sys.etcd.endpoint], {
    security: {
      tls: { caPem: await Deno.readTextFile(`${FIXTURES}ca.crt`) },
      auth: { username: "root", password: PASSWORD },
    },
  });
  const keys = await root.getAll().prefix("/servers/").keys();
  assert.deepEqual(keys, [`/servers/${good.address}`], "only the right backend");
});

Deno.test("client --balancers-etcd with the etcd TLS and auth flags finds a balancer in an etcd with TLS and auth; without --etcd-ca, or with a wrong password, it stops saying why", async () => {
  await using secrets = await testSecrets();
  await using sys = await startSystem({ etcd: { tls: etcdTls(true), rootPassword: PASSWORD } });
  const password = await secrets.write("etcd-password", PASSWORD);
  const security = [
    ...["--etcd-cert", secrets.path("client.crt"), "--etcd-key", secrets.path("client.key")],
    ...["--etcd-user", "root", "--etcd-password-file", password],
  ];
  const ca = ["--etcd-ca", secrets.path("ca.crt")];
  const backend = await assertEndToEnd(sys, ["--etcd", sys.etcd.endpoint, ...ca, ...security]);
  const client = (flags: string[]) =>
    sys.spawn("client", [
      ...["--balancers-etcd", sys.etcd.endpoint, ...flags, "--requests", "20", "--json"],
    ], { captureStdout: true });

  const trusting = client([...ca, ...security]);
  assert.equal((await trusting.status).code, 0, trusting.log());
  const summary = JSON.parse(trusting.stdout());
  assert.equal(summary.succeeded, 20, trusting.stdout());
  assert.deepEqual(Object.keys(summary.perServer), [backend.address]);

  const noCa = client(security);
  assert.equal((await noCa.status).code, 1, noCa.log());
  assert.match(
    noCa.log(),
    /^error: Cannot connect to etcd over TLS as no CA was given.*--etcd-ca/,
  );
  assert.equal(noCa.log().split("\n").length, 1, noCa.log());

  // Trusted, but with a wrong password: etcd's refusal, then one error line.
  const wrong = await secrets.write("wrong-password", "not-the-password");
  const refused = client([...ca, ...security.slice(0, -1), wrong]);
  assert.equal((await refused.status).code, 1, refused.log());
  assert.match(refused.log(), /authentication failed, invalid user ID or password/);
  assert.match(refused.log(), /\nerror: Cannot find the balancers as etcd .* did not answer/);
});

Deno.test("etcd security flags: a file Deno may not read, and bad combinations, are one line naming the flag", async () => {
  const balancer = spawnEntry("balancer", [
    "--port",
    "0",
    "--etcd",
    "https://127.0.0.1:2379",
    "--etcd-ca",
    `${FIXTURES}ca.crt`,
  ]);
  const status = await balancer.status;
  assert.equal(status.code, 2);
  assert.match(balancer.log(), /^error: .*'--etcd-ca' is outside what this task may read/);
  assert.equal(balancer.log().split("\n").length, 1, balancer.log());

  await using secrets = await testSecrets();
  const empty = await secrets.write("empty", " \n");
  const https = ["https://127.0.0.1:2379"];
  const cases: [Record<string, string>, string[] | undefined, RegExp][] = [
    [{ "etcd-ca": secrets.path("ca.crt") }, undefined, /'--etcd-ca' needs '--etcd URL'/],
    [
      { "etcd-ca": secrets.path("ca.crt") },
      ["http://127.0.0.1:2379"],
      /'--etcd-ca' needs https:\/\/ endpoints/,
    ],
    [{ "etcd-cert": secrets.path("client.crt") }, https, /only '--etcd-cert' was given/],
    [{ "etcd-password-file": empty }, https, /only '--etcd-password-file' was given/],
    [{ "etcd-user": "root" }, https, /only '--etcd-user' was given/],
    [
      { "etcd-user": "root", "etcd-password-file": empty },
      https,
      /'--etcd-password-file' is empty/,
    ],
    [{ "etcd-ca": "secrets/missing.crt" }, https, /'--etcd-ca' does not exist/],
  ];
  for (const [flags, endpoints, message] of cases) {
    assert.throws(() => etcdSecurityFlags("balancer", flags, endpoints), message);
  }
  assert.equal(etcdSecurityFlags("balancer", {}, https), undefined);
});
