/**
 * Slow start: a newly added server's share ramps up over a window instead of jumping to its full
 * share, so a cold server (empty caches, JIT not warm, no load history) is neither flooded nor
 * starved. The shape is Envoy's: `max(minFactor, (age / window) ^ (1 / aggression))`.
 *
 * @module
 */

/** Default slow start window. */
export const DEFAULT_SLOW_START_MS = 10_000;
/** Default share a server starts at, as a fraction of its full share. */
export const DEFAULT_SLOW_START_MIN_FACTOR = 0.1;

/** Options shared by the policies that slow-start new servers. */
export interface SlowStartOptions {
  /** Ramp length; 0 turns slow start off. @default {DEFAULT_SLOW_START_MS} */
  slowStartMs?: number;
  /** Larger ramps faster at first. @default {1} */
  slowStartAggression?: number;
  /** Share at the start of the ramp. @default {DEFAULT_SLOW_START_MIN_FACTOR} */
  slowStartMinFactor?: number;
}

/**
 * The fraction (0 to 1] of its full share a server added at `addedAtMs` gets at `nowMs`.
 *
 * @throws {RangeError} never on the pick path: options are checked by {@linkcode checkSlowStart}.
 */
export function slowStartFactor(
  addedAtMs: number,
  nowMs: number,
  options: Required<SlowStartOptions>,
): number {
  const window = options.slowStartMs;
  if (window <= 0) return 1;
  const age = nowMs - addedAtMs;
  if (age >= window) return 1;
  const ramp = Math.max(0, age / window) ** (1 / options.slowStartAggression);
  return Math.max(options.slowStartMinFactor, ramp);
}

/** Fills in defaults and checks slow start options (for a policy factory). */
export function checkSlowStart(
  policy: string,
  options: SlowStartOptions,
): Required<SlowStartOptions> {
  const checked = {
    slowStartMs: options.slowStartMs ?? DEFAULT_SLOW_START_MS,
    slowStartAggression: options.slowStartAggression ?? 1,
    slowStartMinFactor: options.slowStartMinFactor ?? DEFAULT_SLOW_START_MIN_FACTOR,
  };
  if (
    !(checked.slowStartMs >= 0) || !(checked.slowStartAggression > 0) ||
    !(checked.slowStartMinFactor > 0 && checked.slowStartMinFactor <= 1)
  ) {
    throw new RangeError(
      `Cannot create ${policy} as slow start needs 'slowStartMs' >= 0, 'slowStartAggression' > 0 and 'slowStartMinFactor' in (0, 1]`,
    );
  }
  return checked;
}
