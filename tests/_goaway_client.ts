/**
 * A grpc-js client for `grpc_transport_fix_test.ts`, run as its own process: it calls
 * `ProcessTask` on `127.0.0.1:<port>` a few times with a 1 s deadline and prints, as JSON, the
 * status code of each call and how many times a 100 ms timer fired meanwhile.
 */
import { createBackendClient, unary } from "../lib/wire/proto.ts";

const CALLS = 3;
const port = Number(Deno.args[0]);
const client = createBackendClient(`127.0.0.1:${port}`);
let ticks = 0;
const timer = setInterval(() => ticks++, 100);
const codes: number[] = [];
for (let i = 0; i < CALLS; i++) {
  try {
    await unary(client.ProcessTask, client, { task_id: `t${i}`, task_type: "SIMPLE" }, {
      deadline: Date.now() + 1_000,
    });
    codes.push(0);
  } catch (error) {
    codes.push((error as { code: number }).code);
  }
}
clearInterval(timer);
client.close();
console.log(JSON.stringify({ codes, ticks }));
