/**
 * Helpers for pure policy tests: snapshots from plain values, a seeded random generator, and a
 * loop that picks many times.
 *
 * @module
 */
import {
  createSnapshot,
  type PickContext,
  type Policy,
  type ServerView,
  type Snapshot,
} from "../policies/types.ts";
import { seededRandom } from "../lib/sim/sim_random.ts";

/** Mulberry32, the seeded generator the simulator uses. */
export { seededRandom };

/** A server for a test snapshot. `load` is cpu_load; `inFlight` defaults to 0. */
export interface TestServer {
  id: number;
  address?: string;
  load?: number;
  inFlight?: number;
  reportedAtMs?: number;
  seq?: number;
  qps?: number;
  eps?: number;
  addedAtMs?: number;
}

/** Builds a snapshot from plain values. */
export function snapshotOf(servers: TestServer[], version = 1): Snapshot {
  return createSnapshot(
    version,
    servers.map((s): ServerView => ({
      id: s.id,
      address: s.address ?? `10.0.0.${s.id}:5000`,
      load: s.load === undefined ? undefined : {
        cpuLoad: s.load,
        inFlight: s.inFlight ?? 0,
        reportedAtMs: s.reportedAtMs ?? 0,
        seq: s.seq ?? 0,
        qps: s.qps ?? 0,
        eps: s.eps ?? 0,
      },
      addedAtMs: s.addedAtMs ?? -1_000_000,
    })),
  );
}

/** A pick context at time `nowMs`. */
export function contextAt(nowMs = 0, clientId = "client", seed = 1): PickContext {
  return { clientId, nowMs, rng: seededRandom(seed) };
}

/** Picks `count` times and returns the addresses named (`undefined` for no pick). */
export function pickMany<S>(
  policy: Policy<S>,
  snapshot: Snapshot,
  state: S,
  count: number,
  context: PickContext = contextAt(),
): (string | undefined)[] {
  const out: (string | undefined)[] = [];
  for (let i = 0; i < count; i++) {
    const result = policy.pick(snapshot, state, context);
    out.push(result.kind === "pick" ? result.server.address : undefined);
  }
  return out;
}

/** Counts occurrences. */
export function countBy(values: (string | undefined)[]): Map<string | undefined, number> {
  const counts = new Map<string | undefined, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return counts;
}
