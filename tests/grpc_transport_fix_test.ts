/**
 * `lib/runtime/grpc_transport_fix.ts`: a server that answers a new connection with its SETTINGS and
 * a GOAWAY at once, as one that is shutting down can, must not hang a grpc-js client. Without the
 * fix the client's subchannel turns READY on the dead connection and grpc-js retries the call in
 * microtasks for ever: no timer fires, no deadline ends the call, and the heap fills. The client
 * runs as its own process with a small heap, so that failure ends it instead of this test.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { PROJECT_ROOT } from "../lib/harness/entry_process.ts";

/** An empty SETTINGS frame, then GOAWAY (last stream 0, NO_ERROR): RFC 9113 sections 6.5, 6.8. */
const SETTINGS_AND_GOAWAY = new Uint8Array([
  ...[0, 0, 0, 4, 0, 0, 0, 0, 0],
  ...[0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
]);

/** How long the client may run before it is taken to hang (it needs about 3 s). */
const HANG_AFTER_MS = 60_000;

Deno.test("a server's GOAWAY sent with its first SETTINGS fails the call at its deadline, without hanging the client", async () => {
  let connections = 0;
  const server = net.createServer((socket) => {
    connections++;
    socket.on("error", () => {});
    socket.on("data", () => {});
    socket.write(SETTINGS_AND_GOAWAY);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net=127.0.0.1", "--allow-read", "--allow-env", "tests/_goaway_client.ts"]
      .concat(String(port)),
    cwd: PROJECT_ROOT,
    env: { DENO_V8_FLAGS: "--max-old-space-size=128", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const guard = setTimeout(() => child.kill("SIGKILL"), HANG_AFTER_MS);
  try {
    const out = await child.output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.ok(out.success, `the client did not finish: exit ${out.code}, ${stderr.slice(-600)}`);
    const result = JSON.parse(new TextDecoder().decode(out.stdout)) as {
      codes: number[];
      ticks: number;
    };
    // Each call ended with a status (DEADLINE_EXCEEDED or UNAVAILABLE), none succeeded.
    assert.equal(result.codes.length, 3);
    for (const code of result.codes) assert.ok([4, 14].includes(code), `status ${code}`);
    // Its event loop kept turning while the calls were open.
    assert.ok(result.ticks > 0, "no timer fired during the calls");
    assert.ok(connections > 0);
  } finally {
    clearTimeout(guard);
    await new Promise((resolve) => server.close(resolve));
  }
});
