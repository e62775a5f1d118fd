/**
 * Service-time distributions: how long a task holds a server, for the backend's emulated tasks
 * (`--service-time`) and the simulator. Written `fixed:20ms`, `exp:20ms`, `lognormal:20ms:0.5`
 * (mean 20 ms, sigma 0.5 of the underlying normal) or `bimodal:10ms:100ms:0.1` (100 ms with
 * probability 0.1, else 10 ms); durations take `us`, `ms` or `s`. Sampling takes its randomness
 * as a parameter, so a seeded source gives the same draws every run.
 *
 * @module
 */

/** A service-time distribution; times are in milliseconds. */
export type ServiceTime =
  | { readonly kind: "fixed"; readonly ms: number }
  | { readonly kind: "exp"; readonly meanMs: number }
  | { readonly kind: "lognormal"; readonly meanMs: number; readonly sigma: number }
  | {
    readonly kind: "bimodal";
    readonly fastMs: number;
    readonly slowMs: number;
    readonly slowProbability: number;
  };

/** What `--service-time` accepts, for error messages and `--help`. */
export const SERVICE_TIME_FORMS =
  "fixed:T | exp:MEAN | lognormal:MEAN:SIGMA | bimodal:FAST:SLOW:P (T in us, ms or s)";

/** Longest service time accepted (ms): one hour. */
const MAX_MS = 3_600_000;

/** Parses `text` (see the module doc); throws a `RangeError` saying what is accepted. */
export function parseServiceTime(text: string): ServiceTime {
  const [kind, ...args] = text.trim().split(":");
  const fail = (why: string): never => {
    throw new RangeError(`'${text}' is not a service time (${why}); use ${SERVICE_TIME_FORMS}`);
  };
  const arity = { fixed: 1, exp: 1, lognormal: 2, bimodal: 3 }[kind];
  if (arity === undefined) fail(`unknown distribution '${kind}'`);
  if (args.length !== arity) fail(`'${kind}' takes ${arity} value(s)`);
  switch (kind) {
    case "fixed":
      return { kind, ms: duration(args[0], fail) };
    case "exp":
      return { kind, meanMs: positive(duration(args[0], fail), fail) };
    case "lognormal": {
      const sigma = Number(args[1]);
      if (!(sigma > 0 && sigma <= 5)) fail("sigma must be above 0 and at most 5");
      return { kind, meanMs: positive(duration(args[0], fail), fail), sigma };
    }
    default: {
      const slowProbability = Number(args[2]);
      if (!(slowProbability >= 0 && slowProbability <= 1)) fail("P must be from 0 to 1");
      return {
        kind: "bimodal",
        fastMs: duration(args[0], fail),
        slowMs: duration(args[1], fail),
        slowProbability,
      };
    }
  }
}

/** The distribution's mean, in ms. */
export function meanServiceTime(d: ServiceTime): number {
  switch (d.kind) {
    case "fixed":
      return d.ms;
    case "exp":
    case "lognormal":
      return d.meanMs;
    case "bimodal":
      return d.fastMs + d.slowProbability * (d.slowMs - d.fastMs);
  }
}

/** One draw from `d`, in ms, using `rng` (uniform on [0, 1)). */
export function sampleServiceTime(d: ServiceTime, rng: () => number): number {
  switch (d.kind) {
    case "fixed":
      return d.ms;
    case "exp":
      return -d.meanMs * Math.log(1 - rng());
    case "lognormal": {
      // The underlying normal's mean is chosen so that the lognormal's mean is `meanMs`.
      const mu = Math.log(d.meanMs) - d.sigma * d.sigma / 2;
      return Math.exp(mu + d.sigma * standardNormal(rng));
    }
    case "bimodal":
      return rng() < d.slowProbability ? d.slowMs : d.fastMs;
  }
}

/** A standard normal draw (Box-Muller, one of the pair). */
function standardNormal(rng: () => number): number {
  const u = 1 - rng();
  const v = rng();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

/** `20ms`, `1.5s`, `500us` in ms; `fail` for anything else. */
function duration(text: string, fail: (why: string) => never): number {
  const match = /^(\d+(?:\.\d+)?)(us|ms|s)$/.exec(text);
  if (!match) return fail(`'${text}' is not a duration such as 20ms`);
  const ms = Number(match[1]) * { us: 0.001, ms: 1, s: 1_000 }[match[2] as "us" | "ms" | "s"];
  if (ms > MAX_MS) return fail(`'${text}' is longer than an hour`);
  return ms;
}

function positive(ms: number, fail: (why: string) => never): number {
  return ms > 0 ? ms : fail("the mean must be above 0");
}
