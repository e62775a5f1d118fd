/**
 * Retry delays on gRPC's connection-backoff schedule, and a sleep that an `AbortSignal` cuts
 * short.
 *
 * @module
 */

/** The retry schedule of {@linkcode retryDelayMs}. */
export interface BackoffOptions {
  /** @default {1_000} */
  initialMs?: number;
  /** @default {1.6} */
  multiplier?: number;
  /** Each delay is moved at random by up to this fraction, either way. @default {0.2} */
  jitter?: number;
  /** @default {120_000} */
  maxMs?: number;
}

/**
 * Delay (ms) before retry number `attempt` (0 for the first retry): grpc's connection backoff,
 * `initialMs * multiplier^attempt` capped at `maxMs`, with jitter drawn from `rng`.
 */
export function retryDelayMs(
  attempt: number,
  options: BackoffOptions = {},
  rng: () => number = Math.random,
): number {
  const { initialMs = 1_000, multiplier = 1.6, jitter = 0.2, maxMs = 120_000 } = options;
  const base = Math.min(maxMs, initialMs * multiplier ** attempt);
  return Math.round(base * (1 + jitter * (rng() * 2 - 1)));
}

/** Resolves after `ms`, or at once when `signal` aborts; never rejects, leaves no timer behind. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done);
  });
}
