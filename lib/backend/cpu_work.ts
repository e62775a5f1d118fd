/**
 * The CPU-heavy task: a fixed amount of integer mixing that cannot be optimised away. It is
 * self-contained because {@linkcode WorkerPool} ships its source text to Web Workers (a Blob URL
 * worker needs no read permission and survives `deno bundle`).
 *
 * @module
 */

/** Work units in one CPU-heavy task by default. */
export const DEFAULT_WORK_UNITS = 20;

/** Loop iterations in one work unit. */
export const ITERATIONS_PER_UNIT = 1_000_000;

/** Runs `iterations` rounds of xorshift mixing and returns the final value as a checksum. */
export function cpuWork(iterations: number): number {
  let x = 2463534242;
  for (let i = 0; i < iterations; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
  }
  return x >>> 0;
}
