/** `prequal`: the probe pool, the hot-cold rule, probe failure and the probes it asks for. */
import assert from "node:assert/strict";
import {
  prequal,
  type PrequalOptions,
  type PrequalState,
  recordProbe,
  recordProbeFailure,
  takeProbeRequest,
} from "../policies/prequal.ts";
import type { Snapshot } from "../policies/types.ts";
import { contextAt, snapshotOf } from "./_policy_helpers.ts";

/** One random stream for all the picks of a test. */
const context = contextAt(0);

const EIGHT = snapshotOf([0, 1, 2, 3, 4, 5, 6, 7].map((id) => ({ id })));

/** A prepared state with `answers` ([id, rif, latencyMs]) recorded at `atMs`. */
function withAnswers(
  answers: [number, number, number][],
  options: PrequalOptions = {},
  snapshot: Snapshot = EIGHT,
  atMs = 0,
) {
  const policy = prequal(options);
  const state = policy.prepare(snapshot);
  for (const [id, rif, latency] of answers) recordProbe(snapshot, state, id, rif, latency, atMs);
  return { policy, state };
}

/** The id the next pick names. */
function pickId(
  policy: ReturnType<typeof prequal>,
  state: PrequalState,
  nowMs = 0,
  snapshot = EIGHT,
): number {
  context.nowMs = nowMs;
  const result = policy.pick(snapshot, state, context);
  assert.equal(result.kind, "pick");
  return result.kind === "pick" ? result.server.id : -1;
}

/** Empties the probe queue; returns the ids asked for. */
function drain(state: PrequalState): number[] {
  const ids: number[] = [];
  for (let id = takeProbeRequest(state); id >= 0; id = takeProbeRequest(state)) ids.push(id);
  return ids;
}

Deno.test("prequal picks the cold answer of lowest latency", () => {
  const { policy, state } = withAnswers([[0, 2, 40], [1, 1, 30], [2, 3, 10], [3, 2, 60]], {
    hotQuantile: 1,
  });
  assert.equal(state.hotRif, 3, "with quantile 1 nothing probed so far is hot");
  assert.equal(pickId(policy, state), 2);
});

Deno.test("prequal passes over a hot answer however low its latency", () => {
  // Forty answers of RIF 1 from servers 4-7 set the threshold: above 1 is hot.
  const history = Array.from(
    { length: 40 },
    (_, i): [number, number, number] => [4 + i % 4, 1, 50],
  );
  const { policy, state } = withAnswers([...history, [0, 1, 40], [1, 9, 1], [2, 1, 30]]);
  assert.equal(state.hotRif, 1);
  assert.equal(pickId(policy, state), 2);
});

Deno.test("prequal picks the lowest RIF when every answer is hot", () => {
  // Forty answers of RIF 1 from server 7 set the threshold; server 7 then leaves the pool.
  const history = Array.from({ length: 40 }, (): [number, number, number] => [7, 1, 50]);
  const { policy, state } = withAnswers([...history, [0, 12, 5], [1, 6, 90], [2, 9, 1]]);
  recordProbeFailure(EIGHT, state, 7, false);
  assert.equal(state.hotRif, 1);
  assert.equal(pickId(policy, state), 1);
});

Deno.test("prequal counts each pick in the answer's RIF and latency, so reuse does not herd", () => {
  const { policy, state } = withAnswers([[0, 0, 10], [1, 0, 25]], { reuse: 100 });
  // Server 0 is faster; each pick there adds to its RIF and stretches its latency, until
  // server 1 is the better choice.
  const picks = Array.from({ length: 6 }, () => pickId(policy, state));
  assert.equal(picks[0], 0);
  assert.ok(picks.includes(1), `server 1 is picked once server 0 has queued enough: ${picks}`);
});

Deno.test("prequal uses an answer at most `reuse` times", () => {
  const { policy, state } = withAnswers([[3, 0, 10]], { reuse: 2, removeWorstPerPick: 0 });
  assert.equal(pickId(policy, state), 3);
  assert.equal(state.count, 1);
  assert.equal(pickId(policy, state), 3);
  assert.equal(state.count, 0, "the answer served its two picks and left the pool");
});

Deno.test("prequal keeps at most `poolSize` answers, one per server, dropping the oldest", () => {
  const snapshot = snapshotOf(Array.from({ length: 40 }, (_, id) => ({ id })));
  const policy = prequal({ poolSize: 4 });
  const state = policy.prepare(snapshot);
  for (let id = 0; id < 6; id++) recordProbe(snapshot, state, id, 1, 10, id);
  assert.equal(state.count, 4);
  assert.deepEqual([...state.id.subarray(0, 4)].sort(), [2, 3, 4, 5]);
  // A second answer from server 5 replaces its first.
  recordProbe(snapshot, state, 5, 3, 20, 10);
  assert.equal(state.count, 4);
  assert.equal([...state.id.subarray(0, 4)].filter((id) => id === 5).length, 1);
});

Deno.test("prequal never uses an answer older than `maxAgeMs`", () => {
  const { policy, state } = withAnswers([[5, 0, 1]], { maxAgeMs: 500 }, EIGHT, 0);
  // At 600 ms the answer is too old: the pick falls back to round robin, not to server 5.
  const first = pickId(policy, state, 600);
  assert.equal(state.count, 0);
  assert.equal(state.fallbackPicks, 1);
  assert.equal(first, 0, "round robin starts from the first server");
});

Deno.test("prequal does not pick a server on stale good news once its probe failed", () => {
  const { policy, state } = withAnswers([[0, 0, 1], [1, 5, 200]], { reuse: 100 });
  recordProbeFailure(EIGHT, state, 0, false);
  for (let i = 0; i < 20; i++) assert.notEqual(pickId(policy, state), 0);
});

Deno.test("prequal asks for `probesPerPick` probes per pick, of live servers", () => {
  const { policy, state } = withAnswers([[0, 0, 1]], { probesPerPick: 2, reuse: 1_000 });
  for (let i = 0; i < 100; i++) pickId(policy, state);
  const asked = drain(state);
  assert.equal(asked.length, 200);
  assert.ok(asked.every((id) => id >= 0 && id < 8));
  assert.equal(new Set(asked).size, 8, "every server gets probed");
});

Deno.test("prequal gives servers that cannot answer probes their share by count, unprobed", () => {
  const { policy, state } = withAnswers([], { probesPerPick: 1 });
  for (const id of [6, 7]) recordProbeFailure(EIGHT, state, id, true);
  drain(state);
  const counts = new Map<number, number>();
  for (let i = 0; i < 8_000; i++) {
    const id = pickId(policy, state, i);
    counts.set(id, (counts.get(id) ?? 0) + 1);
    // Answer every probe asked for: servers 0-5 look alike.
    for (const asked of drain(state)) recordProbe(EIGHT, state, asked, 1, 10, i);
  }
  for (const id of [6, 7]) {
    const share = (counts.get(id) ?? 0) / 8_000;
    assert.ok(Math.abs(share - 1 / 8) < 0.02, `silent server ${id} gets 1/8: ${share}`);
  }
  // A silent server that answers again is probed and pooled like the others.
  recordProbe(EIGHT, state, 6, 0, 1, 8_000);
  assert.equal(state.silentCount, 1);
});

Deno.test("prequal keeps its answers by server id across snapshots", () => {
  const { policy, state } = withAnswers([[2, 0, 5], [5, 0, 50]], { reuse: 100 });
  const without2 = snapshotOf([0, 1, 3, 4, 5, 6, 7].map((id) => ({ id })), 2);
  const next = policy.prepare(without2, { previous: state, previousSnapshot: EIGHT });
  assert.equal(next.count, 1, "the answer of the server that left is dropped");
  const result = policy.pick(without2, next, contextAt(0));
  assert.equal(result.kind === "pick" && result.server.id, 5);
});

Deno.test("prequal refuses options out of range, naming them", () => {
  assert.throws(() => prequal({ probesPerPick: 0 }), /'probesPerPick' must be > 0/);
  assert.throws(() => prequal({ poolSize: 0 }), /'poolSize' must be an integer 1 to 1024/);
  assert.throws(() => prequal({ hotQuantile: 1.5 }), /'hotQuantile' must be 0 to 1/);
  assert.throws(() => prequal({ maxAgeMs: -1 }), /'maxAgeMs' must be > 0/);
  assert.throws(() => prequal({ reuse: 0.5 }), /'reuse' must be >= 1/);
});
