/**
 * Seeded randomness for the simulator: a small, fast generator (Mulberry32, as the policy tests
 * use) and independent streams derived from one seed, so arrivals, service times and the
 * policies' coin flips each draw from their own stream and a change in one leaves the others'
 * draws as they were (every policy sees the same requests for the same seed).
 *
 * @module
 */

/** Mulberry32: uniform in [0, 1), 2^32 period, the same sequence for the same seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The streams a run draws from. */
export type StreamName = "arrivals" | "service" | "policy" | "setup";

const STREAM_INDEX: Record<StreamName, number> = { arrivals: 1, service: 2, policy: 3, setup: 4 };

/** A generator for stream `name` of run `seed`: the seed and stream mixed by a SplitMix32 step. */
export function streamRandom(seed: number, name: StreamName): () => number {
  let z = (Math.imul(seed >>> 0, 0x9e3779b9) + Math.imul(STREAM_INDEX[name], 0x85ebca6b)) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return seededRandom((z ^ (z >>> 16)) >>> 0);
}
