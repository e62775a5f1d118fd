/**
 * The IPs xDS endpoints are served at (`lib/xds/endpoint_names.ts`): a name is resolved in the
 * background and left out until it answers, followed when its address moves, kept at its last
 * address while its lookups fail, and forgotten once no server has it. The lookup is handed in;
 * the system's is used by a real balancer in `tests/xds_test.ts` (a backend registered as
 * `localhost:PORT`).
 */
import assert from "node:assert/strict";
import { EndpointNames } from "../lib/xds/endpoint_names.ts";
import { waitFor } from "../lib/harness/wait.ts";

/** A lookup answering from `table` (a missing name rejects), counting its calls per name. */
function tableLookup(table: Map<string, string>) {
  const calls = new Map<string, number>();
  const lookup = (host: string) => {
    calls.set(host, (calls.get(host) ?? 0) + 1);
    const ip = table.get(host);
    return ip === undefined
      ? Promise.reject(new Error(`getaddrinfo ENOTFOUND ${host}`))
      : Promise.resolve(ip);
  };
  return { lookup, calls };
}

Deno.test("EndpointNames serves IP literals as they are, and a name at its IP once its lookup answers", async () => {
  const table = new Map([["backend-1.internal", "10.0.0.7"], ["v6.internal", "fd00::7"]]);
  const { lookup, calls } = tableLookup(table);
  let changes = 0;
  const names = new EndpointNames({ lookup, onChange: () => changes++ });
  try {
    assert.equal(names.resolve("10.1.2.3:50051"), "10.1.2.3:50051");
    assert.equal(names.resolve("[::1]:50051"), "[::1]:50051");
    assert.equal(calls.size, 0, "an IP is not looked up");

    assert.equal(names.resolve("backend-1.internal:50052"), undefined, "not resolved yet");
    assert.equal(names.resolve("v6.internal:50053"), undefined);
    await waitFor("both lookups to answer", () => changes === 2);
    assert.equal(names.resolve("backend-1.internal:50052"), "10.0.0.7:50052");
    assert.equal(names.resolve("backend-1.internal:9000"), "10.0.0.7:9000", "one lookup per host");
    assert.equal(names.resolve("v6.internal:50053"), "[fd00::7]:50053");
    assert.equal(calls.get("backend-1.internal"), 1);
    assert.equal(names.resolve("not an address"), undefined);
  } finally {
    names.close();
  }
});

Deno.test("EndpointNames follows a name whose address moves, keeps the last one while lookups fail, and leaves out one that never resolves", async () => {
  const table = new Map([["moving.internal", "10.0.0.1"]]);
  const { lookup, calls } = tableLookup(table);
  let changes = 0;
  const names = new EndpointNames({ lookup, onChange: () => changes++, refreshMs: 20 });
  try {
    names.resolve("moving.internal:1");
    await waitFor("the first answer", () => names.resolve("moving.internal:1") === "10.0.0.1:1");
    table.set("moving.internal", "10.0.0.2");
    await waitFor("the new address", () => names.resolve("moving.internal:1") === "10.0.0.2:1");
    assert.equal(changes, 2);

    table.delete("moving.internal");
    const before = calls.get("moving.internal")!;
    await waitFor("two failed lookups", () => calls.get("moving.internal")! >= before + 2);
    assert.equal(names.resolve("moving.internal:1"), "10.0.0.2:1", "kept while it fails");

    assert.equal(names.resolve("nowhere.internal:1"), undefined);
    await waitFor("its lookups to fail", () => (calls.get("nowhere.internal") ?? 0) >= 2);
    assert.equal(names.resolve("nowhere.internal:1"), undefined);
    assert.equal(changes, 2, "a failure changes nothing served");
  } finally {
    names.close();
  }
});

Deno.test("EndpointNames forgets a name no server has had since the last sweep, and looks it up again if it comes back", async () => {
  const { lookup, calls } = tableLookup(new Map([["gone.internal", "10.0.0.9"]]));
  let changes = 0;
  const names = new EndpointNames({ lookup, onChange: () => changes++ });
  try {
    names.resolve("gone.internal:1");
    await waitFor("the answer", () => changes === 1);
    names.sweep(); // asked for since the last sweep: kept
    assert.equal(names.resolve("gone.internal:1"), "10.0.0.9:1");
    names.sweep();
    names.sweep(); // not asked for in between: forgotten
    assert.equal(names.resolve("gone.internal:1"), undefined, "looked up afresh");
    await waitFor("the new answer", () => changes === 2);
    assert.equal(calls.get("gone.internal"), 2);
  } finally {
    names.close();
  }
});
