/**
 * The HTTP side of the balancer and backends (`--http-port`): `/health` follows the gRPC health
 * status, and unknown paths or methods answer 404/405 saying what exists.
 */
import assert from "node:assert/strict";
import { startSystem } from "./_harness.ts";
import { freePort, waitFor, waitForServers } from "./_system.ts";

async function get(url: string, method = "GET"): Promise<{ status: number; text: string }> {
  const response = await fetch(url, { method, signal: AbortSignal.timeout(5_000) });
  return { status: response.status, text: await response.text() };
}

Deno.test("balancer and backend serve /health over HTTP, and say what exists on a wrong path", async () => {
  await using sys = await startSystem();
  const httpPort = freePort();
  const balancer = await sys.balancer(["--http-port", String(httpPort)]);
  const base = `http://127.0.0.1:${httpPort}`;
  assert.deepEqual(await get(`${base}/health`), { status: 503, text: "NOT_SERVING\n" });

  const backendHttp = freePort();
  const backend = sys.backend([
    "--balancer",
    balancer.address,
    "--http-port",
    String(backendHttp),
  ]);
  await waitForServers(sys.lbClient(balancer.address), [backend.address]);
  await waitFor(
    "the balancer to serve",
    async () => (await get(`${base}/health`)).status === 200,
  );
  assert.deepEqual(await get(`http://127.0.0.1:${backendHttp}/health`), {
    status: 200,
    text: "SERVING\n",
  });

  const missing = await get(`${base}/nope`);
  assert.equal(missing.status, 404);
  assert.match(missing.text, /Not found: \/nope \(there are .*\/health/);
  const wrongMethod = await get(`${base}/health`, "DELETE");
  assert.equal(wrongMethod.status, 405);
  assert.match(wrongMethod.text, /allowed: GET/);
});
