/**
 * Cost of one pick for every policy as the pool grows: `deno task bench:picks`.
 *
 * Each policy picks from a snapshot of 3, 100 and 10,000 servers with load reports, the state
 * prepared once as the balancer does on the slow path; one bench iteration is one pick.
 */
import { createPolicy, POLICY_NAMES } from "../policies/mod.ts";
import { contextAt, snapshotOf } from "./_policy_helpers.ts";

const SIZES = [3, 100, 10_000];

for (const size of SIZES) {
  const snapshot = snapshotOf(
    Array.from({ length: size }, (_, id) => ({
      id,
      load: (id * 37) % 100,
      inFlight: id % 5,
      reportedAtMs: 0,
    })),
  );
  for (const name of POLICY_NAMES) {
    const policy = createPolicy(name);
    const state = policy.prepare(snapshot);
    const context = contextAt(1_000, "bench-client", 42);
    Deno.bench({
      name: `${name} (${size.toLocaleString("en")} servers)`,
      group: `${size} servers`,
      baseline: name === "round_robin",
      fn() {
        policy.pick(snapshot, state, context);
      },
    });
  }
}
