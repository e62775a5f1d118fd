/**
 * The benchmark's load sweeps: each policy at each offered load on emulated backends of chosen
 * capacity (`backend --service-time --capacity`), open-loop Poisson load (`client --rate`), and
 * beside every real run the simulator's figures for the same pool, policy and load, and the
 * oracle's (`lib/sim/`): the bound no policy can beat.
 *
 * Loads run in turn, every policy at one load before the next, so a drift of the machine touches
 * every policy alike. A sweep with a capacity schedule (the noisy neighbour) starts fresh backends
 * for each run, since a schedule counts from its backend's start.
 *
 * @module
 */
import { meanServiceTime, parseServiceTime } from "../backend/service_time.ts";
import type { CapacitySchedule } from "../backend/capacity_schedule.ts";
import type { PolicyName } from "../../policies/mod.ts";
import { type SimOptions, simulate } from "../sim/simulator.ts";
import { QueueTrend } from "../sim/sim_stats.ts";
import {
  type Backend,
  type BenchEnvironment,
  type Deployment,
  readStats,
} from "./bench_environment.ts";
import { measureTasks, type RunProgress } from "./bench_measure.ts";
import { type Measurement, round, type RunResult, runResult } from "./bench_results.ts";
import { freshServers, type Scenario, type Sweep } from "./bench_scenarios.ts";

/** The service-level objective of capacity at SLO: p99 at most this many mean service times. */
export const SLO_FACTOR = 5;
/** Requests per simulated point (and per step of the capacity-at-SLO search), full and quick. */
const SIM_REQUESTS = { full: 200_000, quick: 10_000 };
const SLO_SEARCH_REQUESTS = { full: 50_000, quick: 5_000 };
/**
 * Seconds of the run's load before each measured run of a policy of {@linkcode WARMED_POLICIES},
 * full and quick. Each run starts from drained backends, whose reports carry no traffic, and
 * weighted round robin trusts a weight only 10 s into a streak of reports with traffic (gRFC
 * A58's blackout): without a warm-up its runs would measure round robin first.
 */
export const SWEEP_WARMUP_S = { full: 12, quick: 0 };
/**
 * The policies whose state takes longer than a report to build. The others keep nothing but the
 * picks since each server's last report, and the queues drain between the warm-up and the run,
 * so a warm-up would change nothing for them but the time the sweep takes.
 */
const WARMED_POLICIES: ReadonlySet<string> = new Set(["weighted_round_robin"]);
/**
 * Seconds from a fresh deployment's start to its measured run's start, about, besides the warm-up:
 * where schedules begin.
 */
const SCHEDULE_LEAD_S = 2.5;
/** Load client processes of a `--quick` sweep at most: a smoke test, not 20 pickers on 2 cores. */
const QUICK_CLIENTS = 2;

/** What the simulator gives for one point. Times in ms. */
export interface SimFigures {
  meanMs: number;
  p50Ms: number;
  p99Ms: number;
  /** Some server's queue grew without bound. */
  overloaded: boolean;
  /** Each server's share of the requests. */
  shares: number[];
}

/** A sweep run's own figures, beside its {@linkcode RunResult}. */
export interface SweepFigures {
  /** Offered load, as a share of the pool's capacity. */
  offeredLoad: number;
  /** Tasks a second offered. */
  rate: number;
  /** Seconds tasks arrived for (the run then waits for those in flight). */
  loadS: number;
  /** The SLO of capacity at SLO, in ms. */
  sloMs: number;
  /** Servers whose queue grew without bound during the run (by label). */
  overloaded: string[];
  /** The same policy simulated at the same point. */
  sim: SimFigures;
  /** The oracle simulated at the same point. */
  oracle: SimFigures;
  /** Highest load whose simulated p99 stays within the SLO: this policy's and the oracle's. */
  simCapacityAtSlo: number;
  oracleCapacityAtSlo: number;
  /** Each server's capacity, and where it changed during the run (seconds of the run). */
  capacities: number[];
  capacityChanges: { atS: number; server: string; capacity: number }[];
}

/** What a sweep needs besides its scenario. */
export interface SweepOptions {
  policies: PolicyName[];
  durationS: number;
  quick: boolean;
  reportIntervalMs: number;
  /** Loads to run in place of the scenario's. */
  loads?: number[];
  /** Counts one more run and returns what reports its progress. */
  nextRun: () => RunProgress;
}

/** How many runs a sweep of `scenario` makes. */
export function sweepRuns(scenario: Scenario, options: Omit<SweepOptions, "nextRun">): number {
  return sweepLoads(scenario.sweep!, options).length * options.policies.length;
}

/** Runs every policy at every load of `scenario`'s sweep; one record per run. */
export async function runSweep(
  env: BenchEnvironment,
  scenario: Scenario,
  options: SweepOptions,
): Promise<RunResult[]> {
  const sweep = scenario.sweep!;
  const service = parseServiceTime(sweep.serviceTime);
  const meanMs = meanServiceTime(service);
  const poolRate = sweep.capacities.reduce((sum, f) => sum + f, 0) * 1_000 / meanMs;
  const sloMs = SLO_FACTOR * meanMs;
  const fresh = freshServers(scenario);
  const warmupOf = (policy: string) =>
    WARMED_POLICIES.has(policy) ? SWEEP_WARMUP_S[options.quick ? "quick" : "full"] : 0;
  const results: RunResult[] = [];
  const sloSearch = new Map<string, number>();
  let shared: Deployment | undefined;
  try {
    for (const load of sweepLoads(sweep, options)) {
      for (const policy of options.policies) {
        const warmupS = warmupOf(policy);
        const deployment = fresh
          ? await startSweepDeployment(env, scenario, options.durationS, warmupS)
          : shared ??= await startSweepDeployment(env, scenario, options.durationS, warmupS);
        try {
          const target = { policy, mode: sweep.mode };
          const rate = load * poolRate;
          const startTimes = fresh ? await backendStartTimes(deployment) : [];
          const measured = await measureTasks(env, deployment, scenario, target, {
            label: `${scenario.name} / ${policy} at ${Math.round(load * 100)} %`,
            concurrency: scenario.concurrency,
            durationS: options.durationS,
            clients: sweepClients(sweep, options.quick),
            rate,
            warmupS,
            progress: options.nextRun(),
          });
          const changes = capacityChanges(
            deployment,
            sweep,
            options.durationS,
            warmupS,
            startTimes,
            measured.startedAtMs ?? 0,
          );
          const result = runResult(scenario, target, "tasks", scenario.concurrency, measured, [
            ...deployment.backends,
          ]);
          const simFor = (name: string, requests: number) =>
            simFigures(simulate(simOptions(sweep, options, name, load, requests, changes)));
          const requests = fresh
            ? Math.max(1_000, Math.round(rate * measured.durationS))
            : options.quick
            ? SIM_REQUESTS.quick
            : SIM_REQUESTS.full;
          for (const name of [policy, "oracle"]) {
            if (!sloSearch.has(name)) {
              sloSearch.set(name, capacityAtSlo(sweep, options, name, sloMs));
            }
          }
          result.sweep = {
            offeredLoad: load,
            rate: round(rate, 2),
            sloMs,
            loadS: options.durationS,
            overloaded: overloadedServers(
              measured,
              options.durationS,
              deployment.backends,
              result,
            ),
            sim: simFor(policy, requests),
            oracle: simFor("oracle", requests),
            simCapacityAtSlo: sloSearch.get(policy)!,
            oracleCapacityAtSlo: sloSearch.get("oracle")!,
            capacities: sweep.capacities,
            capacityChanges: changes.map(({ atS, server, capacity }) => ({
              atS: round(atS, 2),
              server: deployment.backends[server].label,
              capacity,
            })),
          };
          result.events.push(
            ...result.sweep.capacityChanges.map((c) => ({
              atS: c.atS,
              what: `${c.server} at capacity ${c.capacity}`,
            })),
          );
          results.push(result);
        } finally {
          if (fresh) await env.stopDeployment(deployment);
        }
      }
    }
    return results;
  } finally {
    if (shared) await env.stopDeployment(shared);
  }
}

/** The load client processes a sweep's runs use (in watch mode, its pickers). */
function sweepClients(sweep: Sweep, quick: boolean): number {
  return quick ? Math.min(sweep.clients, QUICK_CLIENTS) : sweep.clients;
}

/** The loads a sweep runs: `--loads`, else `--quick`'s, else the scenario's. */
function sweepLoads(sweep: Sweep, options: Pick<SweepOptions, "loads" | "quick">): number[] {
  return options.loads ?? (options.quick ? sweep.quickLoads : sweep.loads);
}

/**
 * Starts one balancer and the sweep's emulated backends (one worker slot each); a backend with a
 * schedule gets its capacity changes at their share of a run of `durationS` that starts about
 * {@linkcode SCHEDULE_LEAD_S} plus `warmupS` after it does.
 */
function startSweepDeployment(
  env: BenchEnvironment,
  scenario: Scenario,
  durationS: number,
  warmupS: number,
): Promise<Deployment> {
  const sweep = scenario.sweep!;
  const leadS = SCHEDULE_LEAD_S + warmupS;
  return env.startCustomDeployment(
    scenario.name,
    undefined,
    sweep.capacities.map((capacity, i) => {
      const step = sweep.schedules?.[i];
      const speed = step === undefined ? ["--capacity", String(capacity)] : [
        "--capacity-schedule",
        `0s:${capacity},${seconds(leadS + step.fromShare * durationS)}:${step.capacity},${
          seconds(leadS + step.toShare * durationS)
        }:${capacity}`,
      ];
      return {
        slowdown: 1,
        label: `s${i + 1}${capacity !== 1 ? ` (capacity ${capacity})` : ""}${
          step ? " (noisy)" : ""
        }`,
        extra: ["--service-time", sweep.serviceTime, "--workers", "1", ...speed],
      };
    }),
  );
}

function seconds(s: number): string {
  return `${Math.round(s * 1_000)}ms`;
}

/** When each backend of `deployment` started, on this process's `performance.now()` clock. */
async function backendStartTimes(deployment: Deployment): Promise<number[]> {
  return await Promise.all(deployment.backends.map(async (b) => {
    const before = performance.now();
    await readStats(b);
    return (before + performance.now()) / 2 - (b.last?.uptime_ms ?? 0);
  }));
}

/**
 * Where the scheduled backends' capacity changed, in seconds of the run that started at
 * `startedAtMs`, from when each backend started and the schedule it was given for a run of
 * `durationS` after `warmupS` of warm-up.
 */
function capacityChanges(
  deployment: Deployment,
  sweep: Sweep,
  durationS: number,
  warmupS: number,
  startTimes: number[],
  startedAtMs: number,
): { atS: number; server: number; capacity: number }[] {
  return Object.entries(sweep.schedules ?? {}).flatMap(([index, step]) => {
    const i = Number(index);
    if (startTimes[i] === undefined || deployment.backends[i] === undefined) return [];
    const lead = (startedAtMs - startTimes[i]) / 1_000;
    return [
      {
        atS: SCHEDULE_LEAD_S + warmupS + step.fromShare * durationS - lead,
        server: i,
        capacity: step.capacity,
      },
      {
        atS: SCHEDULE_LEAD_S + warmupS + step.toShare * durationS - lead,
        server: i,
        capacity: sweep.capacities[i],
      },
    ];
  });
}

/** The simulator's options for one point, mirroring the real run. */
function simOptions(
  sweep: Sweep,
  options: Pick<SweepOptions, "reportIntervalMs" | "quick">,
  policy: string,
  load: number,
  requests: number,
  changes: { atS: number; server: number; capacity: number }[],
): SimOptions {
  const schedules: (CapacitySchedule | undefined)[] = sweep.capacities.map((capacity, i) => {
    const steps = changes.filter((c) => c.server === i);
    if (steps.length === 0) return undefined;
    return [
      { atMs: 0, capacity },
      ...steps.map((c) => ({ atMs: Math.max(1, c.atS * 1_000), capacity: c.capacity })),
    ];
  });
  return {
    capacities: sweep.capacities,
    service: parseServiceTime(sweep.serviceTime),
    slots: 1,
    load,
    policy,
    requests,
    warmup: 0,
    clients: sweep.mode === "watch" ? sweepClients(sweep, options.quick) : 1_000,
    mode: sweep.mode,
    balancers: 1,
    reportIntervalMs: options.reportIntervalMs,
    seed: 1,
    // The real runs are warmed up: no policy starts blind.
    steadyStart: true,
    schedules: schedules.some((s) => s !== undefined) ? schedules : undefined,
  };
}

function simFigures(result: ReturnType<typeof simulate>): SimFigures {
  return {
    meanMs: round(result.latencyMs.mean, 1),
    p50Ms: round(result.latencyMs.p50, 1),
    p99Ms: round(result.latencyMs.p99, 1),
    overloaded: result.servers.some((s) => s.overloaded),
    shares: result.servers.map((s) => round(s.share, 4)),
  };
}

/**
 * The highest load (to 1 %) at which `policy`'s simulated p99 stays within `sloMs` and no queue
 * grows without bound, by bisection; 0 when it misses even at 1 %. A scheduled capacity change
 * lands at its share of the simulated run.
 */
function capacityAtSlo(
  sweep: Sweep,
  options: Pick<SweepOptions, "reportIntervalMs" | "quick">,
  policy: string,
  sloMs: number,
): number {
  const requests = options.quick ? SLO_SEARCH_REQUESTS.quick : SLO_SEARCH_REQUESTS.full;
  const meanMs = meanServiceTime(parseServiceTime(sweep.serviceTime));
  const poolRate = sweep.capacities.reduce((sum, f) => sum + f, 0) / meanMs;
  const meets = (load: number) => {
    const durationS = requests / (load * poolRate) / 1_000;
    const changes = Object.entries(sweep.schedules ?? {}).flatMap(([i, step]) => [
      { atS: step.fromShare * durationS, server: Number(i), capacity: step.capacity },
      { atS: step.toShare * durationS, server: Number(i), capacity: sweep.capacities[Number(i)] },
    ]);
    const figures = simFigures(
      simulate(simOptions(sweep, options, policy, load, requests, changes)),
    );
    return !figures.overloaded && figures.p99Ms <= sloMs;
  };
  let low = 0;
  let high = 1;
  if (!meets(0.01)) return 0;
  low = 0.01;
  while (high - low > 0.01) {
    const mid = (low + high) / 2;
    if (meets(mid)) low = mid;
    else high = mid;
  }
  return round(low, 2);
}

/**
 * Servers whose queue grew without bound over the second half of the `loadS` seconds tasks
 * arrived for: the simulator's test (`QueueTrend`), on the tasks in flight sampled 4 times a
 * second.
 */
function overloadedServers(
  measured: Measurement,
  loadS: number,
  backends: Backend[],
  result: RunResult,
): string[] {
  const samples = measured.inFlight;
  const times = measured.inFlightAtS ?? samples.map((_, i) => i / 4);
  const half = loadS / 2;
  const trend = new QueueTrend(backends.length);
  samples.forEach((sample, k) => {
    if (times[k] < half || times[k] > loadS) return;
    backends.forEach((b, s) => {
      const n = sample[b.address];
      if (n !== undefined) trend.sample(s, times[k] - half, n);
    });
  });
  backends.forEach((_, s) => trend.sent[s] = result.servers[s].requests / 2);
  return backends.filter((_, s) => trend.overloaded(s)).map((b) => b.label);
}
