/**
 * TLS on every server and channel: `lib/wire/tls.ts` in process (what works and what is refused,
 * each refusal a proper gRPC status), then balancer, backend and client as real processes with
 * TLS and mutual TLS end to end.
 */
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { spawnEntry } from "../lib/harness/entry_process.ts";
import { contract, createLoadBalancerClient, unary } from "../lib/wire/proto.ts";
import { bindServer, createServer } from "../lib/wire/grpc_server.ts";
import { channelCredentials, type TlsConfig } from "../lib/wire/tls.ts";
import { type Secrets, testSecrets } from "./_secrets.ts";
import { startSystem } from "./_harness.ts";
import { listServers } from "./_system.ts";

const read = (name: string) =>
  Deno.readTextFileSync(new URL(`fixtures/tls/${name}`, import.meta.url));
const SERVER: TlsConfig = { certPem: read("server.crt"), keyPem: read("server.key") };
const CA = read("ca.crt");
const CLIENT: TlsConfig = { caPem: CA, certPem: read("client.crt"), keyPem: read("client.key") };
const UNTRUSTED_CLIENT: TlsConfig = {
  caPem: CA,
  certPem: read("untrusted-client.crt"),
  keyPem: read("untrusted-client.key"),
};
const STATUS_CODES = new Set(Object.values(grpc.status).filter((v) => typeof v === "number"));

/** A server answering `GetServer` with a constant, with `tls` (plaintext without). */
async function echoServer(tls?: TlsConfig): Promise<{ port: number; server: grpc.Server }> {
  const server = createServer();
  server.addService(contract.LoadBalancer.service, {
    GetServer: (_call: unknown, callback: grpc.sendUnaryData<unknown>) =>
      callback(null, { server_address: "10.0.0.1:1" }),
  });
  return { port: await bindServer(server, "127.0.0.1", 0, tls), server };
}

/** Calls `GetServer` on `target`: the address, or the error (which must be a proper status). */
async function call(
  target: string,
  credentials: grpc.ChannelCredentials,
  options: grpc.ChannelOptions = {},
): Promise<string | grpc.ServiceError> {
  const client = createLoadBalancerClient(target, credentials, undefined, options);
  try {
    const response = await unary(client.GetServer, client, { client_id: "c" }, {
      deadline: Date.now() + 5_000,
    });
    return response.server_address;
  } catch (error) {
    const e = error as grpc.ServiceError;
    assert.ok(STATUS_CODES.has(e.code), `a gRPC status code, got ${e.code} (${e.message})`);
    assert.ok(typeof e.details === "string" && e.details.length > 0, "a message");
    return e;
  } finally {
    client.close();
  }
}

/** Asserts `result` is a refusal with `code`. */
function assertRefused(what: string, result: string | grpc.ServiceError, code: grpc.status) {
  assert.ok(typeof result !== "string", `${what} must fail`);
  assert.equal(result.code, code, `${what}: ${result.message}`);
}

Deno.test("lib/wire/tls.ts: TLS and mutual TLS work, checking the IP or a given server name; every mismatch is refused with a gRPC status", async () => {
  const tls = await echoServer(SERVER);
  const mutual = await echoServer({ ...SERVER, caPem: CA, mutual: true });
  const plain = await echoServer();
  const ip = (port: number) => `127.0.0.1:${port}`;
  try {
    assert.equal(await call(ip(tls.port), channelCredentials({ caPem: CA })), "10.0.0.1:1");
    // (No `localhost:port` target: the test may not resolve names, only reach 127.0.0.1.)
    assert.equal(
      await call(ip(tls.port), channelCredentials({ caPem: CA }), {
        "grpc.ssl_target_name_override": "localhost",
      }),
      "10.0.0.1:1",
    );
    assert.equal(await call(ip(mutual.port), channelCredentials(CLIENT)), "10.0.0.1:1");
    const { UNAVAILABLE } = grpc.status;
    assertRefused(
      "a plaintext client to a TLS server",
      await call(ip(tls.port), channelCredentials()),
      UNAVAILABLE,
    );
    assertRefused(
      "a TLS client to a plaintext server",
      await call(ip(plain.port), channelCredentials({ caPem: CA })),
      UNAVAILABLE,
    );
    assertRefused(
      "a client without a certificate under mutual TLS",
      await call(ip(mutual.port), channelCredentials({ caPem: CA })),
      UNAVAILABLE,
    );
    assertRefused(
      "a client certificate from an untrusted CA under mutual TLS",
      await call(ip(mutual.port), channelCredentials(UNTRUSTED_CLIENT)),
      UNAVAILABLE,
    );
    assertRefused(
      "a server certificate from an untrusted CA",
      await call(ip(tls.port), channelCredentials({ caPem: read("untrusted-ca.crt") })),
      UNAVAILABLE,
    );
    assertRefused(
      "a server certificate that does not name the target",
      await call(ip(tls.port), channelCredentials({ caPem: CA }), {
        "grpc.ssl_target_name_override": "wrong.example",
      }),
      UNAVAILABLE,
    );
  } finally {
    for (const s of [tls, mutual, plain]) s.server.forceShutdown();
  }
});

/** `--tls-*` flags of a server (balancer or backend) from `secrets`. */
function serverFlags(secrets: Secrets, mutual: boolean): string[] {
  return [
    "--tls-cert",
    secrets.path("server.crt"),
    "--tls-key",
    secrets.path("server.key"),
    "--tls-ca",
    secrets.path("ca.crt"),
    ...(mutual ? ["--tls-mutual"] : []),
  ];
}

/** Runs the client entry for 4 simple tasks; resolves with its exit code and JSON summary. */
async function runClient(balancer: string, flags: string[]) {
  const client = spawnEntry("client", [
    "--balancer",
    balancer,
    "--requests",
    "4",
    "--max-attempts",
    "1",
    "--json",
    ...flags,
  ], { captureStdout: true });
  const status = await client.status;
  return { code: status.code, summary: JSON.parse(client.stdout()), log: client.log() };
}

for (const mutual of [false, true]) {
  const name = mutual ? "mutual TLS" : "TLS";
  Deno.test(`${name} end to end: balancer, backend and client; a plaintext client and an untrusted certificate are refused`, async () => {
    await using secrets = await testSecrets();
    await using sys = await startSystem();
    // Listed and healthy: the balancer's health checks reach the backend over (mutual) TLS.
    const { balancer, backends: [backend], lb } = await sys.balancerWithBackends({
      balancerArgs: serverFlags(secrets, mutual),
      backendArgs: serverFlags(secrets, mutual),
      credentials: channelCredentials(mutual ? CLIENT : { caPem: CA }),
      withLoad: true,
    });
    const good = await runClient(balancer.address, [
      "--tls-ca",
      secrets.path("ca.crt"),
      ...(mutual
        ? ["--tls-cert", secrets.path("client.crt"), "--tls-key", secrets.path("client.key")]
        : []),
    ]);
    assert.equal(good.code, 0, good.log);
    assert.deepEqual(good.summary.perServer, { [backend.address]: 4 });
    const plaintext = await runClient(balancer.address, []);
    assert.equal(plaintext.code, 1);
    assert.deepEqual(plaintext.summary.failuresByCode, { UNAVAILABLE: 4 });
    const untrusted = await runClient(balancer.address, [
      "--tls-ca",
      secrets.path(mutual ? "ca.crt" : "untrusted-ca.crt"),
      ...(mutual
        ? [
          "--tls-cert",
          secrets.path("untrusted-client.crt"),
          "--tls-key",
          secrets.path("untrusted-client.key"),
        ]
        : []),
    ]);
    assert.equal(untrusted.code, 1);
    assert.deepEqual(untrusted.summary.failuresByCode, { UNAVAILABLE: 4 });
    assert.equal((await listServers(lb)).servers.length, 1, "the balancer is unchanged");
  });
}
