/**
 * Regression test for a crash of Deno's `node:http2` (denoland/deno#36788): a process whose
 * grpc-js channel receives a GOAWAY, as every graceful server stop sends, aborts inside nghttp2
 * or segfaults, on Deno 2.9.4 to 2.9.6 (1 to 2 runs in 5 each, measured), unless
 * `lib/runtime/http2_goaway_fix.ts` is loaded. Run it several times on a candidate version before moving
 * the pin: one pass proves little.
 */
import assert from "node:assert/strict";
import { unary } from "../lib/wire/proto.ts";
import { startSystem } from "./_harness.ts";
import { freePort, waitFor } from "./_system.ts";

Deno.test("a client survives its server's graceful stop (GOAWAY) and reconnects to the next one", async () => {
  await using sys = await startSystem();
  const port = freePort();
  const address = `127.0.0.1:${port}`;
  let balancer = sys.spawn("balancer", ["--port", String(port)]);
  const lb = sys.lbClient(address);
  const list = () => unary(lb.ListServers, lb, {}, { deadline: Date.now() + 500 });
  for (let round = 0; round < 3; round++) {
    await waitFor(`balancer ${round} to answer`, list, 15_000, 50);
    // Several calls on the same connection, then a graceful stop: GOAWAY to this client.
    for (let i = 0; i < 5; i++) assert.equal((await list()).policy, "round_robin");
    const status = await balancer.stop();
    assert.equal(status.code, 0, balancer.log());
    balancer = sys.spawn("balancer", ["--port", String(port)]);
  }
  await waitFor("the last balancer to answer", list, 15_000, 50);
});
