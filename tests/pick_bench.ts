/**
 * Cost of one pick for every policy as the pool grows: `deno task bench:picks`.
 *
 * Each policy picks from a snapshot of 3, 100 and 10,000 servers with load reports, the state
 * prepared once as the balancer does on the slow path; one bench iteration is one pick.
 */
import { createPolicy, POLICY_NAMES } from "../policies/mod.ts";
import { prequal, type PrequalState, recordProbe, takeProbeRequest } from "../policies/prequal.ts";
import type { Snapshot } from "../policies/types.ts";
import { contextAt, snapshotOf } from "./_policy_helpers.ts";

const SIZES = [3, 100, 10_000];
/** Picks timed together in one `prequal` bench iteration: Deno times spans of 10 µs and more. */
const PREQUAL_PICKS_PER_ITERATION = 16;

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
    if (name === "prequal") {
      // With fewer servers than its pool, a few picks use the pool up, too few to time apart.
      if (size >= PREQUAL_PICKS_PER_ITERATION) benchPrequal(snapshot, size);
      continue;
    }
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

/**
 * `prequal` as a balancer runs it: the pool refilled by answers to the probes it asks for, then
 * {@linkcode PREQUAL_PICKS_PER_ITERATION} picks timed together (a pick is the time shown divided
 * by the count in its name). Taking the probes and recording their answers is the holder's slow
 * path, not timed.
 */
function benchPrequal(snapshot: Snapshot, size: number): void {
  const policy = prequal();
  const state: PrequalState = policy.prepare(snapshot);
  const context = contextAt(1_000, "bench-client", 42);
  const answer = (id: number) => recordProbe(snapshot, state, id, id % 5, 10 + (id % 7), 1_000);
  for (let id = 0; id < Math.min(size, 16); id++) answer(id);
  const picks = PREQUAL_PICKS_PER_ITERATION;
  Deno.bench({
    name: `prequal ×${picks} (${size.toLocaleString("en")} servers)`,
    group: `${size} servers`,
    fn(b) {
      for (let id = takeProbeRequest(state); id >= 0; id = takeProbeRequest(state)) answer(id);
      const pooled = state.pooledPicks;
      b.start();
      for (let i = 0; i < picks; i++) policy.pick(snapshot, state, context);
      b.end();
      if (state.pooledPicks - pooled !== picks) {
        throw new Error("prequal bench: a pick fell back to round robin; the pool ran dry");
      }
    },
  });
}
